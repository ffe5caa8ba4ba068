#!/bin/sh
# run.sh: coverage-guided fuzzing of the loader with clang + libFuzzer + ASan + UBSan.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      (default 60 s each; targets: json safetensors;
#                                                 also request multipart base64, with a 64 MB
#                                                 malloc limit)
#
# Builds fuzz_<target> into $FUZZ_OUT (default /tmp/sdserve-fuzz), copies the seed corpus there
# (the checked-in corpus is never modified), and runs each target for SECONDS. Any crash leaves
# a crash-* file in $FUZZ_OUT and makes the script exit non-zero; reproduce it with
# $FUZZ_OUT/fuzz_<target> $FUZZ_OUT/crash-... or feed it to the gcc driver.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-json safetensors}
out=${FUZZ_OUT:-/tmp/sdserve-fuzz}
cc=${CLANG:-clang}
mkdir -p "$out"
flags="-g -O1 -std=gnu11 -march=x86-64-v3 -ffp-contract=off -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$root/engine"
status=0
for t in $targets; do
  xflags="" libs="" xrun=""
  case $t in
    json) srcs="$root/engine/json.c $root/engine/status.c";
          extra="$root/tests/data/models/tiny-sd/unet/config.json $root/tests/data/models/tiny-sd/model_index.json";;
    safetensors) srcs="$root/engine/safetensors.c $root/engine/json.c $root/engine/status.c";
          extra="$root/tests/data/models/tiny-sd/text_encoder/model.safetensors";;
    # request formats (api/): need the engine (sd_canny, samplers), libpng, cJSON; 64 MB cap
    request|multipart|base64)
          srcs="$root/api/request.c $root/api/base64.c $root/api/multipart.c $root/api/errors.c $root/api/png.c $root/engine/*.c";
          xflags="-fopenmp -I$root/api -I/usr/include/cjson -I/usr/include/libpng16 -I/usr/include/x86_64-linux-gnu/openblas-pthread";
          libs="-lopenblas -lpng -lcjson"; xrun="-malloc_limit_mb=64"; extra="";;
    *) echo "run.sh: unknown target $t" >&2; exit 2;;
  esac
  echo "== building fuzz_$t"
  # shellcheck disable=SC2086
  $cc $flags $xflags "$here/fuzz_$t.c" $srcs -o "$out/fuzz_$t" -lm $libs
  corpus="$out/corpus_$t"
  mkdir -p "$corpus"
  cp "$here/corpus/$t/"* "$corpus/"
  for f in $extra; do cp "$f" "$corpus/"; done
  echo "== fuzzing $t for $secs s"
  # shellcheck disable=SC2086
  if ! (cd "$out" && ASAN_OPTIONS=detect_leaks=1 ./fuzz_$t -max_total_time="$secs" \
        -max_len=1048576 -rss_limit_mb=2048 $xrun -print_final_stats=1 "$corpus"); then
    echo "run.sh: fuzz_$t found a problem; see $out/crash-*" >&2
    status=1
  fi
done
exit $status
