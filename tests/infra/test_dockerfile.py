"""The Dockerfile and .dockerignore, checked offline: hadolint, checkov, and what the issue asks."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .tools import REPO, checkov, failed_checks, run_tool, skipped_checks

pytestmark = pytest.mark.infra
DOCKERFILE = (REPO / "Dockerfile").read_text()


def stage(name: str) -> str:
    """One stage of the Dockerfile, from its FROM line to its last instruction (the comments about
    the next stage left out)."""
    start = DOCKERFILE.index(f"AS {name}\n")
    following = DOCKERFILE.find("\nFROM ", start)
    lines = DOCKERFILE[DOCKERFILE.rindex("FROM ", 0, start):None if following < 0 else following].splitlines()
    while not lines[-1].strip() or lines[-1].startswith("#"):
        lines.pop()
    return "\n".join(lines)


def pins(lock: str) -> dict[str, str]:
    """Package (canonical name) → version pinned in a lock file."""
    lines = (line for line in (REPO / lock).read_text().splitlines() if line and not line.startswith("#"))
    return {canonicalize_name(name): version for name, version in (line.split("==") for line in lines)}


def test_hadolint_finds_nothing() -> None:
    done = run_tool("hadolint", ["--failure-threshold", "info", "Dockerfile"])
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_fails_no_check_and_skips_only_the_argument_base() -> None:
    reports = checkov(["--file", "Dockerfile", "--framework", "dockerfile"])
    assert not failed_checks(reports)
    assert sum(report["summary"]["passed"] for report in reports) > 50
    skipped = skipped_checks(reports)
    assert set(skipped) == {"CKV_DOCKER_7"}
    assert "build argument" in skipped["CKV_DOCKER_7"]


def test_the_base_is_a_build_argument_defaulting_to_python_slim() -> None:
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", DOCKERFILE, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS runtime$", DOCKERFILE, re.M)


def test_serve_is_the_default_target_and_jobs_and_the_registry_named_ones() -> None:
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", DOCKERFILE, re.M)
    assert stages == [("${BASE_IMAGE}", "runtime"), ("runtime", "registry"), ("runtime", "app"),
                      ("app", "jobs-content"), ("jobs-content", "jobs"), ("app", "serve")]
    assert stage("serve") == "FROM app AS serve"  # the last stage: what a plain build makes
    # Empty: each build commits it anew, with its own labels (a fully cached stage keeps its first's).
    assert stage("jobs") == "FROM jobs-content AS jobs"
    registry = stage("registry")
    # mlflow server: the full lock, not the serving one.
    assert "pip install --no-cache-dir -r /tmp/requirements.lock" in registry
    assert "requirements-registry.lock" in registry and "USER 10001:10001" in registry
    assert "COPY chaos_pyfunc" not in registry and "COPY model" not in registry


def test_the_serving_image_has_the_serving_lock_only_and_the_jobs_image_the_rest() -> None:
    app, jobs = stage("app"), stage("jobs-content")
    assert "requirements-serve.lock" in app
    for absent in ("requirements.lock", "requirements-drift.lock", "gcc"):
        assert absent not in app, absent
    # The packages' test suites and setuptools go in the very layer that installs them.
    install = next(line for line in app.split("RUN ")[1:] if "requirements-serve.lock" in line)
    assert "-name tests -prune -exec rm -rf {} +" in install and "pip uninstall --yes setuptools" in install
    assert "gcc libc6-dev" in jobs
    assert "pip install --no-cache-dir -r /tmp/requirements.lock" in jobs
    assert "--no-deps -r /tmp/requirements-drift.lock" in jobs
    assert jobs.endswith('USER 10001:10001\nCMD ["chaos", "--help"]')  # the CronJobs set the command


def test_the_serving_lock_is_the_full_lock_without_what_only_training_needs() -> None:
    serve, full = pins("requirements-serve.lock"), pins("requirements.lock")
    # One version of each package in both images: the jobs image installs the full lock over serve's.
    assert {name: full.get(name) for name in serve} == serve
    assert "mlflow-skinny" in serve
    for only_training in ("mlflow", "matplotlib", "pyarrow", "flask", "alembic", "gunicorn", "evidently"):
        assert only_training not in serve, only_training
    # The package's own requirements hold in each: its dependencies in the serving lock, its
    # training extra in the full one (`pip check` passes in both images: tests/container).
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    train = project["optional-dependencies"]["train"]
    for lock, requirements in ((serve, project["dependencies"]), (full, train)):
        for requirement in map(Requirement, requirements):
            name = canonicalize_name(requirement.name)
            assert name in lock and requirement.specifier.contains(lock[name]), requirement


def test_dependencies_come_from_the_lock_before_the_code() -> None:
    app = stage("app")
    lock = app.index("COPY requirements-serve.lock")
    install = app.index("pip install --no-cache-dir --no-deps -r /tmp/requirements-serve.lock")
    assert lock < install < app.index("COPY chaos_pyfunc") < app.index("COPY model")


def test_the_server_listens_on_every_interface_port_8080_behind_the_gateway() -> None:
    assert 'CMD ["chaos", "serve", "--host", "0.0.0.0", "--port", "8080"]' in DOCKERFILE
    # The model is a setting (a pod pins models:/chaos-appetence/<N>); the default is baked in.
    assert re.search(r"^ENV CHAOS_MODEL_URI=/app/model$", DOCKERFILE, re.M)
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, re.M)


def test_dockerignore_keeps_out_state_secrets_and_everything_unlisted() -> None:
    ignore = (REPO / ".dockerignore").read_text().split("\n")
    assert {"*", "config.yml", "**/config.yml", "**/*key*.json", "var/"} <= set(ignore)
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"requirements.lock", "requirements-serve.lock", "requirements-registry.lock",
                       "requirements-drift.lock", "pyproject.toml", "chaos_pyfunc", "model"}
