"""No secret in the repository: PyPI's detect-secrets, every plugin and no baseline, finds nothing in
any file git tracks or would add; planted fakes prove it looks; config.yml and service account keys
stay out of git and out of the image.

A false positive is marked on its line with `# pragma: allowlist secret (why)`, never in a baseline.
Findings are reported as file:line: type; detect-secrets itself only ever prints a hash of a value.
"""

from __future__ import annotations

import fnmatch
import json
import random
import re
import string
import subprocess
from pathlib import Path

import pytest

from .tools import REPO, SECRETS_TOOLS, detect_secrets

pytestmark = pytest.mark.infra

# What may hold a secret and so must never enter git nor the image: config.yml, service account keys.
SECRET_FILES = ("config.yml", "*key*.json")


def files_to_scan(root: Path) -> list[str]:
    """Every file git tracks or would add (not ignored) under root, that is present."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    return sorted({name for name in listed if name and (root / name).is_file()})


def scan(root: Path) -> tuple[list[str], dict]:
    """detect-secrets over files_to_scan(root): (file:line: type of each finding, the whole report)."""
    files = files_to_scan(root)
    assert files, f"nothing to scan in {root}"
    done = detect_secrets(["scan", *files], cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    findings = [f"{name}:{found['line_number']}: {found['type']}"
                for name, found_in_file in report["results"].items() for found in found_in_file]
    return sorted(findings), report


def test_the_scanner_is_the_pinned_detect_secrets() -> None:
    lock = (REPO / "tools" / "requirements-secrets.lock").read_text()
    pinned = re.search(r"(?m)^detect-secrets==(\S+)$", lock)
    assert pinned, "tools/requirements-secrets.lock pins no detect-secrets"
    assert detect_secrets(["--version"]).stdout.strip() == pinned[1]
    # Every requirement of the lock is pinned to one version (it is installed with --no-deps).
    requirements = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.]+", line) for line in requirements), requirements
    # checkov's fork installs the same module: it must not be what runs here.
    assert not list((SECRETS_TOOLS.parent / "lib").glob("python*/site-packages/bc_detect_secrets*"))


def test_no_secret_in_any_file_git_tracks_or_would_add() -> None:
    findings, report = scan(REPO)
    assert not findings, ("detect-secrets findings (remove the secret, or mark a proven false positive "
                          "`# pragma: allowlist secret (why)` on its line):\n" + "\n".join(findings))
    # Not vacuous: the whole repository, with every plugin there is and no baseline.
    scanned = files_to_scan(REPO)
    assert {"README.md", ".gitlab-ci.yml", "k8s/base/deployment.yaml", "config_template.yml"} <= set(scanned)
    every_plugin = detect_secrets(["scan", "--list-all-plugins"]).stdout.split()
    assert len(every_plugin) >= 20, every_plugin
    assert sorted(plugin["name"] for plugin in report["plugins_used"]) == sorted(every_plugin)


def fake(rng: random.Random, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def planted_secrets() -> list[tuple[str, str, str, str]]:
    """(file, line, the fake secret in it, the type detect-secrets must report), each built at run time
    so that this file holds no secret of its own."""
    rng = random.Random(20240611)  # noqa: S311 (fakes, not secrets)
    aws_key = "AKIA" + fake(rng, 16, string.ascii_uppercase + string.digits)
    gitlab_token = "glpat-" + fake(rng, 20)
    password = fake(rng, 24)
    key_header = "-----BEGIN " + "PRIVATE KEY-----"
    key_body = fake(rng, 64)
    return [
        ("deploy.env", f"AWS_ACCESS_KEY_ID={aws_key}", aws_key, "AWS Access Key"),
        (".gitlab-ci.yml", f"variables:\n  TOKEN: {gitlab_token}", gitlab_token, "GitLab Token"),
        ("settings.py", f'DATABASE_URL = "postgresql://chaos:{password}@db.example.org/chaos"', password,
         "Basic Auth Credentials"),
        ("sa.json", json.dumps({"type": "service_account", "private_key": f"{key_header}\\n{key_body}"}),
         key_body, "Private Key"),
        ("config.yaml", f"database:\n  password: {password[::-1]}", password[::-1], "Secret Keyword"),
    ]


def test_the_scan_finds_planted_secrets(tmp_path: Path) -> None:
    """The same scan as above, over a throwaway repository holding fakes: each is found, by line,
    and no value is ever printed."""
    subprocess.run(["git", "init", "--quiet"], cwd=tmp_path, check=True)
    for name, text, _, _ in planted_secrets():
        (tmp_path / name).write_text(f"# a fake, made by {__name__}\n{text}\n")
    findings, report = scan(tmp_path)
    for name, text, secret, kind in planted_secrets():
        line = 1 + next(number for number, row in enumerate(text.splitlines(), 1) if secret in row)
        assert f"{name}:{line}: {kind}" in findings, findings
        assert secret not in json.dumps(report), f"{kind} printed"


def test_the_pragma_allowlists_only_its_own_line(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "--quiet"], cwd=tmp_path, check=True)
    key = "AKIA" + fake(random.Random(7), 16, string.ascii_uppercase + string.digits)  # noqa: S311
    other = "AKIA" + fake(random.Random(8), 16, string.ascii_uppercase + string.digits)  # noqa: S311
    (tmp_path / "notes.sh").write_text(f"KEY={key}  # pragma: allowlist secret (a test)\nOTHER={other}\n")
    assert scan(tmp_path)[0] == ["notes.sh:2: AWS Access Key"]


# --- files that hold secrets stay out of git and out of the image ------------------------------------

# Where such files would appear: the root, k8s/ (k8s/secrets.sh reads them) and the folders that go
# into the image.
SECRET_PATHS = ["config.yml", "k8s/config.yml", "chaos_pyfunc/config.yml", "model/config.yml",
                "key.json", "sa-key.json", "k8s/sa-key.json", "gcp-keys.json", "model/key.json",
                "chaos_pyfunc/service-account-key.json"]


def git_ignores(path: str) -> bool:
    # --no-index: by the ignore rules alone, whether or not git tracks the path.
    done = subprocess.run(["git", "check-ignore", "--no-index", "--quiet", path], cwd=REPO, check=False)
    assert done.returncode in (0, 1), f"git check-ignore failed on {path}"
    return done.returncode == 0


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception "!", pattern) for each rule of .dockerignore, as Docker and Podman read them."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((exception, re.compile(regex + r"\Z")))
    return rules


def docker_ignores(path: str) -> bool:
    """The last rule matching the path or one of its folders decides, as in Docker's patternmatcher."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for exception, regex in dockerignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not exception
    return ignored


@pytest.mark.parametrize("path", SECRET_PATHS)
def test_secret_files_are_ignored_by_git_and_docker(path: str) -> None:
    assert git_ignores(path)
    assert docker_ignores(path)


def test_the_ignore_checks_can_tell_files_apart() -> None:
    """What the image and git need is not ignored: the two checks above are not vacuous."""
    for path in ("config_template.yml", "k8s/base/deployment.yaml", "model/input_example.json"):
        assert not git_ignores(path), path
    for path in ("requirements.lock", "pyproject.toml", "chaos_pyfunc/scoring/model.py",
                 "model/input_example.json"):
        assert not docker_ignores(path), path
    for path in ("tests/test_cli.py", "var/chaos.db", "k8s/deploy.sh", "chaos_pyfunc/__pycache__/x.pyc"):
        assert docker_ignores(path), path


def test_git_tracks_no_secret_file() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    held = [path for path in tracked if any(fnmatch.fnmatch(Path(path).name, p) for p in SECRET_FILES)]
    assert not held
