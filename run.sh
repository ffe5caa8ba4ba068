#!/usr/bin/env bash
# run.sh: the one command that sets sdserve up and runs it, on a fresh Debian 12: install the
# Debian packages it needs (only when missing, with sudo when not root), build it in build/
# (release), and generate a first image with the bundled demo model (models/demo, the default
# model: 128x128 coloured shapes on backgrounds, trained by train/). Extra arguments go to
# `sdserve generate` (they override the defaults below, e.g. ./run.sh --prompt "a large green
# star on a white background", or ./run.sh --model path/to/sd15 --prompt "a lighthouse"
# --width 512 --height 512).
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
  --prompt "a large red circle on a blue background" \
  --seed 42 --steps 20 --cfg-scale 5 \
  -o "$outfile" "$@"
for a in "$@"; do # an -o given by the caller wins; report that path instead
  if [ "${prev:-}" = "-o" ] || [ "${prev:-}" = "--output" ]; then outfile=$a; fi
  case $a in --output=*) outfile=${a#--output=} ;; esac
  prev=$a
done
echo "image: $(realpath "$outfile")"
