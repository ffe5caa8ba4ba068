#!/usr/bin/env bash
# check_k8s.sh: every Kubernetes object in deploy/ validated against its apiVersion/kind's
# schema (npm kubernetes-models), the kustomization's resources resolved by hand (kustomize is
# not packaged by Debian 12), and the objects checked against each other and the service's
# settings: see check_deploy.mjs. Usage: check_k8s.sh SDSERVE SOURCE_ROOT BUILD_DIR
set -euo pipefail
exe=${1:?usage: check_k8s.sh SDSERVE SOURCE_ROOT BUILD_DIR}
exe=$(realpath "$exe")
root=${2:?usage}
build_dir=${3:?usage}
lb_src=$root/tests/lb
. "$lb_src/npm_setup.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$exe" serve --print-example-config >"$tmp/settings"
node "$npm_dir/check_deploy.mjs" k8s "$root/deploy" "$tmp/settings"
# kustomize itself, when a kubectl is installed (not required: Debian 12 has no kustomize)
if command -v kubectl >/dev/null; then
  kubectl kustomize "$root/deploy" >"$tmp/rendered.yaml"
  kinds=$(grep -c '^kind:' "$tmp/rendered.yaml")
  listed=$(sed -n '/^resources:/,/^[a-z]/p' "$root/deploy/kustomization.yaml" | grep -c '^  - ')
  [ "$kinds" = "$listed" ] ||
    { echo "FAIL: kustomize rendered $kinds objects, $listed listed"; exit 1; }
  grep -q 'image: sdserve:' "$tmp/rendered.yaml" || { echo "FAIL: images: not applied"; exit 1; }
  echo "kubectl kustomize: $kinds objects"
fi
# the checker must reject a broken copy (so this test can fail)
cp -r "$root/deploy" "$tmp/broken"
sed -i 's/containerPort: 7860/containerPort: "http"/' "$tmp/broken/deployment.yaml"
if node "$npm_dir/check_deploy.mjs" k8s "$tmp/broken" "$tmp/settings" >/dev/null; then
  echo "FAIL: the checker accepted a Deployment with a string containerPort"; exit 1
fi
