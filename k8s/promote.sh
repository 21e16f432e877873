#!/usr/bin/env bash
# Promote a staging version to production: the one explicit step between the two environments.
#
#   k8s/promote.sh <staging-version> [--force --reason TEXT]            run it, wait, print its log
#   k8s/promote.sh --render <staging-version> [--force --reason TEXT]   only print the Job
#
# Runs `chaos promote <N> --alias production --from chaos-appetence-staging` as a one-off Job in
# the master namespace, made from production's retrain CronJob: its jobs image, production's
# database through its Cloud SQL proxy, the registry. Version N of chaos-appetence-staging is
# copied into chaos-appetence-production with its training run (the lineage), judged by the gate
# on production's data against the version production's alias names, and the alias moves only if
# it passes (or --force --reason). The next deploy of master serves it (k8s/deploy.sh).
# Exits with the Job's verdict: 0 moved, 1 refused, 3 a failure (`chaos --help`: exit codes).
# kubectl must point at the cluster (the GitLab job promote-model); --render needs no cluster.
# Environment: JOB_TIMEOUT (default 7200s).
set -euo pipefail

K8S_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_MODEL=chaos-appetence-staging
NAMESPACE=chaos-master
CRONJOB=chaos-retrain-master

render_only=false
if [[ ${1:-} == --render ]]; then
  render_only=true
  shift
fi
version=${1:-}
if [[ ! $version =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [--render] <staging-version> [--force --reason TEXT]" >&2
  echo "error: the staging version must be a version number, not '$version'" >&2
  exit 2
fi
shift
extra=("$@")

# The CronJob the Job is made from: the cluster's (its image pinned by the last deploy), or the
# overlay as rendered here.
if $render_only; then
  cronjob=$(kubectl kustomize "$K8S_DIR/overlays/master" | python3 -c '
import json, sys, yaml
print(json.dumps(next(d for d in yaml.safe_load_all(sys.stdin)
                      if d and d["kind"] == "CronJob" and d["metadata"]["name"] == sys.argv[1])))' "$CRONJOB")
else
  cronjob=$(kubectl get cronjob -n "$NAMESPACE" "$CRONJOB" -o json)
fi
name=chaos-promote-$version-$(date -u +%Y%m%d%H%M%S)
job=$(python3 -c '
import json, sys
cronjob, name, version, source, *extra = sys.argv[1:]
cronjob = json.loads(cronjob)
spec = cronjob["spec"]["jobTemplate"]["spec"]
container = next(c for c in spec["template"]["spec"]["containers"] if c["name"] == "job")
container["args"] = ["chaos", "promote", version, "--alias", "production", "--from", source, *extra]
metadata = {"name": name, "namespace": cronjob["metadata"].get("namespace"),
            "labels": {**cronjob["metadata"].get("labels", {}), "app.kubernetes.io/component": "job"}}
print(json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}, indent=2))
' "$cronjob" "$name" "$version" "$SOURCE_MODEL" "${extra[@]}")

if $render_only; then
  echo "$job"
  exit 0
fi

kubectl apply -f - <<<"$job" >&2
echo "promotion: Job $name in $NAMESPACE, version $version of $SOURCE_MODEL" >&2
# Complete or failed, whichever comes first.
kubectl wait -n "$NAMESPACE" "job/$name" --for=jsonpath='{.status.conditions[-1].status}'=True \
  --timeout="${JOB_TIMEOUT:-7200s}" >&2 || true
kubectl logs -n "$NAMESPACE" "job/$name" -c job || true
state=$(kubectl get job -n "$NAMESPACE" "$name" \
  -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}:{.reason}{"\n"}{end}')
case $state in
  *Complete*) exit 0 ;;
  *Failed:PodFailurePolicy*) exit 1 ;; # exit code 1: the gate refused (cronjob.yaml's podFailurePolicy)
  *) echo "error: the promotion Job did not finish with a verdict ($state)" >&2; exit 3 ;;
esac
