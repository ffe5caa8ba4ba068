# scripts/packages.sh: sourced by run.sh and test.sh. ensure_packages NAME PKG... installs
# the Debian packages among PKG that are missing (apt-get update only then; sudo when not
# root) and does nothing when all are there, so the scripts can run on every invocation.
# NAME prefixes its messages. On a system without dpkg it only lists what is needed.

ensure_packages() {
  local name=$1
  shift
  if ! command -v dpkg-query >/dev/null; then
    echo "$name: not a Debian system; make sure these are installed: $*" >&2
    return 0
  fi
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  echo "$name: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}"
}
