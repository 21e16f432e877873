"""The MLflow registry: where each environment's versions live, and which one its alias names.

Each environment has a registered model of its own (setting ``registered_model``: the overlays
set ``chaos-appetence-staging`` and ``chaos-appetence-production``), and its runs an experiment of
the same name: staging's nightly job moves only staging's alias, production's only production's,
and neither can move the other's by mistake. A version goes from staging to production only by
an explicit copy (``chaos promote N --alias production --from chaos-appetence-staging``), which
keeps its training run: the lineage.

The deployment contract: the alias ``staging`` names what the staging environment serves,
``production`` what master serves. The deploy job resolves the alias to a version number once
and pins ``models:/<registered model>/<N>`` in the pod spec.

The tracking server is ``MLFLOW_TRACKING_URI`` (``make registry`` runs one on loopback, with
PostgreSQL behind it); unset, a local SQLite store under var/ stands in for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

# The default registered model (Settings.registered_model): the committed model/ is version 1 of it.
REGISTERED_MODEL = "chaos-appetence"
ALIASES = ("staging", "production")
DEFAULT_TRACKING_URI = "sqlite:///var/mlflow.db"
DEFAULT_ARTIFACT_ROOT = Path("var") / "mlartifacts"
REFUSED_TAG = "refused"  # on the registered model: refused.<tables' key>, a refusal remembered


def use_tracking_store(name: str = REGISTERED_MODEL) -> mlflow.MlflowClient:
    """MLFLOW_TRACKING_URI if set (`mlflow run` sets it), else a local SQLite store under var/;
    the experiment ``name`` (the registered model's) is created on first use and made current."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    local_default = uri == DEFAULT_TRACKING_URI
    if local_default:
        Path("var").mkdir(exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(name) is None:
        # The local store keeps its artifacts under var/ too, not in a stray ./mlruns; a tracking
        # server decides on its own (its --artifacts-destination).
        location = DEFAULT_ARTIFACT_ROOT.resolve().as_uri() if local_default else None
        mlflow.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(name)
    return mlflow.MlflowClient()


def version_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def holder(client: mlflow.MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None if it points at none yet."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def aliases_of(client: mlflow.MlflowClient, name: str, version: str) -> list[str]:
    return list(client.get_model_version(name, version).aliases)


def ensure_model(client: mlflow.MlflowClient, name: str) -> None:
    """The registered model ``name``, created if it has no version yet."""
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name)


def remember_refusal(client: mlflow.MlflowClient, name: str, key: str, summary: dict[str, Any]) -> None:
    """A candidate trained on the tables of ``key`` was refused: recorded on the registered model,
    so the nightly job does not train it again until the tables change (or --force)."""
    ensure_model(client, name)
    client.set_registered_model_tag(name, f"{REFUSED_TAG}.{key}", json.dumps(summary)[:5000])


def refusal(client: mlflow.MlflowClient, name: str, key: str) -> dict[str, Any] | None:
    """The refusal remembered for the tables of ``key``, if any."""
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    recorded = tags.get(f"{REFUSED_TAG}.{key}")
    return None if recorded is None else dict(json.loads(recorded))


def copy_version(client: mlflow.MlflowClient, source: str, version: str, name: str) -> str:
    """Version ``version`` of the registered model ``source`` copied into ``name``, with its
    training run (the lineage) and a tag naming where it came from; the new version's number."""
    copied = client.copy_model_version(version_uri(source, version), name)
    client.set_model_version_tag(name, copied.version, "copied_from", f"{source}/{version}")
    return str(copied.version)


def keep_report(client: mlflow.MlflowClient, name: str, kind: str, version: str | None, files: list[Path],
                metrics: dict[str, float], tags: dict[str, str]) -> str:
    """A job's report (``kind``: drift, monitor) kept as the artifacts of a run of its own, beside
    the training run of the version it judged (in that run's experiment), the version tagged with
    it (``<kind>.run_id``): where people open the model's versions, they find its reports. The
    run's id."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        raise MlflowException(f"no experiment {name}: use_tracking_store({name!r}) first")
    experiment_id = experiment.experiment_id
    if version is not None:
        trained = client.get_model_version(name, version).run_id
        if trained is not None:
            experiment_id = client.get_run(trained).info.experiment_id
    run = client.create_run(experiment_id, run_name=f"{kind} of version {version}",
                            tags={"chaos.report": kind, "chaos.model_version": str(version), **tags})
    run_id = run.info.run_id
    for metric, value in metrics.items():
        client.log_metric(run_id, metric, value)
    for file in files:
        client.log_artifact(run_id, str(file), artifact_path=kind)
    client.set_terminated(run_id)
    if version is not None:
        client.set_model_version_tag(name, version, f"{kind}.run_id", run_id)
    return run_id
