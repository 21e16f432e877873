"""chaos: the appetence scoring service (an MLflow pyfunc enriched live from socio_eco).

The package's parts are folders, each importing only from those below it (docs/architecture.md;
held by import-linter, [tool.importlinter] in pyproject.toml): contract, scoring and predlog,
http and lifecycle; config, db, error_capture and cli at the top of the package.

A registered model refers to the package's code by module path: its ``python_model.pkl`` names
``chaos_pyfunc.model.AppetenceModel`` and its ``artifacts/pipeline.pkl``
``chaos_pyfunc.pipeline.day_of_month``, the modules' names before they moved into
``chaos_pyfunc.scoring``. ``MOVED`` keeps those old names importable, as the very same module
objects as the new ones, so every version registered before the move still loads; what is
pickled now carries the new names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

# The old dotted names a pickled model may carry (every version of model/ in git names only
# these two), and the modules they now are.
MOVED = {
    "chaos_pyfunc.model": "chaos_pyfunc.scoring.model",
    "chaos_pyfunc.pipeline": "chaos_pyfunc.scoring.pipeline",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old name as the module it moved to (``sys.modules`` then holds that module
    under both names; the module keeps its own ``__name__`` and ``__spec__``)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # a placeholder, replaced in sys.modules by exec_module

    def exec_module(self, module: types.ModuleType) -> None:
        sys.modules[module.__name__] = importlib.import_module(MOVED[module.__name__])


# First: an old name is this alias whatever else is on sys.path (an older copy of the package).
if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
