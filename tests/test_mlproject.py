"""The data scientists' path: `mlflow run . -e train` through the MLproject file."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from conftest import CUSTOMERS_CSV, REPO, engine_with_indicators

from chaos_pyfunc.lifecycle.registry import REGISTERED_MODEL

pytestmark = [pytest.mark.data, pytest.mark.training]  # trains on the labelled customers

VENV_BIN = Path(sys.executable).parent


def test_mlflow_run_trains_logs_and_registers(tmp_path: Path) -> None:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    indicators = f"sqlite:///{tmp_path / 'chaos.db'}"
    engine_with_indicators(indicators).dispose()
    # Artifacts under tmp_path, not in a ./mlruns of the repository.
    mlflow.set_tracking_uri(tracking)
    mlflow.create_experiment(REGISTERED_MODEL, artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_tracking_uri(None)
    # No MLflow setting inherited from earlier tests in this process: mlflow.set_experiment sets
    # MLFLOW_EXPERIMENT_ID, which `mlflow run` given --experiment-name refuses to choose from.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env = {**inherited, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": tracking, "CHAOS_DATABASE_URL": indicators}
    completed = subprocess.run(
        [str(VENV_BIN / "mlflow"), "run", str(REPO), "-e", "train", "--env-manager", "local",
         "--experiment-name", REGISTERED_MODEL, "-P", f"customers={CUSTOMERS_CSV}",
         "-P", "max_iter=60"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    # The registry named too: one an earlier test made current in this process would be read instead.
    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    (run,) = client.search_runs([client.get_experiment_by_name(REGISTERED_MODEL).experiment_id])
    assert run.info.status == "FINISHED"
    # 60 iterations at the recipe's learning rate, a tenth of its fit (0.7999 on a clean clone):
    # the floor says it learned (chance is 0.5); test_train.py holds the recipe's own figures.
    assert run.data.metrics["random_roc_auc"] >= 0.78
    assert run.data.params["max_iter"] == "60"
    assert [str(v.version) for v in client.search_model_versions(f"name='{REGISTERED_MODEL}'")] == ["1"]
