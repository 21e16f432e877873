"""The package's parts import only from the parts below them (docs/architecture.md): import-linter's
layers contract, [tool.importlinter] in pyproject.toml, run here so that make test holds it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(no_cache=True, no_logo=True))")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the package in ``root`` (found first on sys.path: the working directory)."""
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, capture_output=True, text=True,
                          timeout=120, check=False)


def test_no_import_runs_from_a_lower_part_to_a_higher_one() -> None:
    run = lint_imports(REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 kept, 0 broken" in run.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    """The check is not vacuous: a copy of the package whose contract imports scoring fails it."""
    shutil.copytree(REPO / "chaos_pyfunc", tmp_path / "chaos_pyfunc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    schema = tmp_path / "chaos_pyfunc" / "contract" / "schema.py"
    schema.write_text(schema.read_text() + "\n\ndef _upward() -> None:\n"
                                           "    from chaos_pyfunc.scoring import reasons  # noqa: F401\n")
    run = lint_imports(tmp_path)
    assert run.returncode != 0
    assert "chaos_pyfunc.contract.schema -> chaos_pyfunc.scoring.reasons" in run.stdout, run.stdout
