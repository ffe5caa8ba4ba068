#!/usr/bin/env bash
# check_compose.sh: `docker-compose config -q` (Debian's docker-compose: parses and validates
# the file against the compose schema; no Docker engine needed), then check_deploy.mjs on the
# normalised config + docker/nginx.conf against the service's own settings
# (`sdserve serve --print-example-config`). Usage: check_compose.sh SDSERVE SOURCE_ROOT BUILD_DIR
set -euo pipefail
exe=${1:?usage: check_compose.sh SDSERVE SOURCE_ROOT BUILD_DIR}
exe=$(realpath "$exe")
root=${2:?usage}
build_dir=${3:?usage}
lb_src=$root/tests/lb
command -v docker-compose >/dev/null ||
  { echo "SKIP: docker-compose not installed (Debian package docker-compose)"; exit 77; }
. "$lb_src/npm_setup.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root/docker"
docker-compose -f compose.yaml config -q
docker-compose -f compose.yaml config >"$tmp/compose.yaml"
"$exe" serve --print-example-config >"$tmp/settings"
node "$npm_dir/check_deploy.mjs" compose "$tmp/compose.yaml" "$root/docker/nginx.conf" \
  "$tmp/settings" "$root/deploy"
