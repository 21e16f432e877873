"""The images, built with podman from a Debian base made here. The serving image (target serve)
run the way the pod runs it: host network to the real PostgreSQL, read-only root, no capabilities,
database settings from a mounted config.yml; then POST to it. The jobs image (target jobs): CI's
in-image test job inside it. And what each holds, and weighs.

podman comes from Debian (`.ci/run` installs it). Without it these tests skip locally, naming
the reason; under CI (CI set) they fail instead, so they never silently vanish there.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest
import requests
import yaml
from conftest import REPO, request_rows
from sqlalchemy.engine import make_url
from support.drain import HANGING_READS_ENV, IN_HAND_AFTER_SECONDS, classify
from support.load import CONNECTION, BusyClients
from support.logs import flushed, once_logged
from support.raw_http import announce_body
from support.server import free_port
from support.tcp_proxy import TcpProxy
from support.tls import self_signed

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract.schema import as_signature_types
from chaos_pyfunc.http.auth import create

pytestmark = pytest.mark.container
CONTAINERS_CONF = REPO / ".ci" / "containers.conf"
BASE_IMAGE = "localhost/chaos-base:bookworm"
IMAGE = "localhost/chaos:test"
JOBS_IMAGE = "localhost/chaos/jobs:test"
# The serving image stays under this: every pod pulls it (the jobs image is for the CronJobs).
SERVING_IMAGE_MAX_BYTES = 1_000_000_000
PORT = 8080  # the image's own command: the same port as in the pod
STARTUP_SECONDS = 90.0
UID = "10001"


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}:\n{done.stderr[-4000:]}"
    return done


def container_log(name: str) -> str:
    logs = podman("logs", name, check=False)
    return logs.stdout + logs.stderr


def ci_script(job: str) -> list[str]:
    """The script lines of a job of .gitlab-ci.yml, exactly as GitLab would run them."""
    return yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())[job]["script"]


def wait_for_ping(base: str, container: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/ping", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if podman("inspect", "--format", "{{.State.Running}}", container).stdout.strip() != "true":
            break
        time.sleep(0.5)
    pytest.fail(f"{container} never answered /ping:\n{podman('logs', container, check=False).stderr[-4000:]}")


def wait_for_prebuild(timeout: float = 1800) -> None:
    """`.ci/run` builds the images ahead while the venv installs (.ci/prebuild-images), holding a
    lock until it is done: building the same images at once would do the work twice."""
    path = os.environ.get("CHAOS_PREBUILD_LOCK")
    if not path or not Path(path).exists():
        return
    deadline = time.monotonic() + timeout
    with open(path) as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return  # build anyway: the layer cache makes it correct, only slower
                time.sleep(1)


def build(tag: str, target: str) -> str:
    """An image of the working tree, on the Debian base (made once per machine, ~30 s)."""
    if shutil.which("podman") is None:
        if os.environ.get("CI"):
            pytest.fail("podman is missing: .ci/run installs it (apt-get install podman runc mmdebstrap)")
        pytest.skip("podman is not installed: apt-get install podman runc mmdebstrap (CI does)")
    wait_for_prebuild()
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        subprocess.run([REPO / ".ci" / "build-base-image", BASE_IMAGE], check=True, timeout=600)
    subprocess.run([REPO / ".ci" / "build-image", tag, target], check=True, timeout=1800, capture_output=True,
                   env={**os.environ, "BASE_IMAGE": BASE_IMAGE})
    return tag


@pytest.fixture(scope="module")
def image() -> str:
    """The serving image: what the Deployment runs."""
    return build(IMAGE, "serve")


@pytest.fixture(scope="module")
def jobs_image(image: str) -> str:
    """The jobs image (built on the serving image's layers): the CronJobs' and CI's unit tests'."""
    return build(JOBS_IMAGE, "jobs")


def write_secret_dir(database_url: str, folder: Path) -> Path:
    """What the Kubernetes Secret volume holds: config.yml with the database settings."""
    url = make_url(database_url)
    (folder / "config.yml").write_text(yaml.safe_dump({"database": {
        "host": url.host, "port": url.port, "name": url.database, "user": url.username,
        "password": "unused-with-trust-auth"}}))  # pragma: allowlist secret (the server trusts, no password)
    folder.chmod(0o755)
    (folder / "config.yml").chmod(0o644)
    return folder


@pytest.fixture(scope="module")
def secret_dir(module_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_secret_dir(module_pg_url, tmp_path_factory.mktemp("secret"))


def run_args(secret_dir: Path, name: str) -> list[str]:
    """`podman run` as the pod runs the app: read-only root, no capabilities, mounted config."""
    return ["run", "--detach", "--name", name, "--network", "host", "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--volume", f"{secret_dir}:/etc/chaos:ro",
            "--env", "CHAOS_CONFIG=/etc/chaos/config.yml"]


@pytest.fixture(scope="module")
def server(image: str, secret_dir: Path) -> Iterator[str]:
    """The image's own command, listening on 0.0.0.0:8080 of the host network."""
    name = f"chaos-test-{os.getpid()}"
    podman("rm", "--force", name, check=False)
    try:
        requests.get(f"http://127.0.0.1:{PORT}/", timeout=1)
        pytest.fail(f"port {PORT} is taken on this machine: the image's command listens there")
    except requests.ConnectionError:
        pass
    podman(*run_args(secret_dir, name), image)
    try:
        wait_for_ping(f"http://127.0.0.1:{PORT}", name)
        yield name
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


def labels(image: str) -> dict[str, str]:
    return yaml.safe_load(podman("inspect", "--format", "{{json .Config.Labels}}", image).stdout)


@pytest.mark.parametrize("which", ["image", "jobs_image"])
def test_labels_name_the_commit_and_the_model_version(which: str, request: pytest.FixtureRequest) -> None:
    found = labels(request.getfixturevalue(which))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert found["org.opencontainers.image.revision"] in (head, f"{head}-dirty")
    meta = yaml.safe_load((REPO / "model" / "registered_model_meta").read_text())
    assert found["io.chaos.model.version"] == str(meta["model_version"])
    assert found["io.chaos.model.name"] == "chaos-appetence"


@pytest.mark.parametrize("which", ["image", "jobs_image"])
def test_the_image_holds_no_secret_config_or_local_state(which: str, request: pytest.FixtureRequest) -> None:
    listing = podman("run", "--rm", "--entrypoint", "sh", request.getfixturevalue(which), "-c",
                     "ls -A /app; find /app /etc /home /root /tmp /var \\( -name config.yml "
                     "-o -name '*key*.json' -o -name '*.db' -o -path /app/var \\) -print 2>/dev/null; true",
                     ).stdout.split()
    assert sorted(listing) == ["chaos_pyfunc", "model", "pyproject.toml"]


def test_the_command_is_chaos_serve_as_a_non_root_user(image: str) -> None:
    config = yaml.safe_load(podman("inspect", "--format", "{{json .Config}}", image).stdout)
    # A pod must listen on its own IP: every interface.
    assert config["Cmd"] == ["chaos", "serve", "--host", "0.0.0.0", "--port", "8080"]  # noqa: S104
    # What it serves is a setting: the baked-in model/ unless the pod names a registry version.
    assert "CHAOS_MODEL_URI=/app/model" in config["Env"]
    assert config["Entrypoint"] == ["tini", "-g", "--"]
    assert config["User"] == f"{UID}:{UID}"


# What only training, the registry or drift use; the serving image must not carry it.
JOBS_ONLY = ("mlflow", "matplotlib", "pyarrow", "evidently")


def holds(image: str) -> dict[str, bool]:
    """Whether an image has gcc and each of JOBS_ONLY; pip check must find its packages consistent."""
    listing = podman("run", "--rm", image, "python3", "-c", "import importlib.metadata as m; "
                     "print(' '.join(d.metadata['Name'].lower() for d in m.distributions()))").stdout.split()
    gcc = podman("run", "--rm", "--entrypoint", "sh", image, "-c", "command -v gcc", check=False)
    check = podman("run", "--rm", image, "python3", "-m", "pip", "check", check=False)
    assert check.returncode == 0, f"pip check in {image}:\n{check.stdout}{check.stderr}"
    return {"gcc": gcc.returncode == 0, **{name: name in listing for name in JOBS_ONLY}}


def test_the_serving_image_is_slim_and_the_jobs_image_has_the_rest(image: str, jobs_image: str) -> None:
    sizes = {name: int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout)
             for name in (image, jobs_image)}
    print(f"image sizes: serve {sizes[image] / 1e6:.0f} MB, jobs {sizes[jobs_image] / 1e6:.0f} MB")
    assert sizes[image] < SERVING_IMAGE_MAX_BYTES, sizes
    assert holds(image) == {"gcc": False, **dict.fromkeys(JOBS_ONLY, False)}
    assert holds(jobs_image) == {"gcc": True, **dict.fromkeys(JOBS_ONLY, True)}


def test_the_build_jobs_smoke_test_passes_on_the_serving_image(image: str) -> None:
    """.ci/smoke-serve, which CI's build job runs before it pushes, here with podman."""
    done = subprocess.run([REPO / ".ci" / "smoke-serve", image], capture_output=True, text=True, timeout=180,
                          check=False, env={**os.environ, "ENGINE": "podman",
                                            "CONTAINERS_CONF": str(CONTAINERS_CONF)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke test passed: 3 appetences in [0, 1]" in done.stdout


def test_every_process_runs_as_the_unprivileged_user(server: str) -> None:
    uids = podman("exec", server, "sh", "-c", "for s in /proc/[0-9]*/status; do "
                  "awk '/^Uid:/ {print $2}' $s; done").stdout.split()
    assert uids and set(uids) == {UID}
    assert podman("exec", server, "sh", "-c", "touch /app/x", check=False).returncode != 0


def test_it_scores_real_rows_as_the_model_does_in_process(server: str, module_pg_url: str,
                                                          customers: pd.DataFrame,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    rows = request_rows(customers, 50, seed=3)
    answer = requests.post(f"http://127.0.0.1:{PORT}/invocations",
                           json={"dataframe_split": rows.to_dict(orient="split", index=False)}, timeout=30)
    assert answer.status_code == 200, answer.text
    served = [p["appetence"] for p in answer.json()["predictions"]]
    assert len(served) == 50
    assert all(0.0 <= p <= 1.0 for p in served)
    monkeypatch.setenv("CHAOS_DATABASE_URL", module_pg_url)
    local = mlflow.pyfunc.load_model(str(REPO / "model")).predict(as_signature_types(rows))
    assert served == pytest.approx(local["appetence"].tolist(), abs=1e-12)


def test_bad_input_gets_a_400_naming_the_field(server: str) -> None:
    body = yaml.safe_load((REPO / "model" / "serving_input_example.json").read_text())
    column = body["dataframe_split"]["columns"].index("job_type")
    body["dataframe_split"]["data"][0][column] = "astronaut"
    answer = requests.post(f"http://127.0.0.1:{PORT}/invocations", json=body, timeout=30)
    assert answer.status_code == 400
    assert "job_type" in answer.json()["message"]


MARKER = "ZQX-CUSTOMER-7731"  # a value no answer or log line may ever repeat


def hostile_bodies(example: dict) -> list[tuple[str, bytes, str, int]]:
    """(what, body, content type, expected status) for requests no client should send."""
    columns = example["dataframe_split"]["columns"]

    def with_value(column: str, value: object) -> bytes:
        body = json.loads(json.dumps(example))
        body["dataframe_split"]["data"][0][columns.index(column)] = value
        return json.dumps(body).encode()

    many = {"dataframe_split": {"columns": columns,
                                "data": example["dataframe_split"]["data"] * 4000}}  # 12,000 rows
    return [
        ("50 MB of junk", MARKER.encode() * (50 * 1024 * 1024 // len(MARKER)), "application/json", 413),
        ("12,000 rows", json.dumps(many).encode(), "application/json", 413),
        ("a string for a number", with_value("age", MARKER), "application/json", 400),
        ("an unknown category", with_value("job_type", MARKER), "application/json", 400),
        ("a nested object", with_value("contact", {"x": [MARKER]}), "application/json", 400),
        ("a date far in the future", with_value("date", "9999-12-31"), "application/json", 400),
        ("NaN", with_value("balance", float("nan")), "application/json", 400),
        ("not JSON", b"{" + MARKER.encode(), "application/json", 400),
        ("CSV without the columns", f"{MARKER}\n1\n".encode(), "text/csv", 400),
        ("XML", f"<row>{MARKER}</row>".encode(), "application/xml", 415),
        ("no rows", json.dumps({"dataframe_split": {"columns": columns, "data": []}}).encode(),
         "application/json", 200),
    ]


def test_hostile_requests_get_short_clean_answers_and_leave_no_trace(server: str) -> None:
    example = json.loads((REPO / "model" / "serving_input_example.json").read_text())
    for what, body, content_type, expected in hostile_bodies(example):
        answer = requests.post(f"http://127.0.0.1:{PORT}/invocations", data=body, timeout=60,
                               headers={"Content-Type": content_type})
        assert answer.status_code == expected, (what, answer.status_code, answer.text[:500])
        assert len(answer.content) < 1000, (what, len(answer.content))
        assert MARKER not in answer.text and "Traceback" not in answer.text, (what, answer.text[:500])
        if expected != 200:
            assert set(answer.json()) == {"error_code", "message"}, (what, answer.text)
    # Refused before it is read: a body announced and never sent is answered all the same.
    early = announce_body(f"http://127.0.0.1:{PORT}", "/invocations",
                          {"Content-Type": "application/json", "Content-Length": str(50 * 2**20)})
    assert early.status == 413 and early.headers["connection"] == "close"
    assert requests.get(f"http://127.0.0.1:{PORT}/ping", timeout=5).status_code == 200
    logs = flushed(lambda: container_log("chaos-test-" + str(os.getpid())), f"http://127.0.0.1:{PORT}")
    assert '"path": "/invocations", "status": 413' in logs
    assert MARKER not in logs


def test_sigterm_under_load_loses_no_request_in_flight(image: str, module_pg_url: str,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """`podman stop` sends SIGTERM, as the kubelet does after the preStop pause: tini forwards
    it, uvicorn stops accepting, finishes the requests in flight, and the container exits.
    The requests are slow because the database hangs (support/drain.py)."""
    name = f"chaos-stop-{os.getpid()}"
    port = 18000 + os.getpid() % 1000
    proxy = TcpProxy((make_url(module_pg_url).host, make_url(module_pg_url).port))
    proxy.start()
    secrets = write_secret_dir(make_url(module_pg_url).set(port=proxy.port).render_as_string(
        hide_password=False), tmp_path_factory.mktemp("secret-proxied"))
    podman("rm", "--force", name, check=False)
    hanging = [arg for key, value in HANGING_READS_ENV.items() for arg in ("--env", f"{key}={value}")]
    podman(*run_args(secrets, name), *hanging, image, "chaos", "serve", "--model", "/app/model",
           "--host", "127.0.0.1", "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_ping(url, name)
        body = (REPO / "model" / "serving_input_example.json").read_bytes()
        BusyClients(f"{url}/invocations", body, 1).start().stop()  # a good read first
        with proxy.hanging():
            accepted = proxy.accepted
            clients = BusyClients(f"{url}/invocations", body, 6).start()
            assert proxy.wait_accepted(accepted + 1, timeout=30), "no request reached the server"
            time.sleep(IN_HAND_AFTER_SECONDS + 0.5)  # well inside the first requests' wait
            signalled = time.monotonic()
            podman("stop", "--time", "30", name, timeout=60)
            drain = time.monotonic() - signalled
            attempts = clients.stop()
        groups = classify(attempts, signalled)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        logs = once_logged(lambda: podman("logs", name).stderr, "Finished server process")
        print(f"container: {len(groups.in_flight)} requests in flight at SIGTERM, answered "
              f"{sorted({a.status for a in groups.in_flight})}; stopped in {drain:.2f} s, exit code {code}")
        assert len(groups.in_flight) >= 2
        assert all(a.status == 200 for a in groups.in_flight), groups.in_flight
        assert all(a.error == CONNECTION or a.status == 200 for a in groups.around), groups.around
        assert drain < Settings().shutdown_timeout_seconds  # the drain needs REQUEST_SECONDS at most
        assert code == "143"  # uvicorn re-raises SIGTERM once it has shut down cleanly
        assert "Finished server process" in logs
    finally:
        podman("rm", "--force", name, check=False)
        proxy.stop()


def test_the_ci_unit_test_job_passes_inside_the_image(jobs_image: str) -> None:
    """The `unit-tests` job of .gitlab-ci.yml, its very script, in the image it runs in (the jobs
    image), on a read-only checkout; PostgreSQL is this machine's instead of the job's service
    container."""
    script = " && ".join(ci_script("unit-tests"))
    done = podman("run", "--rm", "--network", "host", "--read-only", "--cap-drop", "ALL",
                  "--volume", f"{REPO}:/builds/chaos:ro", "--workdir", "/builds/chaos",
                  "--volume", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro",
                  "--env", "PIP_CERT=/etc/ssl/host-ca.crt",
                  "--env", "CHAOS_TEST_PG_URL=postgresql+psycopg2://root@127.0.0.1:5432/postgres",
                  jobs_image, "sh", "-c", script, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


# ---------------------------------------------------------------- the edge, as the overlays run it


@pytest.fixture(scope="module")
def edge_container(image: str, secret_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The image with what every overlay mounts: API keys beside config.yml, and TLS files."""
    folder = tmp_path_factory.mktemp("edge-secret")
    shutil.copy(secret_dir / "config.yml", folder / "config.yml")
    key = create(folder / "api-keys.yml", "acme")
    tls = tmp_path_factory.mktemp("edge-tls")
    cert_file, _ = self_signed(tls)
    for path in (folder, tls):
        path.chmod(0o755)
        for file in path.iterdir():
            file.chmod(0o644)  # the container's user reads them, as the Secret's 0440 + fsGroup allow
    port = free_port()
    name = f"chaos-edge-{os.getpid()}"
    podman("rm", "--force", name, check=False)
    podman(*run_args(folder, name), "--volume", f"{tls}:/etc/chaos-tls:ro",
           "--env", "CHAOS_API_KEYS_FILE=/etc/chaos/api-keys.yml",
           "--env", "CHAOS_TLS_CERT_FILE=/etc/chaos-tls/tls.crt",
           "--env", "CHAOS_TLS_KEY_FILE=/etc/chaos-tls/tls.key",
           "--env", "CHAOS_HEADER_TIMEOUT_SECONDS=2",
           image, "chaos", "serve", "--host", "0.0.0.0", "--port", str(port))  # noqa: S104
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                if requests.get(f"{base}/ping", timeout=2, verify=str(cert_file)).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, podman("logs", name, check=False).stderr[-4000:]
            time.sleep(0.5)
        yield {"base": base, "port": port, "key": key, "ca": str(cert_file), "name": name}
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


def test_the_image_serves_https_with_api_keys(edge_container: dict) -> None:
    base, ca, key = edge_container["base"], edge_container["ca"], edge_container["key"]
    body = json.loads((REPO / "model" / "serving_input_example.json").read_text())
    assert requests.post(f"{base}/invocations", json=body, verify=ca, timeout=30).status_code == 401
    scored = requests.post(f"{base}/invocations", json=body, verify=ca, timeout=30,
                           headers={"Authorization": f"Bearer {key}"})
    assert scored.status_code == 200, scored.text
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{edge_container['port']}/ping", timeout=10)
    key_id = f'"key_id": "{key.split("_")[1]}"'
    logs = once_logged(lambda: container_log(edge_container["name"]), key_id)
    assert key not in logs
    assert key_id in logs


def test_the_image_closes_a_half_sent_head_and_answers_an_early_413_over_tls(edge_container: dict) -> None:
    context = ssl.create_default_context(cafile=edge_container["ca"])
    with socket.create_connection(("127.0.0.1", edge_container["port"])) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-")
        sock.settimeout(30)
        assert sock.recv(65536).startswith(b"HTTP/1.1 408 ")
    connection = http.client.HTTPSConnection("127.0.0.1", edge_container["port"], timeout=60, context=context)
    connection.request("POST", "/invocations", body=b"{" + b" " * (20 * 1024 * 1024) + b"}",
                       headers={"Content-Type": "application/json",
                                "Authorization": f"Bearer {edge_container['key']}"})
    answer = connection.getresponse()
    assert answer.status == 413 and json.loads(answer.read())["message"].startswith("body larger than")
    connection.close()


def test_the_prebuild_in_ci_builds_the_images_these_tests_use() -> None:
    """`.ci/run` builds ahead what these tests build; other tags would build everything twice."""
    script = (REPO / ".ci" / "prebuild-images").read_text()
    for line in (f"BASE_IMAGE={BASE_IMAGE}", f"{IMAGE} serve", f"{JOBS_IMAGE} jobs"):
        assert line in script, line
