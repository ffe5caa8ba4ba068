#!/usr/bin/env bash
# run.sh: the one command that sets sdserve up and runs it, on a fresh Debian 12: install the
# Debian packages it needs (only when missing, with sudo when not root), build it in build/
# (release), and generate a first image with the tiny test model in tests/data/models/tiny-sd.
# That model has random weights, so the image is coloured noise: it shows the whole pipeline
# working, not a picture. Extra arguments go to `sdserve generate` (they override the
# defaults below, e.g. ./run.sh --model path/to/model --prompt "a lighthouse" --width 512).
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/packages.sh
. scripts/packages.sh

PACKAGES=(build-essential meson ninja-build pkg-config libopenblas-dev libpng-dev
  libmicrohttpd-dev libuv1-dev libcjson-dev curl)

ensure_packages run.sh "${PACKAGES[@]}"
build=${SDSERVE_BUILD_DIR:-build} # override only to keep several build trees
if [ ! -f "$build/meson-private/coredata.dat" ]; then
  meson setup "$build" --buildtype=release
fi
meson compile -C "$build"

mkdir -p out
outfile=out/first.png
"$build/server/sdserve" generate \
  --model tests/data/models/tiny-sd \
  --prompt "a red circle on a white background" \
  --seed 42 --steps 20 --sampler euler_a \
  -o "$outfile" "$@"
for a in "$@"; do # an -o given by the caller wins; report that path instead
  if [ "${prev:-}" = "-o" ] || [ "${prev:-}" = "--output" ]; then outfile=$a; fi
  case $a in --output=*) outfile=${a#--output=} ;; esac
  prev=$a
done
echo "image: $(realpath "$outfile")"
case " $* " in
  *" --model"*) ;;
  *) echo "(tiny random-weight test model: the image is coloured noise)" ;;
esac
