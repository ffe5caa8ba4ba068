#!/usr/bin/env bash
# test.sh: install what the build needs (Debian 12; only when missing), build in build/, run
# every test with `meson test -C build --print-errorlogs [ARGS...]`, and end with the line
# "N passed, N failed" (skipped tests are counted apart and are not failures). The exit status
# is non-zero when any test failed or timed out, or the build failed.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/packages.sh
. scripts/packages.sh

PACKAGES=(build-essential meson ninja-build pkg-config libopenblas-dev libpng-dev
  libmicrohttpd-dev libuv1-dev libcjson-dev curl valgrind)
# tests/lb (containers, deployment): nginx and the compose/YAML validators; npm (Debian's,
# unless a node toolchain is already installed) for the Dockerfile linter and k8s schemas.
PACKAGES+=(nginx docker-compose yamllint)
command -v npm >/dev/null || PACKAGES+=(npm)

# tests/clients (issue 6): Debian's chromium for the page test; Node.js only when no node is
# installed (a machine's own Node.js, e.g. 20.x, is kept; npm is added above).
PACKAGES+=(chromium)
command -v node >/dev/null || PACKAGES+=(nodejs)
# train/ (the demo model's training code) and tests/demo: Debian's PyTorch, numpy, Pillow.
PACKAGES+=(python3-torch python3-numpy python3-pil)
ensure_packages test.sh "${PACKAGES[@]}"
build=${SDSERVE_BUILD_DIR:-build} # override only to keep several build trees
if [ ! -f "$build/meson-private/coredata.dat" ]; then
  meson setup "$build"
fi
if ! meson compile -C "$build"; then
  echo "test.sh: the build failed; no tests were run" >&2
  exit 1
fi

log=$build/meson-logs/testlog.json
rm -f "$log" # never count a previous run's results
status=0
meson test -C "$build" --print-errorlogs "$@" || status=$?

count() { grep -c "\"result\": \"$1\"" "$log" || true; }
if [ ! -f "$log" ]; then
  echo "test.sh: meson wrote no test log ($log)" >&2
  exit 1
fi
ok=$(count OK)
xfail=$(count EXPECTEDFAIL)
fail=$(count FAIL)
timeout=$(count TIMEOUT)
xpass=$(count UNEXPECTEDPASS)
error=$(count ERROR)
skip=$(count SKIP)
passed=$((ok + xfail))
failed=$((fail + timeout + xpass + error))
[ "$skip" -gt 0 ] && echo "$skip skipped (not failures)"
echo "$passed passed, $failed failed"
if [ "$failed" -gt 0 ] || [ "$status" -ne 0 ]; then
  exit 1
fi
