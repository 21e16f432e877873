#!/usr/bin/env bash
# Deploy one image to one environment, wait for the rollout, then score the example request.
#
#   k8s/deploy.sh <develop|staging|master> <image-ref>            apply, wait, smoke test
#   k8s/deploy.sh --render <develop|staging|master> <image-ref>   only print the manifests
#
# <image-ref> is the full image, e.g. registry.gitlab.com/bank-data/chaos/chaos:abc1234 (the
# commit's immutable tag). kubectl must already point at the cluster (the GitLab deploy job).
# Environment: ROLLOUT_TIMEOUT (default 300s), SMOKE_PORT (local port, default 18080).
set -euo pipefail

K8S_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$K8S_DIR")
# The image name the overlays set (images: newName); the override below must match it, or it
# would silently change nothing.
OVERLAY_IMAGE=registry.gitlab.com/bank-data/chaos/chaos

usage() {
  echo "usage: $0 [--render] <develop|staging|master> <image-ref>" >&2
  echo "  e.g. $0 staging ${OVERLAY_IMAGE}:abc1234" >&2
  exit 2
}

render_only=false
if [[ ${1:-} == --render ]]; then
  render_only=true
  shift
fi
[[ $# -eq 2 ]] || usage
env_name=$1
image_ref=$2
case $env_name in
  develop | staging | master) ;;
  *)
    echo "error: unknown environment '$env_name' (expected develop, staging or master)" >&2
    exit 2
    ;;
esac
# name:tag, where the name may hold a registry port (host:5000/x): the tag follows the last ':'
# after the last '/'. Digests (@sha256:…) are not accepted: the deploy uses commit tags.
image_name=${image_ref%:*}
image_tag=${image_ref##*:}
if [[ $image_ref != *:* || $image_tag == */* || -z $image_name || -z $image_tag || $image_ref == *@* ]]; then
  echo "error: '$image_ref' is not an image reference of the form name:tag" >&2
  exit 2
fi

namespace=chaos-$env_name
deployment=chaos-$env_name

# A kustomization around the overlay that only sets the image. kustomize refuses absolute paths
# to other kustomizations, hence the relative one.
workdir=$(mktemp -d)
pf_pid=
cleanup() {
  if [[ -n $pf_pid ]]; then kill "$pf_pid" 2>/dev/null || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT
overlay_rel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
  "$K8S_DIR/overlays/$env_name" "$workdir")
cat >"$workdir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $overlay_rel
images:
  - name: $OVERLAY_IMAGE
    newName: "$image_name"
    newTag: "$image_tag"
EOF

if $render_only; then
  kubectl kustomize "$workdir"
  exit 0
fi

echo "deploying $image_ref to $namespace"
kubectl apply -k "$workdir"
if ! kubectl rollout status "deployment/$deployment" -n "$namespace" --timeout="${ROLLOUT_TIMEOUT:-300s}"; then
  echo "error: the rollout of $deployment did not complete; pods and recent events:" >&2
  kubectl get pods -n "$namespace" -o wide >&2 || true
  kubectl get events -n "$namespace" --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
  exit 1
fi

# Smoke test through the Service: the example request must get one appetence in [0, 1] per row.
port=${SMOKE_PORT:-18080}
kubectl port-forward -n "$namespace" "service/$deployment" "$port:80" >/dev/null &
pf_pid=$!
ready=false
for _ in $(seq 30); do
  if curl --silent --fail --max-time 2 "http://127.0.0.1:$port/ping" >/dev/null; then
    ready=true
    break
  fi
  sleep 1
done
$ready || { echo "error: no answer on /ping through kubectl port-forward within 30 s" >&2; exit 1; }
example=$REPO_DIR/model/serving_input_example.json
response=$(curl --silent --show-error --fail --connect-timeout 5 --max-time 30 \
  -H 'Content-Type: application/json' --data-binary "@$example" "http://127.0.0.1:$port/invocations")
python3 -c '
import json, sys
rows = len(json.load(open(sys.argv[1]))["dataframe_split"]["data"])
scores = [p["appetence"] for p in json.loads(sys.argv[2])["predictions"]]
if len(scores) != rows or not all(0 <= s <= 1 for s in scores):
    sys.exit(f"smoke test failed: expected {rows} appetences in [0, 1], got {scores}")
print(f"smoke test passed: {len(scores)} appetences in [0, 1]: {scores}")
' "$example" "$response"
