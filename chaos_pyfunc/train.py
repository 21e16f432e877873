"""The training job: customers → the serving path's validation and as-of join → fit → evaluate
→ log to MLflow → register a version of ``chaos-appetence`` → optionally export ``model/``.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from sklearn.model_selection import train_test_split

from chaos_pyfunc import evaluate, schema
from chaos_pyfunc.config import Settings, load_settings
from chaos_pyfunc.db import make_engine, read_customers, read_customers_csv, seed_embedded
from chaos_pyfunc.model import PIPELINE_ARTIFACT, AppetenceModel
from chaos_pyfunc.pipeline import Hyperparameters, build_pipeline
from chaos_pyfunc.socio_eco import IndicatorSource, enrich

log = logging.getLogger(__name__)

REGISTERED_MODEL = "chaos-appetence"
EXPERIMENT = "chaos-appetence"
CHAMPION_ALIAS = "champion"
# The file in an exported model directory that names its registry version.
REGISTERED_MODEL_META = "registered_model_meta"
DEFAULT_TRACKING_URI = "sqlite:///var/mlflow.db"
DEFAULT_ARTIFACT_ROOT = Path("var") / "mlartifacts"
PACKAGE_DIR = Path(__file__).resolve().parent
# The package files the served model needs (pipeline.py: the pickle refers to day_of_month);
# the training and command-line modules stay out of model/code.
SERVING_FILES = ("__init__.py", "config.py", "schema.py", "db.py", "socio_eco.py", "model.py", "compiled.py",
                 "pipeline.py", "seed_indicators.csv")
# What the served model needs; pinned to the versions it was trained with.
SERVING_PACKAGES = ("mlflow", "scikit-learn", "pandas", "numpy", "sqlalchemy", "psycopg2-binary", "pyyaml")


@dataclass(frozen=True)
class TrainOptions:
    customers: str | None = None  # a CSV path; None reads the `customers` table
    holdout_months: int = 6  # the time-ordered holdout: the last months of contacts
    test_size: float = 0.2  # the random holdout's share
    seed: int = 0
    export_dir: Path | None = None
    register: bool = True


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    version: str | None
    metrics: dict[str, float]


def load_customers(source: str | None, settings: Settings) -> pd.DataFrame:
    if source is None:
        engine = make_engine(settings)
        try:
            return read_customers(engine)
        finally:
            engine.dispose()
    frame = read_customers_csv(source)
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
    return frame


def time_split(dates: pd.Series, holdout_months: int) -> np.ndarray:
    """True for the rows of the last ``holdout_months`` months that have contacts."""
    months = dates.dt.to_period("M")
    last = sorted(months.unique())[-holdout_months:]
    return months.isin(last).to_numpy()


def _fit_and_score(features: pd.DataFrame, labels: np.ndarray, test: np.ndarray,
                   hyper: Hyperparameters) -> tuple[np.ndarray, np.ndarray]:
    fitted = build_pipeline(hyper).fit(features[~test], labels[~test])
    return labels[test], fitted.predict_proba(features[test])[:, 1]


def _serving_requirements() -> list[str]:
    return [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


def _use_tracking_store() -> None:
    """MLFLOW_TRACKING_URI if set (`mlflow run` sets it), else a local SQLite store under var/."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    local_default = uri == DEFAULT_TRACKING_URI
    if local_default:
        Path("var").mkdir(exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        # The local store keeps its artifacts under var/ too, not in a stray ./mlruns.
        location = DEFAULT_ARTIFACT_ROOT.resolve().as_uri() if local_default else None
        mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    mlflow.set_experiment(EXPERIMENT)


def export_model(model_uri: str, export_dir: Path, version_number: str | None = None) -> None:
    """Replace ``export_dir`` with the model's files, ready for `mlflow models serve -m`.

    ``registered_model_meta`` records the registry version the files are (the image build labels
    the image with it); MLflow leaves it null when the files come from a run.
    """
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=scratch))
        shutil.rmtree(export_dir, ignore_errors=True)
        shutil.copytree(local, export_dir)
    # copytree keeps the scratch directory's 0700: the image's unprivileged user must read it.
    export_dir.chmod(0o755)
    meta = {"model_name": REGISTERED_MODEL if version_number else None, "model_version": version_number}
    (export_dir / REGISTERED_MODEL_META).write_text(yaml.safe_dump(meta))
    log.info("exported %s (version %s) to %s", model_uri, version_number, export_dir)


def train(options: TrainOptions, hyper: Hyperparameters | None = None) -> TrainResult:
    hyper = hyper or Hyperparameters()
    settings = load_settings()
    seed_embedded(settings)
    customers = load_customers(options.customers, settings)
    engine = make_engine(settings)
    try:
        # The very path `predict` takes: same validation, same query, same as-of join.
        features = enrich(customers, IndicatorSource(engine, ttl_seconds=0),
                          settings.max_indicator_age_months)
    finally:
        engine.dispose()
    labels = (customers[schema.LABEL] == "yes").to_numpy()

    by_time = time_split(features[schema.DATE], options.holdout_months)
    _, random_test = train_test_split(np.arange(len(labels)), test_size=options.test_size,
                                      stratify=labels, random_state=options.seed)
    by_chance = np.isin(np.arange(len(labels)), random_test)
    evaluations = {
        "time": _fit_and_score(features, labels, by_time, hyper),
        "random": _fit_and_score(features, labels, by_chance, hyper),
    }
    scores = {f"{split}_{name}": value for split, (y, p) in evaluations.items()
              for name, value in evaluate.metrics(y, p).items()}
    # The served model learns from every row; the splits above estimate how well it does.
    pipeline = build_pipeline(hyper).fit(features, labels)

    _use_tracking_store()
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as scratch:
        mlflow.log_params({**hyper.as_params(), "holdout_months": options.holdout_months,
                           "test_size": options.test_size, "rows": len(labels),
                           "customers": options.customers or "table:customers"})
        mlflow.log_metrics(scores)
        mlflow.log_figure(evaluate.roc_figure(evaluations), "plots/roc.png")
        mlflow.log_figure(evaluate.calibration_figure(evaluations), "plots/calibration.png")
        code = Path(scratch) / PACKAGE_DIR.name
        code.mkdir()
        for name in SERVING_FILES:
            shutil.copy2(PACKAGE_DIR / name, code / name)
        pickle_path = Path(scratch) / "pipeline.pkl"
        pickle_path.write_bytes(pickle.dumps(pipeline))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=AppetenceModel(),
            artifacts={PIPELINE_ARTIFACT: str(pickle_path)},
            code_paths=[str(code)],
            signature=schema.signature(),
            input_example=schema.as_signature_types(customers.loc[:2, list(schema.INPUT_COLUMNS)]),
            pip_requirements=_serving_requirements(),
            registered_model_name=REGISTERED_MODEL if options.register else None,
        )
    registered = info.registered_model_version
    result = TrainResult(run.info.run_id, info.model_uri,
                         None if registered is None else str(registered), scores)
    if options.export_dir is not None:
        export_model(info.model_uri, options.export_dir, result.version)
    return result


def promote(version_number: str, export_dir: Path | None = None) -> str:
    """Point the ``champion`` alias at a registered version; optionally export it."""
    _use_tracking_store()
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, version_number)
    uri = f"models:/{REGISTERED_MODEL}@{CHAMPION_ALIAS}"
    if export_dir is not None:
        export_model(uri, export_dir, version_number)
    return uri
