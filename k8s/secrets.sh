#!/usr/bin/env bash
# Create the Secrets an environment needs, from local files and variables: none is ever in git.
#
#   k8s/secrets.sh [--apply] <env> <service-account-key.json> <config.yml> <api-keys.yml>
#       Secret chaos-secrets-<env> in namespace chaos-<env>, keys credentials.json (the key of the
#       service account the Cloud SQL Auth Proxy uses), config.yml (the app's settings, see
#       config_template.yml: database host 127.0.0.1, port 5432, i.e. the proxy) and
#       api-keys.yml (the clients' key ids and hashes: `chaos keys create CLIENT --file F`).
#   k8s/secrets.sh [--apply] registry <env>
#       Secret gitlab-registry-<env> (type kubernetes.io/dockerconfigjson) that pulls the image,
#       from a GitLab deploy token with read_registry scope: GITLAB_DEPLOY_USER and
#       GITLAB_DEPLOY_TOKEN (GITLAB_REGISTRY defaults to registry.gitlab.com).
#
# <env> is develop, staging or master. Without --apply nothing is sent to the cluster: it prints
# what it would create (name, namespace, type, keys), never the values. With --apply it creates
# or updates the Secret with server-side apply (which, unlike client-side apply, does not copy the
# values into a last-applied-configuration annotation). The namespace must exist (deploy.sh or
# `kubectl apply -k k8s/overlays/<env>` creates it).
set -euo pipefail

usage() {
  echo "usage:" >&2
  sed -n '3,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}
die() {
  echo "error: $*" >&2
  exit 2
}

apply=false
if [[ ${1:-} == --apply ]]; then
  apply=true
  shift
fi
kind=app
if [[ ${1:-} == registry ]]; then
  kind=registry
  shift
  [[ $# -eq 1 ]] || usage
else
  [[ $# -eq 4 ]] || usage
fi

env_name=$1
case $env_name in
  develop | staging | master) ;;
  *) die "unknown environment '$env_name' (expected develop, staging or master)" ;;
esac
namespace=chaos-$env_name

# What a dry run prints: a Go template over the Secret kubectl would send, without .data's values.
# shellcheck disable=SC2016  # $key and $value are template variables, not shell ones
summary='would create Secret {{.metadata.name}} in namespace {{.metadata.namespace}} (type {{or .type "Opaque"}})
  keys:{{range $key, $value := .data}} {{$key}}{{end}}
  (values not shown; add --apply to create it)
'

# Runs `kubectl create secret …` as a client-side dry run (it needs no cluster): the manifest goes
# to kubectl apply, or only the summary above is printed.
emit() {
  if $apply; then
    kubectl create "$@" --namespace "$namespace" --dry-run=client -o yaml |
      kubectl apply --server-side --field-manager=chaos-secrets -f -
  else
    kubectl create "$@" --namespace "$namespace" --dry-run=client -o go-template="$summary"
  fi
}

if [[ $kind == app ]]; then
  key_file=$2
  config_file=$3
  api_keys_file=$4
  for file in "$key_file" "$config_file" "$api_keys_file"; do
    [[ -f $file && -r $file ]] || die "no readable file '$file'"
  done
  # Catches swapped arguments: the service account key is JSON, the config is YAML.
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$key_file" 2>/dev/null ||
    die "'$key_file' is not a JSON service account key"
  grep -q '^keys:' "$api_keys_file" || die "'$api_keys_file' is not an API keys file (chaos keys create)"
  emit secret generic "chaos-secrets-$env_name" \
    --from-file=credentials.json="$key_file" --from-file=config.yml="$config_file" \
    --from-file=api-keys.yml="$api_keys_file"
else
  [[ -n ${GITLAB_DEPLOY_USER:-} ]] || die "set GITLAB_DEPLOY_USER to the GitLab deploy token's username"
  [[ -n ${GITLAB_DEPLOY_TOKEN:-} ]] || die "set GITLAB_DEPLOY_TOKEN to the GitLab deploy token (read_registry)"
  # The Docker config is built from the environment and read through a pipe: the token never
  # appears on a command line (visible in ps) nor in a file.
  emit secret docker-registry "gitlab-registry-$env_name" --from-file=.dockerconfigjson=<(
    python3 -c '
import base64, json, os
user, token = os.environ["GITLAB_DEPLOY_USER"], os.environ["GITLAB_DEPLOY_TOKEN"]
auth = base64.b64encode(f"{user}:{token}".encode()).decode()
server = os.environ.get("GITLAB_REGISTRY", "registry.gitlab.com")
print(json.dumps({"auths": {server: {"username": user, "password": token, "auth": auth}}}))
'
  )
fi
