#!/usr/bin/env bash
# test_layering.sh: dependencies point one way: server -> api -> engine (STYLE.md).
# Fails if any engine/ file includes microhttpd.h, uv.h or cJSON.h or an api/server header,
# if any api/ file includes microhttpd.h, uv.h or a server header, or if the meson files
# let the engine or api library link those libraries. Usage: test_layering.sh SOURCE_ROOT
set -euo pipefail
root=${1:?usage: test_layering.sh SOURCE_ROOT}

# scan DIR REGEX WHAT: print offending include lines; return 1 if any
scan() {
  local dir=$1 names=$2 what=$3 hits
  [ -d "$dir" ] || return 0
  hits=$(grep -rnE --include='*.c' --include='*.h' \
    "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]([^>\"]*/)?($names)[>\"]" "$dir" || true)
  if [ -n "$hits" ]; then
    echo "layering violation: $what" >&2
    echo "$hits" >&2
    return 1
  fi
}

check_tree() {
  local r=$1 fail=0
  scan "$r/engine" 'microhttpd\.h|uv\.h|cJSON\.h' \
    'engine/ must not include microhttpd.h, uv.h or cJSON.h' || fail=1
  scan "$r/engine" 'png_io\.h|infotext\.h|cli\.h|srv_[a-z_]*\.h' \
    'engine/ must not include api/ or server/ headers' || fail=1
  scan "$r/api" 'microhttpd\.h|uv\.h' 'api/ must not include microhttpd.h or uv.h' || fail=1
  scan "$r/api" 'cli\.h|srv_[a-z_]*\.h' 'api/ must not include server/ headers' || fail=1
  local bad_engine="microhttpd|libuv|'uv'|cjson|api_dep|sdapi"
  local bad_api="microhttpd|libuv|'uv'|sdserve_exe|srv_"
  if [ -f "$r/engine/meson.build" ] &&
    sed 's/#.*//' "$r/engine/meson.build" | grep -nEi "$bad_engine" >&2; then
    echo "layering violation: engine/meson.build must not depend on HTTP, libuv, cJSON or api" >&2
    fail=1
  fi
  if [ -f "$r/api/meson.build" ] &&
    sed 's/#.*//' "$r/api/meson.build" | grep -nEi "$bad_api" >&2; then
    echo "layering violation: api/meson.build must not depend on HTTP, libuv or the server" >&2
    fail=1
  fi
  return $fail
}

# Self-check: planted violations must be caught, so this test can fail.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/engine" "$tmp/api"
for bad in '  #  include "uv.h"' '#include <microhttpd.h>' '#include "cjson/cJSON.h"'; do
  printf '#include <stdio.h>\n%s\n' "$bad" > "$tmp/engine/bad.c"
  if check_tree "$tmp" 2>/dev/null; then
    echo "self-check failed: a planted '$bad' in engine/ was not detected" >&2
    exit 1
  fi
done
rm "$tmp/engine/bad.c"
printf '#include <microhttpd.h>\n' > "$tmp/api/bad.c"
if check_tree "$tmp" 2>/dev/null; then
  echo "self-check failed: a planted microhttpd.h include in api/ was not detected" >&2
  exit 1
fi

check_tree "$root"
n_engine=$(find "$root/engine" -name '*.[ch]' | wc -l)
n_api=$(find "$root/api" -name '*.[ch]' | wc -l)
echo "layering ok: $n_engine engine files, $n_api api files checked"
