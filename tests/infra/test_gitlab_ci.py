"""The GitLab pipeline, checked offline: which jobs each branch runs (gitlab-ci-local), what the
jobs do, and checkov's gitlab_ci checks."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from .tools import REPO, checkov, failed_checks, run_tool, skipped_checks

pytestmark = pytest.mark.infra
PIPELINE = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())


@cache
def jobs_on(branch: str, workdir: Path) -> frozenset[str]:
    """The jobs a push to ``branch`` runs, as gitlab-ci-local evaluates the rules."""
    done = run_tool("gitlab-ci-local", ["--list-json", "--variable", f"CI_COMMIT_BRANCH={branch}"],
                    cwd=workdir, env={"GCL_IGNORE_PREDEFINED_VARS": "CI_COMMIT_BRANCH"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return frozenset(job["name"] for job in json.loads(done.stdout) if job["when"] != "never")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding the pipeline file: gitlab-ci-local reads git and writes its state
    beside the file, so it runs on a copy, not in the working tree."""
    work = tmp_path_factory.mktemp("gitlab")
    shutil.copy(REPO / ".gitlab-ci.yml", work)
    author = ["-c", "user.name=ci", "-c", "user.email=ci@example.org"]
    for command in (["init", "--quiet", "--initial-branch=develop"], ["add", "."],
                    [*author, "commit", "--quiet", "-m", "ci"]):
        subprocess.run(["git", *command], cwd=work, check=True)
    return work


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("develop", {"build", "unit-tests", "secrets-scan"}),
        ("staging", {"build", "unit-tests", "secrets-scan", "deploy-staging"}),
        ("master", {"build", "secrets-scan", "deploy-production"}),
        ("feature/faster-join", {"build", "unit-tests", "secrets-scan"}),
    ],
)
def test_each_branch_runs_exactly_its_jobs(workdir: Path, branch: str, expected: set[str]) -> None:
    assert jobs_on(branch, workdir) == expected


def test_only_branches_start_pipelines() -> None:
    # gitlab-ci-local does not apply workflow:rules, so read them: a merge request or a tag
    # alone starts nothing, and no job can run twice for one push.
    assert PIPELINE["workflow"]["rules"] == [{"if": "$CI_COMMIT_BRANCH"}]
    assert PIPELINE["stages"] == ["build", "test", "deploy"]


def test_build_pushes_the_commit_tag_and_the_branch_tag_with_labels() -> None:
    script = " ".join(PIPELINE["build"]["script"])
    assert '--tag "$IMAGE:$CI_COMMIT_SHORT_SHA"' in script
    assert '--tag "$IMAGE:$CI_COMMIT_REF_SLUG"' in script
    assert 'docker push "$IMAGE:$CI_COMMIT_SHORT_SHA"' in script
    assert '--build-arg GIT_COMMIT="$CI_COMMIT_SHA"' in script
    assert '--build-arg MODEL_VERSION="$(.ci/model-version)"' in script
    assert PIPELINE["variables"]["IMAGE"] == "$CI_REGISTRY_IMAGE/chaos"


def test_unit_tests_run_inside_the_image_built_for_the_commit() -> None:
    job = PIPELINE["unit-tests"]
    assert job["image"] == "$IMAGE:$CI_COMMIT_SHORT_SHA"
    assert job["stage"] == "test"
    assert "-m \"not e2e and not infra and not container and not data\"" in " ".join(job["script"])


def test_secrets_scan_installs_the_pinned_detect_secrets_and_scans_every_tracked_file() -> None:
    job = PIPELINE["secrets-scan"]
    assert job["stage"] == "test"
    assert job["needs"] == []  # independent of the build: it starts at once
    assert "rules" not in job and "only" not in job and "except" not in job  # every branch
    script = job["script"]
    # The same lock as `make tools`, nothing unpinned pulled in.
    assert any("pip install" in line and "--no-deps" in line and "-r tools/requirements-secrets.lock" in line
               for line in script), script
    assert (REPO / "tools" / "requirements-secrets.lock").exists()
    # detect-secrets-hook fails on any finding; no baseline, no plugin or file left out.
    assert script[-1] == "git ls-files -z | xargs -0 detect-secrets-hook"
    assert not any(word in " ".join(script) for word in ("--baseline", "--disable-plugin", "--exclude"))
    assert "-slim" not in job["image"], "the scan lists the files with git, which -slim images lack"


@pytest.mark.parametrize(("job", "env", "environment"), [
    ("deploy-staging", "staging", "staging"),
    ("deploy-production", "master", "production"),
])
def test_deploys_set_the_commit_image_in_their_environment(job: str, env: str, environment: str) -> None:
    definition = PIPELINE[job]
    assert definition["extends"] == ".deploy"
    assert definition["variables"]["DEPLOY_ENV"] == env
    assert definition["environment"]["name"] == environment
    script = PIPELINE[".deploy"]["script"]
    assert script[-1] == 'k8s/deploy.sh "$DEPLOY_ENV" "$IMAGE:$CI_COMMIT_SHORT_SHA"'
    # The key is a File variable: the job sees a path, never the key in its log or YAML.
    assert '--key-file="$GCP_SERVICE_ACCOUNT_KEY"' in script[0]
    assert (REPO / "k8s" / "deploy.sh").exists()


def test_a_pipeline_variable_deploys_a_given_model_version() -> None:
    """The rollback: MODEL_VERSION (empty by default) reaches deploy.sh, which pins it."""
    variables = PIPELINE["variables"]
    assert variables["MODEL_VERSION"]["value"] == "" and variables["MODEL_VERSION"]["description"]
    assert variables["MODEL_ALIAS"]["value"] == ""
    assert "MODEL_VERSION" in (REPO / "k8s" / "deploy.sh").read_text()


def test_every_image_is_pinned_to_a_version() -> None:
    jobs = [job for job in PIPELINE.values() if isinstance(job, dict)]
    images = [job["image"] for job in jobs if "image" in job]
    services = [service["name"] for job in jobs for service in job.get("services", [])]
    for reference in images + services:
        name, _, tag = reference.rpartition(":")
        assert name and tag and tag != "latest", reference


def test_checkov_fails_no_gitlab_check() -> None:
    reports = checkov(["--file", ".gitlab-ci.yml", "--framework", "gitlab_ci"])
    assert not failed_checks(reports)
    assert not skipped_checks(reports)
    assert sum(report["summary"]["passed"] for report in reports) > 0
