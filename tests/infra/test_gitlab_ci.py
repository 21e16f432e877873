"""The GitLab pipeline, checked offline: which jobs each branch runs (gitlab-ci-local), what the
jobs do (their own script lines, run against a fake docker and registry: tests/infra/fake_docker.py),
and checkov's gitlab_ci checks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
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
        # no build: it deploys what staging tested; promoting a staging version is a manual step
        ("master", {"secrets-scan", "deploy-production", "promote-model"}),
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


def test_build_makes_both_images_with_labels_and_smoke_tests_before_pushing() -> None:
    script = PIPELINE["build"]["script"]
    builds = [line for line in script if line.startswith("docker build")]
    assert len(builds) == 2
    serve, jobs = builds
    assert "--pull --target serve" in serve and '--tag "$IMAGE:$CI_COMMIT_SHORT_SHA"' in serve
    # jobs is built on the base serve just pulled: a second --pull could get a newer one.
    assert "--target jobs" in jobs and "--pull" not in jobs
    assert '--tag "$JOBS_IMAGE:$CI_COMMIT_SHORT_SHA"' in jobs
    for line in builds:
        assert '--build-arg GIT_COMMIT="$CI_COMMIT_SHA"' in line
        assert '--build-arg MODEL_VERSION="$(.ci/model-version)"' in line
    smoke = script.index('.ci/smoke-serve "$IMAGE:$CI_COMMIT_SHORT_SHA"')
    assert script.index(jobs) < smoke < min(i for i, line in enumerate(script) if ".ci/push-image" in line)
    assert PIPELINE["variables"]["IMAGE"] == "$CI_REGISTRY_IMAGE/chaos"
    assert PIPELINE["variables"]["JOBS_IMAGE"] == "$CI_REGISTRY_IMAGE/chaos/jobs"
    assert PIPELINE["build"]["artifacts"]["reports"]["dotenv"] == "build.env"


def test_unit_tests_run_inside_the_jobs_image() -> None:
    job = PIPELINE["unit-tests"]
    # A tag only this pipeline's build writes (test_staging_deploys_… checks it names that build).
    assert job["image"] == "$JOBS_IMAGE:pipeline-$CI_PIPELINE_ID"
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
def test_deploys_run_deploy_sh_with_both_digests(job: str, env: str, environment: str) -> None:
    definition = PIPELINE[job]
    assert definition["extends"] == ".deploy"
    assert definition["variables"]["DEPLOY_ENV"] == env
    assert definition["environment"]["name"] == environment
    assert 'k8s/deploy.sh "$DEPLOY_ENV" "$SERVE_REF" "$JOBS_REF"' in definition["script"]
    # The key is a File variable: the job sees a path, never the key in its log or YAML.
    assert '--key-file="$GCP_SERVICE_ACCOUNT_KEY"' in PIPELINE[".deploy"]["before_script"][0]
    assert (REPO / "k8s" / "deploy.sh").exists()


# --- the jobs' own lines, run against a fake docker and registry ------------------------------------

REGISTRY_IMAGE = "registry.example.com/bank/chaos"
SERVE, JOBS = f"{REGISTRY_IMAGE}/chaos", f"{REGISTRY_IMAGE}/chaos/jobs"


def git(repo: Path, *args: str) -> str:
    author = ["-c", "user.name=ci", "-c", "user.email=ci@example.org"]
    return subprocess.run(["git", *author, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def expand(value: str, variables: dict[str, str]) -> str:
    """GitLab's expansion of $NAME in a variable or an image name."""
    return re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], value)


@dataclass
class Pipeline:
    """A checkout of the repository's CI files; docker and gcloud are stand-ins, and k8s/deploy.sh
    records its arguments instead of deploying."""

    repo: Path
    env: dict[str, str]

    def variables(self, branch: str, pipeline_id: str) -> dict[str, str]:
        sha = git(self.repo, "rev-parse", "HEAD")
        predefined = {"CI_REGISTRY": "registry.example.com", "CI_REGISTRY_IMAGE": REGISTRY_IMAGE,
                      "CI_REGISTRY_USER": "ci",
                      "CI_REGISTRY_PASSWORD": "a-stand-in",  # pragma: allowlist secret (no registry)
                      "CI_PROJECT_DIR": str(self.repo), "CI_COMMIT_BRANCH": branch,
                      "CI_COMMIT_REF_SLUG": branch, "CI_COMMIT_SHA": sha, "CI_COMMIT_SHORT_SHA": sha[:8],
                      "CI_PIPELINE_ID": pipeline_id}
        pipeline = {name: value for name, value in PIPELINE["variables"].items() if isinstance(value, str)}
        return predefined | {name: expand(value, predefined) for name, value in pipeline.items()}

    def run(self, job: str, branch: str, pipeline_id: str, dotenv: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """The job's before_script and script in one shell that stops at the first failure, as the
        runner runs them, with the pipeline's variables, the job's, and a dotenv's."""
        definition = PIPELINE[job]
        if "extends" in definition:
            definition = {**PIPELINE[definition["extends"]], **definition}
        variables = self.variables(branch, pipeline_id) | definition.get("variables", {}) | (dotenv or {})
        lines = [*definition.get("before_script", []), *definition["script"]]
        done = subprocess.run(["sh", "-e", "-c", "\n".join(lines)], cwd=self.repo, capture_output=True,
                              text=True, timeout=60, check=False, env={**self.env, **variables})
        if check:
            assert done.returncode == 0, f"{job}:\n{done.stdout}\n{done.stderr}"
        return done

    def registry(self) -> dict[str, str]:
        return json.loads(Path(self.env["FAKE_DOCKER_STATE"]).read_text())["registry"]

    def deployed(self) -> list[list[str]]:
        log = self.repo / "deployed"
        return [line.split() for line in log.read_text().splitlines()] if log.exists() else []

    def tree(self) -> str:
        return git(self.repo, "rev-parse", "HEAD^{tree}")


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / ".ci", repo / ".ci")
    (repo / "model").mkdir()
    shutil.copy(REPO / "model" / "registered_model_meta", repo / "model")
    shutil.copy(REPO / ".gitlab-ci.yml", repo)
    (repo / "k8s").mkdir()
    (repo / "k8s" / "deploy.sh").write_text('#!/bin/sh\necho "$@" >> "$CI_PROJECT_DIR/deployed"\n')
    (repo / ".gitignore").write_text("build.env\ndeployed\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_docker = Path(__file__).parent / "fake_docker.py"
    (bin_dir / "docker").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake_docker}" "$@"\n')
    (bin_dir / "gcloud").write_text("#!/bin/sh\n")
    for script in (*bin_dir.iterdir(), repo / "k8s" / "deploy.sh"):
        script.chmod(0o755)
    git(repo, "init", "--quiet", "--initial-branch=staging")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "a change")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
           "FAKE_DOCKER_STATE": str(tmp_path / "registry.json")}
    return Pipeline(repo, env)


def dotenv(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_staging_deploys_the_digests_it_built_and_master_those_staging_tested(pipeline: Pipeline) -> None:
    pipeline.run("build", "staging", "101")
    built = dotenv(pipeline.repo / "build.env")
    registry = pipeline.registry()
    short = git(pipeline.repo, "rev-parse", "HEAD")[:8]
    assert built == {"SERVE_REF": f"{SERVE}@{registry[f'{SERVE}:{short}']}",
                     "JOBS_REF": f"{JOBS}@{registry[f'{JOBS}:{short}']}"}
    # The unit tests run in that very jobs image: the tag they name holds the digest deployed.
    unit_tests_image = expand(PIPELINE["unit-tests"]["image"], pipeline.variables("staging", "101"))
    assert f"{JOBS}@{registry[unit_tests_image]}" == built["JOBS_REF"]
    tree = pipeline.tree()
    assert registry[f"{SERVE}:tree-{tree}"] == built["SERVE_REF"].split("@")[1]

    pipeline.run("deploy-staging", "staging", "101", dotenv=built)
    assert pipeline.deployed() == [["staging", built["SERVE_REF"], built["JOBS_REF"]]]
    registry = pipeline.registry()
    for image, ref in ((SERVE, built["SERVE_REF"]), (JOBS, built["JOBS_REF"])):
        assert f"{image}@{registry[f'{image}:tested-{tree}']}" == ref  # the digest deployed, not an index

    # Another build of the same tree (develop's) makes other bytes: the tree tag moves, not the tested one.
    pipeline.run("build", "develop", "102")
    assert pipeline.registry()[f"{SERVE}:tree-{tree}"] != built["SERVE_REF"].split("@")[1]
    # A merge of staging into master: another commit, the same tree. Master builds nothing and
    # deploys the digests staging tested.
    git(pipeline.repo, "commit", "--quiet", "--allow-empty", "-m", "Merge branch 'staging'")
    assert pipeline.tree() == tree
    pipeline.run("deploy-production", "master", "103")
    assert pipeline.deployed()[-1] == ["master", built["SERVE_REF"], built["JOBS_REF"]]


def test_master_refuses_a_tree_staging_never_tested(pipeline: Pipeline) -> None:
    pipeline.run("build", "staging", "101")
    pipeline.run("deploy-staging", "staging", "101", dotenv=dotenv(pipeline.repo / "build.env"))
    (pipeline.repo / "hotfix.txt").write_text("straight to master\n")
    git(pipeline.repo, "add", "hotfix.txt")
    git(pipeline.repo, "commit", "--quiet", "-m", "a hotfix on master")
    done = pipeline.run("deploy-production", "master", "104", check=False)
    assert done.returncode != 0
    assert f"staging never tested tree {pipeline.tree()}" in done.stderr
    assert "merge the change" in done.stderr
    assert [args[0] for args in pipeline.deployed()] == ["staging"]


def test_a_pipeline_variable_deploys_a_given_model_version() -> None:
    """The rollback: MODEL_VERSION (empty by default) reaches deploy.sh, which pins it."""
    variables = PIPELINE["variables"]
    assert variables["MODEL_VERSION"]["value"] == "" and variables["MODEL_VERSION"]["description"]
    assert "MODEL_ALIAS" not in variables  # an environment reads only its own model's alias
    assert "MODEL_VERSION" in (REPO / "k8s" / "deploy.sh").read_text()


def test_a_staging_version_reaches_production_only_by_the_manual_promotion_job() -> None:
    job = PIPELINE["promote-model"]
    assert job["rules"] == [{"if": '$CI_COMMIT_BRANCH == "master"', "when": "manual", "allow_failure": True}]
    assert job["extends"] == ".deploy" and job["resource_group"] == "production"
    assert job["script"][-1] == 'k8s/promote.sh "$MODEL_VERSION"'



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
