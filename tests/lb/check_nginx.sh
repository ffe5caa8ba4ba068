#!/usr/bin/env bash
# check_nginx.sh: `nginx -t` on docker/nginx.conf, as the compose file runs it (prefix and
# error log as in compose.yaml's command) with only the container addresses made local: the
# listen port and the upstream host names, which do not resolve outside compose.
# Usage: check_nginx.sh NGINX_CONF
set -euo pipefail
conf=${1:?usage: check_nginx.sh NGINX_CONF}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || { echo "SKIP: nginx not installed (Debian package nginx)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e 's/^\(\s*\)listen 8080;/\1listen 127.0.0.1:18080;/' \
  -e 's/^\(\s*\)server sdserve-\([0-9]*\):7860;/\1server 127.0.0.1:1786\2;/' \
  "$conf" >"$tmp/nginx.conf"
changed=$(diff "$conf" "$tmp/nginx.conf" | grep -c '^>' || true)
[ "$changed" -ge 3 ] ||
  { echo "FAIL: expected to rewrite listen + 2 upstreams, changed $changed lines"; exit 1; }
"$nginx_bin" -t -p "$tmp/" -e stderr -c "$tmp/nginx.conf"
# and a broken copy must fail, so this test can fail
sed 's/least_conn;/least_conn bogus;/' "$tmp/nginx.conf" >"$tmp/broken.conf"
if "$nginx_bin" -t -q -p "$tmp/" -e stderr -c "$tmp/broken.conf" 2>/dev/null; then
  echo "FAIL: nginx -t accepted a broken config"; exit 1
fi
echo "nginx -t ok"
