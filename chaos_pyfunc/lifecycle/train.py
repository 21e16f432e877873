"""The training job, from the labelled contacts to a registered version of the model.

Contacts → the serving path's validation and as-of join → evaluate the recipe (time-ordered
backtest, random holdout) → fit on every contact → log to MLflow → register a version of the
environment's model (``chaos-appetence`` by default) → optionally export it to a directory
(``model/``).

The version carries no code: it requires this package (package_version.py), and its run
records the fingerprint of the tables it learned from (fingerprint.py), never a customer row:
its input example is made up (schema.EXAMPLE), and the drift report rereads the training
contacts from the environment's own database.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
import yaml
from sklearn.pipeline import Pipeline

from chaos_pyfunc.config import load_settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.lifecycle import dataset, evaluate, fingerprint, registry
from chaos_pyfunc.scoring import package_version
from chaos_pyfunc.scoring.compiled import FOREST_ARTIFACT, build_forest
from chaos_pyfunc.scoring.model import PIPELINE_ARTIFACT, AppetenceModel
from chaos_pyfunc.scoring.pipeline import Hyperparameters, fit

log = logging.getLogger(__name__)

# What the served model needs besides this package; pinned to the versions it was trained with.
SERVING_PACKAGES = ("mlflow", "scikit-learn", "pandas", "numpy", "sqlalchemy", "psycopg2-binary", "pyyaml")


@dataclass(frozen=True)
class TrainOptions:
    customers: str | None = None  # a CSV path; None reads the `customers` table
    backtest_months: int = 6  # the time-ordered evaluation: the last months, one at a time
    test_size: float = 0.2  # the random holdout's share
    seed: int = 0
    export_dir: Path | None = None
    register: bool = True
    registered_model: str = registry.REGISTERED_MODEL  # the environment's (Settings.registered_model)
    # The recipe's backtest and random holdout (seven fits): for a person comparing recipes. The
    # nightly retrain has the gate's out-of-time figures instead, and logs those.
    evaluate: bool = True
    metrics: dict[str, float] | None = None  # logged as they are (the gate's, for a retrain)


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    version: str | None
    metrics: dict[str, float]


def serving_requirements() -> list[str]:
    return [package_version.requirement(), *(f"{name}=={version(name)}" for name in SERVING_PACKAGES)]


def export_model(model_uri: str, export_dir: Path, version_number: str | None = None,
                 name: str = registry.REGISTERED_MODEL) -> str | None:
    """Replace ``export_dir`` with the model's files, ready for `chaos serve --model DIR`; returns
    the registry version they are.

    ``registered_model_meta`` records that version (the image build labels the image with it,
    the server reports it): MLflow writes it when it downloads a models:/ URI, this writes it
    for a run's model, which is ``version_number`` once registered.
    """
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=scratch))
        shutil.rmtree(export_dir, ignore_errors=True)
        shutil.copytree(local, export_dir)
    # copytree keeps the scratch directory's 0700: the image's unprivileged user must read it.
    export_dir.chmod(0o755)
    meta_path = export_dir / package_version.REGISTERED_MODEL_META
    if version_number is not None or not meta_path.exists():
        meta = {"model_name": name if version_number else None,
                "model_version": version_number}
        meta_path.write_text(yaml.safe_dump(meta))
    version_number = yaml.safe_load(meta_path.read_text()).get("model_version")
    log.info("exported %s (version %s) to %s", model_uri, version_number, export_dir)
    return None if version_number is None else str(version_number)


def train(options: TrainOptions, hyper: Hyperparameters | None = None,
          data: dataset.TrainingData | None = None, fitted: Pipeline | None = None) -> TrainResult:
    """Evaluate (unless told not to), fit on every contact (or take ``fitted``, that very fit
    already made), log, register, export."""
    hyper = hyper or Hyperparameters()
    data = data or dataset.load(options.customers, load_settings())
    evaluation = (evaluate.evaluate_recipe(data.features, data.labels, hyper, options.backtest_months,
                                           options.test_size, options.seed)
                  if options.evaluate else evaluate.Evaluation({}, {}))
    # The served model learns from every contact; the evaluation says how well the recipe does.
    pipeline = fitted if fitted is not None else fit(hyper, data.features, data.labels)

    registry.use_tracking_store(options.registered_model)
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as scratch:
        mlflow.set_tags({**fingerprint.as_tags(data.fingerprints),
                         "package_version": package_version.installed_version()})
        mlflow.log_params({**hyper.as_params(), "backtest_months": options.backtest_months,
                           "test_size": options.test_size, "seed": options.seed,
                           "rows": len(data.labels), "customers": data.source})
        mlflow.log_metrics({**evaluation.metrics, **(options.metrics or {})})
        if evaluation.curves:
            mlflow.log_figure(evaluate.roc_figure(evaluation.curves), "plots/roc.png")
            mlflow.log_figure(evaluate.calibration_figure(evaluation.curves), "plots/calibration.png")
        pickle_path = Path(scratch) / "pipeline.pkl"
        pickle_path.write_bytes(pickle.dumps(pipeline))
        artifacts = {PIPELINE_ARTIFACT: str(pickle_path)}
        if (forest := build_forest(pipeline[-1], Path(scratch) / "forest.so")) is not None:
            artifacts[FOREST_ARTIFACT] = str(forest)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=AppetenceModel(),
            artifacts=artifacts,
            signature=schema.signature(),
            input_example=schema.as_signature_types(schema.example()),  # made up: no customer's row
            pip_requirements=serving_requirements(),
            registered_model_name=options.registered_model if options.register else None,
        )
    registered = info.registered_model_version
    result = TrainResult(run.info.run_id, info.model_uri,
                         None if registered is None else str(registered), evaluation.metrics)
    if options.export_dir is not None:
        export_model(info.model_uri, options.export_dir, result.version, options.registered_model)
    return result
