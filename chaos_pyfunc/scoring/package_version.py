"""One copy of the code: a model version names the package it needs, the image holds the package.

A model logged by ``chaos train`` carries no code of its own. Its ``python_model.pkl`` and its
pipeline pickle refer to ``chaos_pyfunc`` by name, and its ``requirements.txt`` pins the package
as ``chaos-pyfunc~=X.Y.Z`` (any X.Y release from X.Y.Z on): a patch release of the package
serves the models of its minor release, a new minor release needs models trained with it.
Before loading a model, the server checks that requirement against the package installed, so a
model the image cannot run is refused with both versions named, never half-loaded.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

PACKAGE = "chaos-pyfunc"
# The file in a model directory that names its registry version: MLflow writes it when it
# downloads a models:/ URI, lifecycle/train.export_model for a run's model; the server and the
# image's labels read it.
REGISTERED_MODEL_META = "registered_model_meta"


class UnusableModel(RuntimeError):
    """A model that cannot be served here: not to be had, or not runnable by this package."""


class IncompatibleModel(UnusableModel):
    """The model needs another version of this package than the one installed."""


def installed_version() -> str:
    return version(PACKAGE)


def requirement() -> str:
    """What a model logged now requires: this package's minor release, from this version on."""
    return f"{PACKAGE}~={installed_version()}"


def required_by(model_dir: Path) -> Requirement | None:
    """The model's requirement on this package, from its requirements.txt; None if it has none."""
    path = model_dir / "requirements.txt"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        try:
            wanted = Requirement(line.strip())
        except InvalidRequirement:
            continue
        if wanted.name.lower().replace("_", "-") == PACKAGE:
            return wanted
    return None


def check_compatible(model_dir: Path, what: str) -> str:
    """The installed version, if it can run the model in ``model_dir``; else IncompatibleModel,
    naming ``what`` (the model's URI or version) and both versions."""
    installed = installed_version()
    wanted = required_by(model_dir)
    if wanted is None:
        raise IncompatibleModel(
            f"{what} does not require {PACKAGE}: it was not logged by `chaos train` of this "
            f"package (installed: {PACKAGE} {installed}); retrain and register it")
    if not wanted.specifier.contains(installed, prereleases=True):
        raise IncompatibleModel(
            f"{what} requires {wanted}, but this image has {PACKAGE} {installed}: serve it with "
            f"an image of a matching version, or retrain and register it with this one")
    return installed
