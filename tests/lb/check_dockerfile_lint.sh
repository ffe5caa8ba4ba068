#!/usr/bin/env bash
# check_dockerfile_lint.sh: lint docker/Dockerfile with the npm dockerfile-utils linter (any
# diagnostic fails), and make sure the linter rejects a broken copy.
# Usage: check_dockerfile_lint.sh SOURCE_ROOT BUILD_DIR
set -euo pipefail
root=${1:?usage: check_dockerfile_lint.sh SOURCE_ROOT BUILD_DIR}
build_dir=${2:?usage}
lb_src=$root/tests/lb
. "$lb_src/npm_setup.sh"
lint=$npm_dir/node_modules/.bin/dockerfile-utils
out=$("$lint" lint "$root/docker/Dockerfile" 2>&1) || true
if [ -n "$out" ]; then
  echo "$out"
  echo "FAIL: dockerfile-utils reported problems"; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's/^HEALTHCHECK --interval=15s/HEALTHCHECK --interval=fast/' "$root/docker/Dockerfile" \
  >"$tmp/Dockerfile"
[ -n "$("$lint" lint "$tmp/Dockerfile" 2>&1 || true)" ] ||
  { echo "FAIL: the linter accepted a broken Dockerfile"; exit 1; }
echo "dockerfile-utils lint ok"
