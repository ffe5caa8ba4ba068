#!/usr/bin/env bash
# check_dockerfile.sh: what can be checked about docker/Dockerfile without Docker.
#  1. Its build stage runs exactly the README's build and test commands (the indented
#     commands of the sections "Run it" and "Test it"), in that order, and nothing else.
#  2. Its runtime stage installs a Debian package for every shared library the built sdserve
#     links (DT_NEEDED, resolved with ldd + dpkg -S; libc6 is in every Debian image).
#  3. The runtime stage: numeric non-root USER, tini entrypoint, HEALTHCHECK on /healthz, a
#     /models volume, EXPOSE = SDSERVE_PORT, only known SDSERVE_* settings, SDSERVE_MODEL at
#     the copied model, COPY sources that exist and that .dockerignore keeps.
# Usage: check_dockerfile.sh SDSERVE SOURCE_ROOT
set -euo pipefail
exe=${1:?usage: check_dockerfile.sh SDSERVE SOURCE_ROOT}
exe=$(realpath "$exe")
root=${2:?usage}
df=$root/docker/Dockerfile
bad=0
fail() { echo "FAIL: $*"; bad=1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The Dockerfile's instructions, continuations joined, comments dropped: STAGE \t INSTR \t ARGS
awk '
  /^[ \t]*#/ && !cont { next }
  { line = cont ? line " " $0 : $0 }
  /\\$/ { sub(/\\$/, "", line); cont = 1; next }
  { cont = 0; gsub(/[ \t]+/, " ", line); sub(/^ /, "", line)
    if (line == "") next
    split(line, w, " "); ins = toupper(w[1]); args = substr(line, length(w[1]) + 2)
    if (ins == "FROM")
      stage = match(args, / [Aa][Ss] [^ ]+$/) ? substr(args, RSTART + 4) : "?"
    print stage "\t" ins "\t" args }' "$df" >"$tmp/ins"

# 1. README commands
awk '/^## / { sec = $0 }
  (sec == "## Run it" || sec == "## Test it") && /^    \.\// { sub(/^    /, ""); print }' \
  "$root/README.md" >"$tmp/readme.cmds"
awk -F'\t' '$1 == "build" && $2 == "RUN" { print $3 }' "$tmp/ins" >"$tmp/docker.cmds"
echo "README: $(tr '\n' ';' <"$tmp/readme.cmds")" \
  " Dockerfile build stage: $(tr '\n' ';' <"$tmp/docker.cmds")"
[ -s "$tmp/readme.cmds" ] || fail "no commands found in README's 'Run it'/'Test it' sections"
cmp -s "$tmp/readme.cmds" "$tmp/docker.cmds" ||
  fail "the build stage's RUN commands are not README's"

# 2. runtime libraries
rt_pkgs=$(awk -F'\t' '$1 == "runtime" && $2 == "RUN"' "$tmp/ins" |
  grep -o 'apt-get install[^&]*' | tr ' ' '\n' |
  grep -v -e '^-' -e '^apt-get$' -e '^install$' -e '^$' | sort -u)
[ -n "$rt_pkgs" ] || fail "no apt-get install in the runtime stage"
if command -v dpkg >/dev/null && command -v readelf >/dev/null; then
  for lib in $(readelf -d "$exe" | awk '/NEEDED/ { gsub(/[\[\]]/, "", $NF); print $NF }'); do
    path=$(ldd "$exe" | awk -v l="$lib" '$1 == l { print $3 }')
    [ -n "$path" ] || { fail "$lib: not resolved by ldd"; continue; }
    real=$(readlink -f "$path")
    pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$real" 2>/dev/null ||
      dpkg -S "${real#/usr}" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null || true)
    pkg=${pkg%%:*}
    case $pkg in
      '') fail "$lib ($real): no Debian package owns it" ;;
      libc6) ;;
      *) grep -qx "$pkg" <<<"$rt_pkgs" ||
        fail "$lib comes from $pkg, which the runtime stage does not install" ;;
    esac
    echo "  $lib <- ${pkg:-?}"
  done
else
  echo "(dpkg or readelf missing: runtime library check skipped)"
fi
grep -qx tini <<<"$rt_pkgs" || fail "tini is not installed in the runtime stage"

# 3. runtime stage
rt() { awk -F'\t' -v i="$1" '$1 == "runtime" && $2 == i { print $3 }' "$tmp/ins"; }
user=$(rt USER | tail -n 1)
[[ $user =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] ||
  fail "USER '$user' is not a numeric non-root uid (Kubernetes' runAsNonRoot needs one)"
rt ENTRYPOINT | tail -n 1 | grep -q '^\["/usr/bin/tini", "--",' ||
  fail "ENTRYPOINT does not start with tini --"
rt HEALTHCHECK | grep -q '/healthz' || fail "no HEALTHCHECK on /healthz"
rt VOLUME | grep -q '"/models"' || fail "no /models VOLUME"
"$exe" serve --print-example-config | sed -n 's/^#\{0,1\}\([a-z_]*\) =.*/SDSERVE_\1/p' |
  tr a-z A-Z >"$tmp/known"
env=$(rt ENV | grep -o 'SDSERVE_[A-Z_]*=[^ ]*' || true)
for kv in $env; do
  grep -qx "${kv%%=*}" "$tmp/known" || fail "ENV ${kv%%=*} is not a setting of sdserve serve"
done
model=$(sed -n 's/^SDSERVE_MODEL=//p' <<<"$env")
port=$(sed -n 's/^SDSERVE_PORT=//p' <<<"$env")
[ -n "$model" ] && rt COPY | grep -q " $model\$" ||
  fail "SDSERVE_MODEL=$model is not where a COPY puts the model"
[ -n "$port" ] && rt EXPOSE | grep -qx "$port" || fail "EXPOSE is not SDSERVE_PORT=$port"
grep -q "^SDSERVE_HOST=0.0.0.0$" <<<"$env" || fail "SDSERVE_HOST must be 0.0.0.0 in a container"
while read -r src; do # COPY --from=build /src/X: X must exist in the repo or be the build output
  rel=${src#/src/}
  case $rel in
    build/*) grep -q '^build=${SDSERVE_BUILD_DIR:-build}' "$root/run.sh" ||
      fail "run.sh no longer builds in build/" ;;
    *) [ -e "$root/$rel" ] || fail "COPY source $rel missing" ;;
  esac
done < <(rt COPY | awk '$1 ~ /^--from=build$/ { print $2 }')
for keep in run.sh test.sh tests docker engine server web; do
  if grep -qx "$keep" "$root/.dockerignore"; then fail ".dockerignore drops $keep"; fi
done
[ "$bad" = 0 ] || exit 1
echo "Dockerfile checks ok"
