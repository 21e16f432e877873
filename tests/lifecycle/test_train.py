"""The whole training job on the real customers: metrics, MLflow logging, registry, export."""

import mlflow
import pytest
import yaml
from conftest import CUSTOMERS_CSV, engine_with_indicators, request_rows

from chaos_pyfunc.contract import schema
from chaos_pyfunc.lifecycle import fingerprint
from chaos_pyfunc.lifecycle.registry import REGISTERED_MODEL
from chaos_pyfunc.lifecycle.train import TrainOptions, train
from chaos_pyfunc.scoring import package_version
from chaos_pyfunc.scoring.package_version import REGISTERED_MODEL_META
from chaos_pyfunc.scoring.pipeline import Hyperparameters

pytestmark = [pytest.mark.data, pytest.mark.training]  # trains on the labelled customers

# Fewer boosting rounds than the served model: the job's logic, not its figures, is tested here
# (test_model.py judges the committed model).
QUICK = Hyperparameters(max_iter=60, learning_rate=0.1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One training run, in its own working directory and tracking store."""
    work = tmp_path_factory.mktemp("train")
    patch = pytest.MonkeyPatch()
    patch.chdir(work)
    patch.delenv("CHAOS_DATABASE_URL", raising=False)
    patch.delenv("CHAOS_CONFIG", raising=False)
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = train(TrainOptions(customers=str(CUSTOMERS_CSV), export_dir=work / "exported"), QUICK)
    yield work, result
    mlflow.set_tracking_uri(None)
    patch.undo()


def test_metrics_cover_the_backtest_month_by_month_and_the_random_holdout(trained) -> None:
    _, result = trained
    figures = ("roc_auc", "pr_auc", "brier", "lift_top_decile")
    pooled = {f"{s}_{m}" for s in ("backtest", "random") for m in figures}
    assert pooled <= set(result.metrics)
    months = {name.removesuffix("_brier") for name in result.metrics if name.endswith("_brier")}
    months -= {"backtest", "random"}
    assert len(months) == 6  # one model per month, the last six months with contacts
    assert max(months) == "backtest_2010_11"
    assert result.metrics["random_roc_auc"] >= 0.80
    assert result.metrics["backtest_roc_auc"] >= 0.65
    # The drift: the last months are scored much worse than a random share of the contacts.
    assert result.metrics["backtest_brier"] > result.metrics["random_brier"]


def test_the_run_is_logged_with_plots_fingerprints_and_registered(trained) -> None:
    work, result = trained
    assert (work / "var" / "mlflow.db").exists()
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.metrics["random_roc_auc"] == result.metrics["random_roc_auc"]
    assert run.data.params["customers"] == str(CUSTOMERS_CSV)
    assert Hyperparameters.from_params(run.data.params) == QUICK
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {"plots/roc.png", "plots/calibration.png"}
    recorded = fingerprint.from_tags(run.data.tags)
    assert recorded is not None
    assert recorded["customers"].rows == 38429 and recorded["customers"].latest == "2010-11-17"
    assert recorded["socio_eco"].rows > 0
    assert run.data.tags["package_version"] == package_version.installed_version()
    assert result.version == "1"
    assert client.get_model_version(REGISTERED_MODEL, "1").status == "READY"


def test_the_version_requires_the_package_and_carries_no_code(trained) -> None:
    work, _ = trained
    exported = work / "exported"
    assert not (exported / "code").exists()
    flavor = mlflow.models.Model.load(str(exported)).flavors["python_function"]
    assert flavor.get("code") is None
    wanted = package_version.required_by(exported)
    assert wanted is not None and str(wanted) == package_version.requirement()
    assert wanted.specifier.contains(package_version.installed_version())


def test_the_export_serves_and_carries_no_training_settings(trained, customers, monkeypatch) -> None:
    work, _ = trained
    exported = work / "exported"
    assert (exported / "MLmodel").exists()
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
    # The trees compiled at training ship as the forest artifact, and serve.
    assert (exported / "artifacts" / "forest.so").is_file()
    assert model.unwrap_python_model().scorer.compiled.forest is not None
