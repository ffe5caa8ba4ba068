#!/usr/bin/env bash
# run_sanitized.sh: the reliability battery (short form) against an sdserve built with
# AddressSanitizer + UndefinedBehaviorSanitizer, in its own build tree (created on first use
# under BUILD_ROOT/http-sanitized, then only rebuilt). Any sanitizer report makes the server
# exit non-zero, which the battery checks, so this fails on the first error or leak.
# Usage: run_sanitized.sh SOURCE_ROOT BUILD_ROOT
set -euo pipefail
src=${1:?usage: run_sanitized.sh SOURCE_ROOT BUILD_ROOT}
dir=${2:?usage: run_sanitized.sh SOURCE_ROOT BUILD_ROOT}/http-sanitized
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ ! -f "$dir/meson-private/coredata.dat" ]; then
  meson setup "$dir" "$src" -Db_sanitize=address,undefined -Db_lundef=false \
    --buildtype=debugoptimized >"$log" 2>&1 || { cat "$log"; exit 1; }
fi
ninja -C "$dir" server/sdserve tests/http/test_http_battery >"$log" 2>&1 ||
  { tail -n 60 "$log"; exit 1; }
# the check must not pass by accident with an uninstrumented binary (ldd's output read whole
# first: with pipefail, `ldd | grep -q` fails when grep exits before ldd has written it all)
libs=$(ldd "$dir/server/sdserve")
if [[ $libs != *libasan* || $libs != *libubsan* ]]; then
  echo "run_sanitized.sh: $dir/server/sdserve is not built with ASan+UBSan" >&2
  exit 1
fi
# exitcode 23: a report is never mistaken for another failure; leaks are errors.
export ASAN_OPTIONS=detect_leaks=1:exitcode=23:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=24
"$dir/tests/http/test_http_battery" "$dir/server/sdserve" short
