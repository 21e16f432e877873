"""k8s/: each overlay renders, validates against Kubernetes 1.30, passes checkov, and says what we mean.

Offline: kubectl only renders (`kubectl kustomize`) and builds Secrets as a client-side dry run;
no API server is involved.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos_pyfunc.config import ENV_VARS, SHUTDOWN_RESERVE_SECONDS, Settings

from .tools import REPO, checkov, failed_checks, run_tool, skipped_checks

pytestmark = pytest.mark.infra

K8S = REPO / "k8s"
ENVS = ("develop", "staging", "master")
IMAGE = "registry.gitlab.com/bank-data/chaos/chaos"
JOBS_IMAGE = f"{IMAGE}/jobs"
# What the pipeline deploys: references by digest.
SERVE_REF = f"{IMAGE}@sha256:{'a' * 64}"
JOBS_REF = f"{JOBS_IMAGE}@sha256:{'b' * 64}"
PROXY_IMAGE = re.compile(r"^gcr\.io/cloud-sql-connectors/cloud-sql-proxy:2\.\d+\.\d+$")
# private.googleapis.com (Private Google Access): the only way out to Google APIs.
GOOGLE_APIS = "199.36.153.8/30"
# The only checkov checks skipped in the manifests (annotation checkov.io/skip1), each with its reason there.
ALLOWED_SKIPS = {"CKV_K8S_43"}

Manifest = dict[str, Any]


@functools.cache
def render(path: Path) -> str:
    """`kubectl kustomize` of one kustomization directory (rendered once per test session)."""
    done = run_tool("kubectl", ["kustomize", path], timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def manifests(env: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(render(K8S / "overlays" / env)) if doc]


def only(docs: list[Manifest], kind: str) -> Manifest:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[doc['metadata']['name'] for doc in found]}"
    return found[0]


def pod_spec(env: str) -> Manifest:
    return only(manifests(env), "Deployment")["spec"]["template"]["spec"]


def container(spec: Manifest, name: str, init: bool = False) -> Manifest:
    found = [c for c in spec["initContainers" if init else "containers"] if c["name"] == name]
    assert len(found) == 1, f"no single container {name}"
    return found[0]


def all_containers(spec: Manifest) -> Iterator[Manifest]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def port_number(c: Manifest, port: int | str) -> int:
    """A probe's port, resolving a named port against the container's ports."""
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p.get("name") == port)


def mount_of(spec: Manifest, c: Manifest, secret_key: str) -> tuple[str, Manifest]:
    """(mount path, volume) where container c sees the Secret key `secret_key`."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in c.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret and any(item["key"] == secret_key for item in secret.get("items", [])):
            return mount["mountPath"], volumes[mount["name"]]
    raise AssertionError(f"container {c['name']} mounts no Secret key {secret_key}")


def run_script(name: str, *args: str | Path, env: dict[str, str] | None = None,
               cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(K8S / name), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, **(env or {})})


# --- every overlay: schema, names, labels -----------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_overlay_is_valid_kubernetes_1_30(env: str, tmp_path: Path) -> None:
    rendered = tmp_path / f"{env}.yaml"
    rendered.write_text(render(K8S / "overlays" / env))
    done = run_tool("kubernetes-validate", ["-k", "1.30.0", "--strict", rendered], timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # The CLI only warns about an unknown apiVersion: require one "passed" per object, but for
    # cert-manager's Certificate and Managed Prometheus' PodMonitoring, whose schemas it lacks
    # (checked by test_tls_certificate_and_source_ranges and test_metrics_are_scraped_inside_only).
    custom = ("cert-manager.io/", "monitoring.googleapis.com/")
    core = [doc for doc in manifests(env) if not doc["apiVersion"].startswith(custom)]
    assert output.count("passed for resource") == len(core), output
    assert len(manifests(env)) - len(core) == 3  # Certificate, PodMonitoring, Rules


HOSTS = {"develop": "chaos-develop.bank.example", "staging": "chaos-staging.bank.example",
         "master": "chaos.bank.example"}


@pytest.mark.parametrize("env", ENVS)
def test_tls_certificate_and_source_ranges(env: str) -> None:
    """HTTPS only, with the environment's certificate, from the ranges the overlay lets in."""
    docs = manifests(env)
    certificate = only(docs, "Certificate")
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    spec = certificate["spec"]
    assert spec["secretName"] == f"chaos-tls-{env}" and spec["dnsNames"] == [HOSTS[env]]
    assert spec["issuerRef"] == {"kind": "ClusterIssuer", "name": "letsencrypt-dns"}
    assert set(spec) <= {"secretName", "dnsNames", "duration", "renewBefore", "privateKey", "issuerRef"}
    pod = pod_spec(env)
    app = container(pod, "chaos")
    files = {e["name"]: e["value"] for e in app["env"] if e["name"].startswith("CHAOS_TLS_")}
    mount = next(m for m in app["volumeMounts"] if m["name"] == "tls")
    assert files == {"CHAOS_TLS_CERT_FILE": f"{mount['mountPath']}/tls.crt",
                     "CHAOS_TLS_KEY_FILE": f"{mount['mountPath']}/tls.key"}
    volume = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == spec["secretName"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert app[probe]["httpGet"]["scheme"] == "HTTPS", probe
    service = only(docs, "Service")["spec"]
    assert [p["port"] for p in service["ports"]] == [443]  # no plain HTTP port
    ranges = service["loadBalancerSourceRanges"]
    assert ranges and "0.0.0.0/0" not in ranges and "192.0.2.0/24" not in ranges
    assert all(ipaddress.ip_network(r).prefixlen >= 24 for r in ranges), ranges


@pytest.mark.parametrize("env", ENVS)
def test_objects_per_environment(env: str) -> None:
    kinds = sorted(doc["kind"] for doc in manifests(env))
    expected = ["Certificate", "ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "PodMonitoring",
                "Rules", "Service"]
    if env != "develop":  # the nightly jobs (components/nightly)
        expected += ["CronJob", "CronJob", "CronJob"]  # chaos retrain, drift and monitor
    if env == "master":
        expected += ["HorizontalPodAutoscaler", "PodDisruptionBudget"]
    assert kinds == sorted(expected)


@pytest.mark.parametrize("env", ENVS)
def test_names_namespaces_and_labels(env: str) -> None:
    docs = manifests(env)
    assert only(docs, "Namespace")["metadata"]["name"] == f"chaos-{env}"
    labels = {"app.kubernetes.io/name": "chaos", "app.kubernetes.io/instance": f"chaos-{env}",
              "environment": env}
    for doc in docs:
        meta = doc["metadata"]
        assert meta["name"].endswith(f"-{env}"), f"{doc['kind']} {meta['name']}"
        assert meta.get("labels", {}).items() >= labels.items(), f"{doc['kind']} {meta['name']}"
        if doc["kind"] != "Namespace":
            assert meta.get("namespace") == f"chaos-{env}", f"{doc['kind']} {meta['name']}"
    deployment = only(docs, "Deployment")
    serving = {**labels, "app.kubernetes.io/component": "server"}
    assert deployment["spec"]["selector"]["matchLabels"] == serving
    assert deployment["spec"]["template"]["metadata"]["labels"] == serving


@pytest.mark.parametrize("env", ENVS)
def test_replicas_and_rollout(env: str) -> None:
    docs = manifests(env)
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    if env != "master":
        assert deployment["spec"]["replicas"] == 1
        return
    # master: the HPA owns the count (a fixed count would be reset by every `kubectl apply`).
    assert "replicas" not in deployment["spec"]
    hpa = only(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# --- the pod ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_cloud_sql_proxy_is_a_native_sidecar(env: str) -> None:
    spec = pod_spec(env)
    proxy = container(spec, "cloud-sql-proxy", init=True)
    assert proxy["restartPolicy"] == "Always"
    assert PROXY_IMAGE.match(proxy["image"]), proxy["image"]
    args = proxy["args"]
    assert {"--port=5432", "--address=127.0.0.1", "--health-check", "--http-port=9801",
            "--structured-logs"} <= set(args), args
    # The instance comes from this environment's ConfigMap.
    assert "$(INSTANCE_CONNECTION_NAME)" in args
    ref = next(e["valueFrom"]["configMapKeyRef"] for e in proxy["env"]
               if e["name"] == "INSTANCE_CONNECTION_NAME")
    configmap = only(manifests(env), "ConfigMap")
    assert ref["name"] == configmap["metadata"]["name"] == f"chaos-proxy-{env}"
    instance = configmap["data"][ref["key"]]
    assert re.fullmatch(r"[a-z][a-z0-9-]+:[a-z]+-[a-z]+\d:[a-z0-9-]+", instance), instance
    assert instance.endswith(f"-{env}")
    # Credentials: a file from this environment's Secret.
    path, volume = mount_of(spec, proxy, "credentials.json")
    assert f"--credentials-file={path}/credentials.json" in args
    assert volume["secret"]["secretName"] == f"chaos-secrets-{env}"
    # The app starts only once the proxy's startup probe passes.
    for probe, path in (("startupProbe", "/startup"), ("livenessProbe", "/liveness")):
        get = proxy[probe]["httpGet"]
        assert (get["path"], port_number(proxy, get["port"])) == (path, 9801), probe
    # No readiness probe: a database blip would empty the Service, where the app answers 503.
    assert "readinessProbe" not in proxy


@pytest.mark.parametrize("env", ENVS)
def test_app_container(env: str) -> None:
    spec = pod_spec(env)
    app = container(spec, "chaos")
    assert app["image"] == f"{IMAGE}:{env}"
    assert [p["containerPort"] for p in app["ports"]] == [8080, 9090]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = app[probe]["httpGet"]
        assert (get["path"], port_number(app, get["port"])) == ("/ping", 8080), probe
    # The config file comes from this environment's Secret, read-only.
    config = next(e["value"] for e in app["env"] if e["name"] == "CHAOS_CONFIG")
    path, volume = mount_of(spec, app, "config.yml")
    assert config == f"{path}/config.yml"
    assert volume["secret"]["secretName"] == f"chaos-secrets-{env}"
    assert all(m.get("readOnly") for m in app["volumeMounts"] if m["mountPath"] == path)
    # The app never sees the proxy's service account key.
    with pytest.raises(AssertionError, match="mounts no Secret key"):
        mount_of(spec, app, "credentials.json")
    # A writable, bounded /tmp on a read-only root filesystem.
    tmp = next(m for m in app["volumeMounts"] if m["mountPath"] == "/tmp")  # noqa: S108 (a path in the pod)
    assert next(v for v in spec["volumes"] if v["name"] == tmp["name"])["emptyDir"]["sizeLimit"]
    assert spec["imagePullSecrets"] == [{"name": f"gitlab-registry-{env}"}]


# Between the end of the server's shutdown budget and the kubelet's SIGKILL: the interpreter's exit.
EXIT_MARGIN_SECONDS = 1


@pytest.mark.parametrize("env", ENVS)
def test_the_shutdown_budget_fits_the_grace_period(env: str) -> None:
    """The grace period runs from the preStop pause: the pause, then the server's whole budget after
    SIGTERM (CHAOS_SHUTDOWN_TIMEOUT_SECONDS, or its default; chaos_pyfunc/http/shutdown.py), then the
    exit, before the SIGKILL. And the drain's part of the budget lets a request in flight finish."""
    spec = pod_spec(env)
    app = container(spec, "chaos")
    given = {e["name"]: e["value"] for e in app["env"] if "value" in e}
    budget = float(given.get(ENV_VARS["shutdown_timeout_seconds"], Settings().shutdown_timeout_seconds))
    request = float(given.get(ENV_VARS["request_timeout_seconds"], Settings().request_timeout_seconds))
    pause = app["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause > 0 and budget > 0
    assert spec["terminationGracePeriodSeconds"] - pause >= budget + EXIT_MARGIN_SECONDS, (pause, budget)
    assert budget - SHUTDOWN_RESERVE_SECONDS >= request, (budget, request)


def test_the_default_drain_lets_a_request_in_flight_finish() -> None:
    defaults = Settings()
    assert defaults.shutdown_timeout_seconds - SHUTDOWN_RESERVE_SECONDS >= defaults.request_timeout_seconds


@pytest.mark.parametrize("env", ENVS)
def test_metrics_are_scraped_inside_only(env: str) -> None:
    docs = manifests(env)
    monitor = only(docs, "PodMonitoring")
    assert monitor["apiVersion"] == "monitoring.googleapis.com/v1"
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/component": "server"}}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    app = container(pod_spec(env), "chaos")
    port = next(e["value"] for e in app["env"] if e["name"] == "CHAOS_METRICS_PORT")
    assert {"name": "metrics", "containerPort": int(port)} in app["ports"]
    service = only(docs, "Service")["spec"]
    assert int(port) not in [p["targetPort"] for p in service["ports"]]  # not reachable from outside


@pytest.mark.parametrize("env", ENVS)
def test_every_environment_requires_api_keys_from_its_secret(env: str) -> None:
    spec = pod_spec(env)
    app = container(spec, "chaos")
    keys_file = next(e["value"] for e in app["env"] if e["name"] == "CHAOS_API_KEYS_FILE")
    path, volume = mount_of(spec, app, "api-keys.yml")
    assert keys_file == f"{path}/api-keys.yml"
    assert volume["secret"]["secretName"] == f"chaos-secrets-{env}"


@pytest.mark.parametrize("env", ENVS)
def test_resources(env: str) -> None:
    spec = pod_spec(env)
    for c in all_containers(spec):
        for bound in ("requests", "limits"):
            assert set(c["resources"][bound]) >= {"cpu", "memory"}, f"{c['name']} {bound}"
    assert container(spec, "chaos")["resources"] == {"requests": {"cpu": "500m", "memory": "768Mi"},
                                                     "limits": {"cpu": "1", "memory": "1536Mi"}}


@pytest.mark.parametrize("env", ENVS)
def test_security_context(env: str) -> None:
    spec = pod_spec(env)
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"].items() >= {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                               "seccompProfile": {"type": "RuntimeDefault"}}.items()
    for c in all_containers(spec):
        context = c["securityContext"]
        assert context["runAsNonRoot"] is True, c["name"]
        assert context["runAsUser"] > 10000 and context["runAsGroup"] > 10000, c["name"]
        assert context["readOnlyRootFilesystem"] is True, c["name"]
        assert context["allowPrivilegeEscalation"] is False, c["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert not c.get("ports") or all("hostPort" not in p for p in c["ports"]), c["name"]
    assert container(spec, "chaos")["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize("env", ENVS)
def test_service_and_network_policy(env: str) -> None:
    docs = manifests(env)
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = only(docs, "Service")["spec"]
    assert service["type"] == "LoadBalancer"
    assert service["ports"] == [{"name": "https", "port": 443, "targetPort": 8080, "protocol": "TCP"}]
    assert service["selector"] == pod_labels
    policy = only(docs, "NetworkPolicy")["spec"]
    # The serving pods and the retraining job's: the same ways out.
    assert policy["podSelector"]["matchLabels"] == {k: v for k, v in pod_labels.items()
                                                    if k != "app.kubernetes.io/component"}
    assert policy["ingress"][0] == {"ports": [{"port": 8080, "protocol": "TCP"}]}


def selector_labels(selector: Manifest) -> dict[str, str]:
    """The labels a label selector requires, whether written as matchLabels or as single-value
    `In` expressions; any other form fails."""
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    labels = dict(selector.get("matchLabels", {}))
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In" and len(expression["values"]) == 1, expression
        assert expression["key"] not in labels, expression
        labels[expression["key"]] = expression["values"][0]
    return labels


def ports(rule: Manifest) -> list[tuple[int, str]]:
    return sorted((p["port"], p["protocol"]) for p in rule["ports"])


def instance_cidr(kustomization: Path) -> str:
    """The Cloud SQL instance's address that an overlay (or the base) gives the NetworkPolicy."""
    if kustomization.name == "base":
        policy = yaml.safe_load((kustomization / "networkpolicy.yaml").read_text())
        return next(rule["to"][0]["ipBlock"]["cidr"] for rule in policy["spec"]["egress"]
                    if ports(rule) == [(3307, "TCP")])
    patches = yaml.safe_load((kustomization / "kustomization.yaml").read_text())["patches"]
    operations = next(yaml.safe_load(p["patch"]) for p in patches if p["target"]["kind"] == "NetworkPolicy")
    return next(op["value"] for op in operations if op["op"] == "replace" and op["path"].endswith("/cidr"))


@pytest.mark.parametrize("env", ENVS)
def test_network_policy_lets_the_pod_reach_only_dns_its_instance_and_google_apis(env: str) -> None:
    policy = only(manifests(env), "NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    egress = policy["egress"]
    # A rule without peers or without ports allows every address or every port.
    for rule in egress:
        assert rule.get("to") and rule.get("ports"), rule
        for peer in rule["to"]:
            assert peer, rule
            if "ipBlock" in peer:
                assert peer["ipBlock"].keys() == {"cidr"}, peer
                assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen >= 30, peer  # never 0.0.0.0/0
    assert len(egress) == 5, egress
    dns, sql, registry, sentry, google = egress
    # DNS: kube-dns in kube-system, UDP and TCP 53, and nothing the app's labels added to its selector.
    assert len(dns["to"]) == 1 and dns["to"][0].keys() == {"namespaceSelector", "podSelector"}, dns
    peer = dns["to"][0]
    assert selector_labels(peer["namespaceSelector"]) == {"kubernetes.io/metadata.name": "kube-system"}
    assert selector_labels(peer["podSelector"]) == {"k8s-app": "kube-dns"}
    assert ports(dns) == [(53, "TCP"), (53, "UDP")]
    # This environment's Cloud SQL instance, one address, on the port the proxy dials.
    cidr = instance_cidr(K8S / "overlays" / env)
    assert sql == {"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": 3307, "protocol": "TCP"}]}
    # The model registry's server, port 5000, in its own namespace.
    (peer,) = registry["to"]
    assert selector_labels(peer["namespaceSelector"]) == {"kubernetes.io/metadata.name": "chaos-registry"}
    assert selector_labels(peer["podSelector"]) == {"app.kubernetes.io/name": "mlflow"}
    assert ports(registry) == [(5000, "TCP")]
    # Error reports: the Sentry relay's single address (a placeholder until it is set).
    assert sentry == {"to": [{"ipBlock": {"cidr": "192.0.2.3/32"}}],
                      "ports": [{"port": 443, "protocol": "TCP"}]}
    # The Cloud SQL Admin API and the OAuth token endpoint, through private.googleapis.com only.
    assert google == {"to": [{"ipBlock": {"cidr": GOOGLE_APIS}}], "ports": [{"port": 443, "protocol": "TCP"}]}
    # Ingress: the scoring port from anywhere the Service lets in, /metrics from the collectors only.
    assert policy["ingress"] == [
        {"ports": [{"port": 8080, "protocol": "TCP"}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gmp-system"}}}],
         "ports": [{"port": 9090, "protocol": "TCP"}]}]


def test_each_overlay_has_its_own_instance_address() -> None:
    cidrs = [instance_cidr(K8S / "overlays" / env) for env in ENVS]
    assert all(ipaddress.ip_network(cidr).prefixlen == 32 for cidr in cidrs), cidrs
    assert len(set(cidrs)) == len(ENVS), cidrs
    assert instance_cidr(K8S / "base") not in cidrs  # every overlay replaces the base's placeholder


@pytest.mark.parametrize("env", ENVS)
def test_no_secret_in_the_manifests(env: str) -> None:
    text = render(K8S / "overlays" / env)
    assert not re.search(r"(?m)^kind: Secret$", text)
    for word in ("password", "private_key", "private key", "secret_access_key"):
        assert word not in text.lower(), word
    for configmap in (doc for doc in manifests(env) if doc["kind"] == "ConfigMap"):
        assert "binaryData" not in configmap
        assert list(configmap["data"]) == ["INSTANCE_CONNECTION_NAME"]


def test_every_overlay_pins_the_same_proxy() -> None:
    images = {container(pod_spec(env), "cloud-sql-proxy", init=True)["image"] for env in ENVS}
    assert len(images) == 1, images


# --- deploy.sh -----------------------------------------------------------------------------------------


def render_deploy(env: str, *images: str, version: str = "7") -> list[Manifest]:
    done = run_script("deploy.sh", "--render", env, *images, cwd=K8S,  # from another directory
                      env={"MODEL_VERSION": version, "MLFLOW_TRACKING_URI": ""})
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.parametrize(("image", "jobs_image"), [
    (SERVE_REF, JOBS_REF),  # what the pipeline deploys
    (f"{IMAGE}:abc1234", f"{JOBS_IMAGE}:abc1234"),
    # a registry with a port: a tag follows the last ':' after the last '/'
    (f"registry.example.com:5000/team/chaos@sha256:{'c' * 64}", "registry.example.com:5000/t/jobs:0123456"),
])
def test_deploy_render_sets_exactly_the_images_and_the_model_version(image: str, jobs_image: str) -> None:
    deployed = render_deploy("staging", image, jobs_image)
    template = only(deployed, "Deployment")["spec"]["template"]
    app = container(template["spec"], "chaos")
    assert app["image"] == image
    # Everything else is the staging overlay as it is.
    app["image"] = f"{IMAGE}:staging"
    # staging serves its own registered model's version
    assert app["env"].pop() == {"name": "CHAOS_MODEL_URI", "value": "models:/chaos-appetence-staging/7"}
    assert template["metadata"]["labels"].pop("chaos.bank/model-version") == "7"
    assert template["metadata"].pop("annotations") == {"chaos.bank/model-uri":
                                                       "models:/chaos-appetence-staging/7"}
    # The nightly jobs run the jobs image of the same build.
    for cronjob in (doc for doc in deployed if doc["kind"] == "CronJob"):
        job = container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"], "job")
        assert job["image"] == jobs_image
        job["image"] = f"{JOBS_IMAGE}:staging"
    assert deployed == manifests("staging")


def test_deploy_render_of_develop_needs_no_jobs_image() -> None:
    """develop runs no nightly job (no CronJob): its serving image is enough."""
    deployed = render_deploy("develop", SERVE_REF)
    assert container(only(deployed, "Deployment")["spec"]["template"]["spec"], "chaos")["image"] == SERVE_REF
    assert not [doc for doc in deployed if doc["kind"] == "CronJob"]


def test_the_rendered_master_pins_a_numeric_model_version_in_every_pod() -> None:
    """One version for the whole rollout: a number, never an alias a pod would resolve itself."""
    deployed = render_deploy("master", SERVE_REF, JOBS_REF, version="12")
    template = only(deployed, "Deployment")["spec"]["template"]
    app = container(template["spec"], "chaos")
    uri = next(e["value"] for e in app["env"] if e["name"] == "CHAOS_MODEL_URI")
    assert re.fullmatch(r"models:/chaos-appetence-production/12", uri)  # production's own model
    assert template["metadata"]["labels"]["chaos.bank/model-version"] == "12"
    # The nightly jobs have no pin: the retraining reads the alias, on purpose.
    for cronjob in (doc for doc in deployed if doc["kind"] == "CronJob"):
        spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert "CHAOS_MODEL_URI" not in {e["name"] for e in container(spec, "job")["env"]}


NOT_A_REFERENCE = "is not an image reference of the form name@sha256:<64 hex digits> or name:tag"


@pytest.mark.parametrize(("args", "message"), [
    (["--render", "production", SERVE_REF, JOBS_REF], "unknown environment 'production'"),
    (["--render", "staging", IMAGE, JOBS_REF], f"'{IMAGE}' {NOT_A_REFERENCE}"),
    (["--render", "staging", f"{IMAGE}@sha256:abc123", JOBS_REF], NOT_A_REFERENCE),  # a digest cut short
    (["--render", "staging", f"{IMAGE}:v1@sha256:{'a' * 64}", JOBS_REF], NOT_A_REFERENCE),  # tag and digest
    (["--render", "staging", SERVE_REF, f"{JOBS_IMAGE}@md5:{'b' * 32}"], f"'{JOBS_IMAGE}@md5:"),
    (["--render", "staging", SERVE_REF], "staging runs the nightly jobs: give their image too"),
    (["--render", "master", SERVE_REF], "master runs the nightly jobs"),
    (["--render", "staging"], "usage:"),
    (["--render", "master", SERVE_REF, JOBS_REF], "no model version: set MODEL_VERSION, or MLFLOW_TRACKING_"),
])
def test_deploy_refuses_bad_arguments(args: list[str], message: str) -> None:
    done = run_script("deploy.sh", *args, env={"MLFLOW_TRACKING_URI": "", "MODEL_VERSION": ""})
    assert done.returncode != 0
    assert message in done.stderr
    assert not done.stdout


@pytest.mark.parametrize(("variables", "message"), [
    ({"MODEL_VERSION": "latest"}, "MODEL_VERSION must be a version number, not 'latest'"),
    ({"MODEL_VERSION": "0"}, "MODEL_VERSION must be a version number"),
    ({"MODEL_VERSION": "3", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
     "the model registry does not know version 3 of chaos-appetence-production (or cannot be reached)"),
])
def test_deploy_refuses_a_bad_model_version(variables: dict[str, str], message: str) -> None:
    done = run_script("deploy.sh", "--render", "master", SERVE_REF, JOBS_REF,
                      env={"MLFLOW_TRACKING_URI": "", **variables})
    assert done.returncode != 0
    assert message in done.stderr
    assert not done.stdout


# --- the retraining CronJob and the registry ----------------------------------------------------------


def cronjobs(env: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in manifests(env) if doc["kind"] == "CronJob"}


@pytest.mark.parametrize(("env", "name", "command"), [
    ("staging", "retrain", ["chaos", "retrain", "--alias", "staging"]),
    ("master", "retrain", ["chaos", "retrain", "--alias", "production"]),
    ("staging", "drift", ["chaos", "drift", "--since", "1d", "--output", "/tmp/drift"]),  # noqa: S108
    ("master", "drift", ["chaos", "drift", "--since", "1d", "--output", "/tmp/drift"]),  # noqa: S108
    ("staging", "monitor", ["chaos", "monitor", "--since", "30d", "--output", "/tmp/monitor"]),  # noqa: S108
    ("master", "monitor", ["chaos", "monitor", "--since", "30d", "--output", "/tmp/monitor"]),  # noqa: S108
])
def test_the_nightly_cronjobs(env: str, name: str, command: list[str]) -> None:
    docs = manifests(env)
    assert set(cronjobs(env)) == {f"chaos-{kind}-{env}" for kind in ("retrain", "drift", "monitor")}
    cronjob = cronjobs(env)[f"chaos-{name}-{env}"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] > 0
    template = job["template"]
    spec = template["spec"]
    assert spec["restartPolicy"] == "Never"
    retrain = container(spec, "job")
    assert retrain["args"] == command
    # The jobs image of the Deployment's build: the code that serves, and what training needs.
    assert retrain["image"] == f"{JOBS_IMAGE}:{env}"
    assert container(pod_spec(env), "chaos")["image"] == f"{IMAGE}:{env}"
    env_vars = {e["name"]: e.get("value") for e in retrain["env"]}
    assert env_vars["MLFLOW_TRACKING_URI"] == "http://mlflow.chaos-registry.svc.cluster.local:5000"
    # The proxy is a native sidecar in the Job too, with this environment's instance and key.
    proxy = container(spec, "cloud-sql-proxy", init=True)
    assert proxy == container(pod_spec(env), "cloud-sql-proxy", init=True)
    assert mount_of(spec, retrain, "config.yml")[1]["secret"]["secretName"] == f"chaos-secrets-{env}"
    assert spec["imagePullSecrets"] == [{"name": f"gitlab-registry-{env}"}]
    # Its pods are not serving pods: outside the Service's selector.
    labels = template["metadata"]["labels"]
    service = only(docs, "Service")["spec"]["selector"]
    assert not service.items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == "job"
    # Three schedules, apart: the reports read the day's log in the morning; production's an hour
    # (retrain) or half an hour (reports) after staging's.
    schedules = {c["spec"]["schedule"] for c in cronjobs(env).values()}
    assert schedules == ({"30 2 * * *", "0 6 * * *", "0 7 * * *"} if env == "staging"
                         else {"30 3 * * *", "30 6 * * *", "30 7 * * *"})


def registry_manifests() -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(render(K8S / "registry")) if doc]


def test_the_registry_is_valid_kubernetes_1_30(tmp_path: Path) -> None:
    rendered = tmp_path / "registry.yaml"
    rendered.write_text(render(K8S / "registry"))
    done = run_tool("kubernetes-validate", ["-k", "1.30.0", "--strict", rendered], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_registry_runs_mlflow_server_on_cloud_sql_and_gcs_reachable_only_from_the_environments() -> None:
    docs = registry_manifests()
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment", "Namespace", "NetworkPolicy",
                                               "Service", "ServiceAccount"]
    assert all(d["metadata"].get("namespace", "chaos-registry") == "chaos-registry" for d in docs)
    spec = only(docs, "Deployment")["spec"]["template"]["spec"]
    server = container(spec, "mlflow")
    command = " ".join(server["args"])
    assert command.startswith("exec mlflow server")
    assert '--backend-store-uri "$(cat /etc/mlflow/backend-store-uri)"' in command  # from the Secret's file
    assert "--artifacts-destination" in command
    config = only(docs, "ConfigMap")["data"]
    assert config["ARTIFACTS_DESTINATION"].startswith("gs://")
    path, volume = mount_of(spec, server, "backend-store-uri")
    assert path == "/etc/mlflow"
    assert volume["secret"]["secretName"] == "mlflow-store"  # pragma: allowlist secret (a Secret's name)
    assert container(spec, "cloud-sql-proxy", init=True)["restartPolicy"] == "Always"
    assert only(docs, "ServiceAccount")["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    service = only(docs, "Service")["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 5000
    (ingress,) = only(docs, "NetworkPolicy")["spec"]["ingress"]
    (peer,) = ingress["from"]
    (expression,) = peer["namespaceSelector"]["matchExpressions"]
    assert expression["operator"] == "In"
    assert sorted(expression["values"]) == sorted(f"chaos-{env}" for env in ENVS)
    assert ports(ingress) == [(5000, "TCP")]
    text = render(K8S / "registry")
    assert "password" not in text.lower() and not re.search(r"(?m)^kind: Secret$", text)


# --- secrets.sh ----------------------------------------------------------------------------------------


SecretFiles = tuple[Path, Path, Path, list[str]]


@pytest.fixture
def secret_files(tmp_path: Path) -> SecretFiles:
    """A throwaway key and config, and the sentinel strings that must never be printed."""
    sentinels = ["sentinel-private-key-8f3a", "sentinel-password-2c9d"]
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "private_key": sentinels[0]}))
    config = tmp_path / "config.yml"
    config.write_text(f"database:\n  password: {sentinels[1]}\n")
    api_keys = tmp_path / "api-keys.yml"
    api_keys.write_text("keys:\n- client: acme\n  id: 0123abcd\n  sha256: " + "ab" * 32 + "\n")
    encoded = [base64.b64encode(path.read_bytes()).decode() for path in (key, config, api_keys)]
    return key, config, api_keys, sentinels + encoded


@pytest.mark.parametrize("env", ENVS)
def test_secrets_dry_run_shows_names_never_values(env: str, secret_files: SecretFiles) -> None:
    key, config, api_keys, sentinels = secret_files
    done = run_script("secrets.sh", env, key, config, api_keys)
    assert done.returncode == 0, done.stderr
    assert f"Secret chaos-secrets-{env} in namespace chaos-{env}" in done.stdout
    assert "keys: api-keys.yml config.yml credentials.json" in done.stdout
    for sentinel in sentinels:
        assert sentinel not in done.stdout + done.stderr


def test_registry_secret_dry_run_hides_the_token() -> None:
    token = "sentinel-deploy-token-77e1"
    done = run_script("secrets.sh", "registry", "master",
                      env={"GITLAB_DEPLOY_USER": "gitlab+deploy-token-1", "GITLAB_DEPLOY_TOKEN": token})
    assert done.returncode == 0, done.stderr
    assert ("Secret gitlab-registry-master in namespace chaos-master (type kubernetes.io/dockerconfigjson)"
            in done.stdout)
    assert "keys: .dockerconfigjson" in done.stdout
    assert token not in done.stdout + done.stderr


@pytest.mark.parametrize(("case", "message"), [
    ("bad env", "unknown environment 'prod'"),
    ("missing key", "no readable file"),
    ("swapped files", "is not a JSON service account key"),
    ("no keys file", "usage"),
    ("not a keys file", "is not an API keys file"),
    ("no token", "set GITLAB_DEPLOY_TOKEN"),
    ("no arguments", "usage"),
])
def test_secrets_refuses_bad_input(case: str, message: str, secret_files: SecretFiles) -> None:
    key, config, api_keys, _ = secret_files
    args: list[str | Path] = {
        "bad env": ["prod", key, config, api_keys],
        "missing key": ["develop", key.with_name("absent.json"), config, api_keys],
        "swapped files": ["develop", config, key, api_keys],
        "no keys file": ["develop", key, config],
        "not a keys file": ["develop", key, config, config],
        "no token": ["registry", "develop"],
        "no arguments": [],
    }[case]
    done = run_script("secrets.sh", *args, env={"GITLAB_DEPLOY_USER": "someone", "GITLAB_DEPLOY_TOKEN": ""})
    assert done.returncode != 0
    assert message in done.stderr
    assert not done.stdout


# --- checkov -----------------------------------------------------------------------------------------


def test_checkov_finds_nothing() -> None:
    """Every overlay, and a scan for secrets over k8s/. The base is scanned only as part of the
    overlays: alone it has neither namespace nor image tag."""
    reports = checkov(["--directory", K8S, "--framework", "kustomize", "secrets", "--skip-path", "k8s/base",
                       "--skip-path", "k8s/components", "--skip-path", "k8s/jobs"],
                      # checkov 3.3's parallel kustomize runner races when the base is skipped: the
                      # overlays' rendered files share one folder and overwrite each other.
                      env={"CHECKOV_PARALLELIZATION_TYPE": "none"})
    assert not failed_checks(reports)
    kustomize = next(r for r in reports if r["check_type"] == "kustomize")["results"]
    scanned = {c["resource"].split(":")[1] for c in kustomize["passed_checks"]}
    assert set(ENVS) <= scanned and "Deployment.chaos-registry.mlflow" in scanned, scanned
    skipped = skipped_checks(reports)
    assert set(skipped) <= ALLOWED_SKIPS, f"skips not allowed: {set(skipped) - ALLOWED_SKIPS}"
    assert all(skipped.values()), f"a skip without its reason: {skipped}"


def test_each_environment_s_jobs_touch_only_its_own_model_at_their_own_hours() -> None:
    """Staging's and production's nightly jobs never share a registered model or an alias, and
    never run at the same time against the shared registry."""
    schedules: dict[str, dict[str, str]] = {}
    for env, alias in (("staging", "staging"), ("master", "production")):
        for cronjob in (doc for doc in manifests(env) if doc["kind"] == "CronJob"):
            job = container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"], "job")
            variables = {e["name"]: e.get("value") for e in job["env"]}
            name = cronjob["metadata"]["name"]
            assert variables["CHAOS_REGISTERED_MODEL"] == f"chaos-appetence-{alias}", name
            kind = cronjob["metadata"]["name"].split("-")[1]
            if kind == "retrain":
                assert job["args"] == ["chaos", "retrain", "--alias", alias]
            schedules.setdefault(kind, {})[env] = cronjob["spec"]["schedule"]
    assert set(schedules) == {"retrain", "drift", "monitor"}
    assert all(by_env["staging"] != by_env["master"] for by_env in schedules.values()), schedules


def test_the_promotion_job_is_production_s_retrain_pod_running_the_promote_command(tmp_path: Path) -> None:
    """k8s/promote.sh: the one step from staging to production, as a Job of master's own pod."""
    done = run_script("promote.sh", "--render", "12", "--force", "--reason", "incident 7")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    rendered = tmp_path / "job.yaml"
    rendered.write_text(yaml.safe_dump(job))
    checked = run_tool("kubernetes-validate", ["-k", "1.30.0", "--strict", rendered], timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    retrain = cronjobs("master")["chaos-retrain-master"]["spec"]["jobTemplate"]["spec"]
    assert job["metadata"]["namespace"] == "chaos-master" and job["kind"] == "Job"
    spec = job["spec"]
    assert container(spec["template"]["spec"], "job")["args"] == [
        "chaos", "promote", "12", "--alias", "production", "--from", "chaos-appetence-staging",
        "--force", "--reason", "incident 7"]
    container(spec["template"]["spec"], "job")["args"] = container(retrain["template"]["spec"], "job")["args"]
    assert spec == retrain  # the same pod: production's model, database, proxy and image
    assert run_script("promote.sh", "--render", "latest").returncode == 2
