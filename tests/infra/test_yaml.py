"""Every YAML file the repository holds passes yamllint in strict mode (.yamllint.yaml)."""

from __future__ import annotations

import subprocess

import pytest

from .tools import REPO, run_tool

pytestmark = pytest.mark.infra


def test_yamllint_strict_on_every_tracked_yaml_file() -> None:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             "*.yml", "*.yaml", ":!model/"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    assert {".gitlab-ci.yml", "conda.yaml", ".yamllint.yaml"} <= set(listed)
    done = run_tool("yamllint", ["--strict", "--config-file", ".yamllint.yaml", *listed])
    assert done.returncode == 0, done.stdout + done.stderr
