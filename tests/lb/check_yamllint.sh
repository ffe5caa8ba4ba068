#!/usr/bin/env bash
# check_yamllint.sh: yamllint (strict: warnings fail too) on deploy/ and docker/compose.yaml
# with tests/lb/yamllint.yaml. Usage: check_yamllint.sh SOURCE_ROOT
set -euo pipefail
root=${1:?usage: check_yamllint.sh SOURCE_ROOT}
command -v yamllint >/dev/null ||
  { echo "SKIP: yamllint not installed (Debian package yamllint)"; exit 77; }
yamllint -s -f parsable -c "$root/tests/lb/yamllint.yaml" "$root/deploy" "$root/docker/compose.yaml"
n=$(find "$root/deploy" -name '*.yaml' | wc -l)
[ "$n" -ge 7 ] || { echo "FAIL: only $n YAML files in deploy/"; exit 1; }
echo "yamllint ok ($n files in deploy/ + docker/compose.yaml)"
