"""The whole training job on the real customers: metrics, MLflow logging, registry, export."""


import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import CUSTOMERS_CSV, engine_with_indicators, request_rows

from chaos_pyfunc import schema
from chaos_pyfunc.train import (
    REGISTERED_MODEL,
    REGISTERED_MODEL_META,
    TrainOptions,
    promote,
    time_split,
    train,
)

pytestmark = pytest.mark.data  # trains on the labelled customers


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One full training run, in its own working directory and tracking store."""
    work = tmp_path_factory.mktemp("train")
    patch = pytest.MonkeyPatch()
    patch.chdir(work)
    patch.delenv("CHAOS_DATABASE_URL", raising=False)
    patch.delenv("CHAOS_CONFIG", raising=False)
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = train(TrainOptions(customers=str(CUSTOMERS_CSV), export_dir=work / "exported"))
    yield work, result
    mlflow.set_tracking_uri(None)
    patch.undo()


def test_metrics_meet_the_bar(trained) -> None:
    _, result = trained
    assert set(result.metrics) == {f"{s}_{m}" for s in ("time", "random")
                                   for m in ("roc_auc", "pr_auc", "brier", "lift_top_decile")}
    assert result.metrics["random_roc_auc"] >= 0.80
    assert result.metrics["time_roc_auc"] >= 0.65
    assert result.metrics["random_lift_top_decile"] > 3


def test_the_run_is_logged_with_plots_and_registered(trained) -> None:
    work, result = trained
    assert (work / "var" / "mlflow.db").exists()
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.metrics["random_roc_auc"] == result.metrics["random_roc_auc"]
    assert run.data.params["customers"] == str(CUSTOMERS_CSV)
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {"plots/roc.png", "plots/calibration.png"}
    assert result.version == "1"
    assert client.get_model_version(REGISTERED_MODEL, "1").status == "READY"


def test_the_export_serves_and_carries_no_training_settings(trained, customers, monkeypatch) -> None:
    work, _ = trained
    exported = work / "exported"
    assert (exported / "MLmodel").exists()
    assert (exported / "code" / "chaos_pyfunc" / "model.py").exists()
    assert not list(exported.rglob("__pycache__"))
    assert "sqlite" not in (exported / "MLmodel").read_text()
    assert exported.stat().st_mode & 0o777 == 0o755  # readable by the image's unprivileged user
    meta = yaml.safe_load((exported / REGISTERED_MODEL_META).read_text())
    assert meta == {"model_name": REGISTERED_MODEL, "model_version": "1"}
    # Served elsewhere: settings come from that machine's environment.
    other = work / "elsewhere.db"
    engine_with_indicators(f"sqlite:///{other}").dispose()
    monkeypatch.setenv("CHAOS_DATABASE_URL", f"sqlite:///{other}")
    model = mlflow.pyfunc.load_model(str(exported))
    scores = model.predict(schema.as_signature_types(request_rows(customers, 20)))["appetence"]
    assert scores.between(0, 1).all()


def test_promote_points_the_champion_alias_and_exports(trained) -> None:
    work, _ = trained
    uri = promote("1", work / "champion")
    assert uri == f"models:/{REGISTERED_MODEL}@champion"
    assert str(mlflow.MlflowClient().get_model_version_by_alias(REGISTERED_MODEL, "champion").version) == "1"
    assert (work / "champion" / "artifacts" / "pipeline.pkl").exists()
    assert yaml.safe_load((work / "champion" / REGISTERED_MODEL_META).read_text())["model_version"] == "1"


def test_time_split_holds_out_the_last_months() -> None:
    dates = pd.Series(pd.to_datetime(["2010-01-05", "2010-03-01", "2010-02-10", "2010-03-30", "2009-12-01"]))
    assert time_split(dates, 2).tolist() == [False, True, True, True, False]
    assert np.count_nonzero(time_split(dates, 10)) == 5
