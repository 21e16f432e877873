"""Where the offline infrastructure checkers live, and one way to run them.

`make tools` installs them: the Python ones (checkov, kubernetes-validate, hadolint, yamllint)
into .tools/venv, PyPI's detect-secrets into .tools/secrets-venv (checkov's fork of it installs
a module of the same name), gitlab-ci-local and Node 22 into tools/node_modules. A missing tool
fails the test and names the command that installs it; nothing here is ever skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from support.server import REPO

PYTHON_TOOLS = REPO / ".tools" / "venv" / "bin"
# Never looked up by tool(): .tools/venv has a `detect-secrets` too, checkov's fork.
SECRETS_TOOLS = REPO / ".tools" / "secrets-venv" / "bin"
NODE_TOOLS = REPO / "tools" / "node_modules" / ".bin"
KUBECTL = Path("/usr/bin/kubectl")


def tool(name: str) -> Path:
    """The path of an installed checker; fails the test when it is missing."""
    for folder in (PYTHON_TOOLS, NODE_TOOLS, KUBECTL.parent):
        path = folder / name
        if path.exists():
            return path
    pytest.fail(f"{name} is not installed: run `make tools`", pytrace=False)


def run_tool(name: str, args: Sequence[str | Path], cwd: Path = REPO, timeout: float = 300,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a checker and return what it did; the caller asserts on the exit code and output."""
    path = os.pathsep.join([str(NODE_TOOLS), str(PYTHON_TOOLS), os.environ["PATH"]])
    full_env = {**os.environ, "PATH": path}
    full_env.update(env or {})
    return subprocess.run([str(tool(name)), *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def detect_secrets(args: Sequence[str | Path], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """PyPI's detect-secrets, from its own venv; fails the test when it is missing."""
    path = SECRETS_TOOLS / "detect-secrets"
    if not path.exists():
        pytest.fail("detect-secrets is not installed: run `make tools`", pytrace=False)
    return subprocess.run([str(path), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)


def checkov(args: Sequence[str | Path], env: dict[str, str] | None = None) -> list[dict]:
    """checkov's JSON reports (one per framework), run offline; fails the test if it did not run."""
    done = run_tool("checkov", ["--skip-download", "--output", "json", *args], env=env)
    assert done.stdout.strip().startswith(("[", "{")), f"checkov did not report:\n{done.stderr[-3000:]}"
    reports = json.loads(done.stdout)
    return reports if isinstance(reports, list) else [reports]


def failed_checks(reports: list[dict]) -> list[str]:
    """``CHECK_ID resource file`` for every failed check, to name them in an assertion message."""
    return [f"{check['check_id']} {check['resource']} {check['file_path']}"
            for report in reports for check in report["results"].get("failed_checks", [])]


def skipped_checks(reports: list[dict]) -> dict[str, str]:
    """Skipped check id → the reason written beside its skip comment or annotation."""
    return {check["check_id"]: (check.get("check_result") or {}).get("suppress_comment", "")
            for report in reports for check in report["results"].get("skipped_checks", [])}
