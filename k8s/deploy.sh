#!/usr/bin/env bash
# Deploy one build (its serving and jobs images) and one model version to one environment, wait
# for the rollout, then score the example request and check the version served.
#
#   k8s/deploy.sh <env> <image-ref> [<jobs-image-ref>]            apply, wait, smoke test
#   k8s/deploy.sh --render <env> <image-ref> [<jobs-image-ref>]   only print the manifests
#
# <env> is develop, staging or master. <image-ref> is the serving image (the Deployment's),
# <jobs-image-ref> the jobs image of the same build (the nightly CronJobs'; staging and master
# run them, develop has none). Each is name@sha256:<digest>, as the pipeline deploys them
# (.gitlab-ci.yml), or name:tag, e.g. registry.gitlab.com/bank-data/chaos/chaos@sha256:… and
# registry.gitlab.com/bank-data/chaos/chaos/jobs@sha256:…. kubectl must already point at the
# cluster (the GitLab deploy job).
#
# The model: each environment has its own registered model, whose alias names what it serves
# (chaos_pyfunc/lifecycle/registry.py): staging, and develop, serve chaos-appetence-staging@staging, master
# chaos-appetence-production@production; a staging version reaches production only by
# k8s/promote.sh. The alias's version is resolved once, here, and pinned in the pod spec as
# CHAOS_MODEL_URI=models:/<model>/<N>, with the label chaos.bank/model-version: every pod of the
# rollout serves that version, and `kubectl rollout undo` goes back to the previous image and
# version together. MODEL_VERSION=<N> deploys that version of the environment's model instead (a
# model rollback: the alias is not read). The registry is MLFLOW_TRACKING_URI, else the cluster's
# (k8s/registry) through kubectl port-forward.
# The smoke test authenticates with SMOKE_API_KEY (a key of the environment's keys file, a
# masked CI variable); it is never printed.
# Environment: ROLLOUT_TIMEOUT (default 300s), SMOKE_PORT (local port, default 18080),
# REGISTRY_PORT (local port for the registry, default 15000).
set -euo pipefail

K8S_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$K8S_DIR")
# The image names the overlays set (images: newName); the overrides below must match them, or
# they would silently change nothing.
OVERLAY_IMAGE=registry.gitlab.com/bank-data/chaos/chaos
OVERLAY_JOBS_IMAGE=$OVERLAY_IMAGE/jobs

usage() {
  echo "usage: $0 [--render] <develop|staging|master> <image-ref> [<jobs-image-ref>]" >&2
  echo "  each ref name@sha256:<digest> or name:tag; the jobs image is required for staging and master" >&2
  echo "  e.g. $0 staging ${OVERLAY_IMAGE}@sha256:<digest> ${OVERLAY_JOBS_IMAGE}@sha256:<digest>" >&2
  exit 2
}

# One entry of the kustomization's images: the overlay's image OVERLAY set to REF, name@sha256:<64
# hex digits> or name:tag, where the name may hold a registry port (host:5000/x): a tag follows
# the last ':' after the last '/'. Anything else is refused.
image_entry() {
  local overlay=$1 ref=$2 name
  if [[ $ref == *@* ]]; then
    name=${ref%@*}
    if [[ -n $name && $name != *@* && ${name##*/} != *:* && ${ref##*@} =~ ^sha256:[0-9a-f]{64}$ ]]; then
      printf '  - name: %s\n    newName: "%s"\n    digest: "%s"\n' "$overlay" "$name" "${ref##*@}"
      return
    fi
  elif [[ ${ref##*/} == *:* && -n ${ref%:*} && -n ${ref##*:} ]]; then
    printf '  - name: %s\n    newName: "%s"\n    newTag: "%s"\n' "$overlay" "${ref%:*}" "${ref##*:}"
    return
  fi
  echo "error: '$ref' is not an image reference of the form name@sha256:<64 hex digits> or name:tag" >&2
  return 2
}

render_only=false
if [[ ${1:-} == --render ]]; then
  render_only=true
  shift
fi
[[ $# -eq 2 || $# -eq 3 ]] || usage
env_name=$1
image_ref=$2
jobs_image_ref=${3:-}
case $env_name in
  develop | staging | master) ;;
  *)
    echo "error: unknown environment '$env_name' (expected develop, staging or master)" >&2
    exit 2
    ;;
esac
images=$(image_entry "$OVERLAY_IMAGE" "$image_ref") || exit 2
if [[ -n $jobs_image_ref ]]; then
  images+=$'\n'$(image_entry "$OVERLAY_JOBS_IMAGE" "$jobs_image_ref") || exit 2
elif [[ $env_name != develop ]]; then
  echo "error: $env_name runs the nightly jobs: give their image too, <jobs-image-ref>" >&2
  exit 2
fi

namespace=chaos-$env_name
deployment=chaos-$env_name
if [[ $env_name == master ]]; then model_alias=production; else model_alias=staging; fi
model_name=chaos-appetence-$model_alias
if [[ -n ${MODEL_VERSION:-} && ! $MODEL_VERSION =~ ^[1-9][0-9]*$ ]]; then
  echo "error: MODEL_VERSION must be a version number, not '$MODEL_VERSION'" >&2
  exit 2
fi

# A kustomization around the overlay that only sets the image. kustomize refuses absolute paths
# to other kustomizations, hence the relative one.
workdir=$(mktemp -d)
pf_pid=
registry_pf_pid=
cleanup() {
  if [[ -n $pf_pid ]]; then kill "$pf_pid" 2>/dev/null || true; fi
  if [[ -n $registry_pf_pid ]]; then kill "$registry_pf_pid" 2>/dev/null || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT

# The registry: MLFLOW_TRACKING_URI, or the cluster's through a port-forward (not for --render).
registry=${MLFLOW_TRACKING_URI:-}
if [[ -z $registry && -z ${MODEL_VERSION:-} ]]; then
  if $render_only; then
    echo "error: no model version: set MODEL_VERSION, or MLFLOW_TRACKING_URI to resolve $model_alias" >&2
    exit 2
  fi
  registry_port=${REGISTRY_PORT:-15000}
  kubectl port-forward -n chaos-registry service/mlflow "$registry_port:5000" >/dev/null &
  registry_pf_pid=$!
  registry=http://127.0.0.1:$registry_port
  for _ in $(seq 30); do
    curl --silent --fail --max-time 2 "$registry/health" >/dev/null && break
    sleep 1
  done
fi
# GET on the registry's REST API; prints the model version's number. A failure names the alias
# or version, never the registry's answer (it may quote an address or credentials).
registry_version() {
  local path=$1 what=$2 answer
  if ! answer=$(curl --silent --fail --connect-timeout 5 --max-time 30 "$registry$path" 2>/dev/null); then
    echo "error: the model registry does not know $what (or cannot be reached): nothing deployed" >&2
    exit 1
  fi
  python3 -c 'import json, sys; print(json.load(sys.stdin)["model_version"]["version"])' <<<"$answer"
}
if [[ -n ${MODEL_VERSION:-} ]]; then
  model_version=$MODEL_VERSION
  if [[ -n $registry ]]; then # the version must exist before any pod is asked to download it
    registry_version "/api/2.0/mlflow/model-versions/get?name=$model_name&version=$model_version" \
      "version $model_version of $model_name" >/dev/null
  fi
  echo "model: version $model_version of $model_name (MODEL_VERSION)" >&2
else
  model_version=$(registry_version "/api/2.0/mlflow/registered-models/alias?name=$model_name&alias=$model_alias" \
    "the alias $model_alias of $model_name")
  echo "model: version $model_version of $model_name, which $model_alias names now" >&2
fi
model_uri=models:/$model_name/$model_version
overlay_rel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
  "$K8S_DIR/overlays/$env_name" "$workdir")
cat >"$workdir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $overlay_rel
images:
$images
patches:
  - target:
      kind: Deployment
    patch: |-
      - op: test
        path: /spec/template/spec/containers/0/name
        value: chaos
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: CHAOS_MODEL_URI, value: "$model_uri"}
      - op: add
        path: /spec/template/metadata/labels/chaos.bank~1model-version
        value: "$model_version"
      - op: add
        path: /spec/template/metadata/annotations
        value: {chaos.bank/model-uri: "$model_uri"}
EOF

if $render_only; then
  kubectl kustomize "$workdir"
  exit 0
fi

[[ -n ${SMOKE_API_KEY:-} ]] || {
  echo "error: set SMOKE_API_KEY to an API key of $env_name for the smoke test" >&2
  exit 2
}
echo "deploying $image_ref${jobs_image_ref:+ (jobs: $jobs_image_ref)} with $model_uri to $namespace"
kubectl apply -k "$workdir"
if ! kubectl rollout status "deployment/$deployment" -n "$namespace" --timeout="${ROLLOUT_TIMEOUT:-300s}"; then
  echo "error: the rollout of $deployment did not complete; pods and recent events:" >&2
  kubectl get pods -n "$namespace" -o wide >&2 || true
  kubectl get events -n "$namespace" --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
  exit 1
fi

# Smoke test through the Service: the example request must get one appetence in [0, 1] per row.
port=${SMOKE_PORT:-18080}
# HTTPS to the environment's own name, sent through the tunnel: the certificate is checked as a
# client on the internet would check it.
host=$(kubectl get certificate -n "$namespace" "$deployment" -o jsonpath='{.spec.dnsNames[0]}')
base=https://$host
tunnel=(--connect-to "$host:443:127.0.0.1:$port")
kubectl port-forward -n "$namespace" "service/$deployment" "$port:443" >/dev/null &
pf_pid=$!
ready=false
for _ in $(seq 30); do
  if curl --silent --fail --max-time 2 "${tunnel[@]}" "$base/ping" >/dev/null; then
    ready=true
    break
  fi
  sleep 1
done
$ready || { echo "error: no answer on /ping through kubectl port-forward within 30 s" >&2; exit 1; }
example=$REPO_DIR/model/serving_input_example.json
# The key goes through curl's config on stdin, never on a command line (ps) or in the log.
auth_header() { printf 'header = "Authorization: Bearer %s"\n' "$SMOKE_API_KEY"; }
response=$(auth_header | curl --silent --show-error --fail --connect-timeout 5 --max-time 30 --config - \
  "${tunnel[@]}" -H 'Content-Type: application/json' --data-binary "@$example" "$base/invocations")
python3 -c '
import json, sys
rows = len(json.load(open(sys.argv[1]))["dataframe_split"]["data"])
scores = [p["appetence"] for p in json.loads(sys.argv[2])["predictions"]]
if len(scores) != rows or not all(0 <= s <= 1 for s in scores):
    sys.exit(f"smoke test failed: expected {rows} appetences in [0, 1], got {scores}")
print(f"smoke test passed: {len(scores)} appetences in [0, 1]: {scores}")
' "$example" "$response"
served=$(auth_header | curl --silent --show-error --fail --max-time 10 --config - "${tunnel[@]}" "$base/model" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
if [[ $served != "$model_version" ]]; then
  echo "error: the Service answers with model version $served, not $model_version" >&2
  exit 1
fi
echo "serving version $model_version of $model_name"
