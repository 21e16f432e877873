"""The MLflow registry: where versions of ``chaos-appetence`` live, and which one each alias names.

The deployment contract: the alias ``staging`` names what the staging environment serves,
``production`` what master serves. The deploy job resolves the alias to a version number once
and pins ``models:/chaos-appetence/<N>`` in the pod spec. (The older ``champion`` alias is
retired: ``production`` says what it meant.)

The tracking server is ``MLFLOW_TRACKING_URI`` (``make registry`` runs one on loopback, with
PostgreSQL behind it); unset, a local SQLite store under var/ stands in for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

REGISTERED_MODEL = "chaos-appetence"
# The file in a model directory that names its registry version: MLflow writes it when it
# downloads a models:/ URI, train.export_model for a run's model; the server and the image's
# labels read it.
REGISTERED_MODEL_META = "registered_model_meta"
EXPERIMENT = "chaos-appetence"
ALIASES = ("staging", "production")
DEFAULT_TRACKING_URI = "sqlite:///var/mlflow.db"
DEFAULT_ARTIFACT_ROOT = Path("var") / "mlartifacts"


def use_tracking_store() -> mlflow.MlflowClient:
    """MLFLOW_TRACKING_URI if set (`mlflow run` sets it), else a local SQLite store under var/;
    the experiment is created on first use."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    local_default = uri == DEFAULT_TRACKING_URI
    if local_default:
        Path("var").mkdir(exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        # The local store keeps its artifacts under var/ too, not in a stray ./mlruns; a tracking
        # server decides on its own (its --artifacts-destination).
        location = DEFAULT_ARTIFACT_ROOT.resolve().as_uri() if local_default else None
        mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    mlflow.set_experiment(EXPERIMENT)
    return mlflow.MlflowClient()


def version_uri(version: str) -> str:
    return f"models:/{REGISTERED_MODEL}/{version}"


def holder(client: mlflow.MlflowClient, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None if it points at none yet."""
    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def aliases_of(client: mlflow.MlflowClient, version: str) -> list[str]:
    return list(client.get_model_version(REGISTERED_MODEL, version).aliases)


def keep_report(client: mlflow.MlflowClient, kind: str, version: str | None, files: list[Path],
                metrics: dict[str, float], tags: dict[str, str]) -> str:
    """A job's report (``kind``: drift) kept as the artifacts of a run of its own, beside the
    training run of the version it judged (in that run's experiment), the version tagged with
    it (``<kind>.run_id``); where people open the model's versions, they find its reports. The
    run's id."""
    experiment_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id  # type: ignore[union-attr]
    if version is not None:
        trained = client.get_model_version(REGISTERED_MODEL, version).run_id
        if trained is not None:
            experiment_id = client.get_run(trained).info.experiment_id
    run = client.create_run(experiment_id, run_name=f"{kind} of version {version}",
                            tags={"chaos.report": kind, "chaos.model_version": str(version), **tags})
    run_id = run.info.run_id
    for name, value in metrics.items():
        client.log_metric(run_id, name, value)
    for file in files:
        client.log_artifact(run_id, str(file), artifact_path=kind)
    client.set_terminated(run_id)
    if version is not None:
        client.set_model_version_tag(REGISTERED_MODEL, version, f"{kind}.run_id", run_id)
    return run_id
