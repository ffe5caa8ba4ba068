#!/usr/bin/env bash
# run.sh: runs one Node test file of tests/clients against the built sdserve (issue 6).
# Installs the pinned npm packages (package-lock.json: openai, playwright-core) with `npm ci`
# into BUILD/node (a cache in BUILD/npm-cache; reinstalled only when the lock changes), then
# `node --test FILE` with the paths in the environment. Screenshots and server logs are kept
# in BUILD/artifacts. Exit 77 (skipped) when node/npm, or chromium for the page test, is
# missing. Usage: run.sh SDSERVE SRC_DIR BUILD_DIR DATA_DIR TEST_FILE
set -euo pipefail
exe=${1:?usage} src=${2:?usage} build=${3:?usage} data=${4:?usage} file=${5:?usage}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node or npm not installed: skipped (test.sh installs them)"
  exit 77
fi
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ "$file" = test_web.mjs ] && [ ! -x "$chromium" ]; then
  echo "$chromium not installed: skipped (test.sh installs Debian's chromium)"
  exit 77
fi
exe=$(realpath "$exe")
work=$build/node
mkdir -p "$work" "$build/artifacts"
cp "$src"/package.json "$src"/package-lock.json "$src"/*.mjs "$work"/
rm -rf "$work/fixtures"
cp -r "$src/fixtures" "$work/fixtures"
stamp=$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$work/.installed" 2>/dev/null || true)" != "$stamp" ] || [ ! -d "$work/node_modules" ]; then
  (cd "$work" && npm ci --cache "$build/npm-cache" --no-audit --no-fund --loglevel=error)
  echo "$stamp" >"$work/.installed"
fi
cd "$work"
export SDSERVE=$exe SD_TEST_DATA=$data SD_ARTIFACTS=$build/artifacts CHROMIUM=$chromium
exec node --test --test-concurrency=1 "$file"
