"""Every package the code imports is declared in pyproject.toml: the serving dependencies or an
extra (train, drift, spark)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "chaos_pyfunc"


def imported_top_levels() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    ours = {"chaos_pyfunc", "__future__"}
    return {name for name in found if name not in sys.stdlib_module_names and name not in ours}


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    requirements = [*project["dependencies"], *(r for extra in extras for r in extra)]
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_every_imported_package_is_declared() -> None:
    names = packages_distributions()
    missing = {}
    for module in sorted(imported_top_levels()):
        # Not installed here (pyspark, an extra, in the jobs image): its distribution has its name.
        distributions = {d.lower().replace("_", "-") for d in names.get(module, [module])}
        if not distributions & declared():
            missing[module] = sorted(distributions)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
