"""Versions registered before the package's parts became folders still load and score.

Their pickles name the modules as they were: ``python_model.pkl`` ``chaos_pyfunc.model`` and
``artifacts/pipeline.pkl`` ``chaos_pyfunc.pipeline``; the committed model/ is such a version,
untouched since. chaos_pyfunc.MOVED keeps those names importable as the new modules themselves,
and what is pickled now names the new ones."""

from __future__ import annotations

import importlib
import pickle
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, engine_with_indicators

import chaos_pyfunc
from chaos_pyfunc.contract import schema
from chaos_pyfunc.scoring import model, pipeline

MODEL_DIR = REPO / "model"
NAME = "chaos-appetence-before-the-move"


def pickled_modules(path: Path) -> set[str]:
    """The chaos_pyfunc modules a pickle names."""
    return {name.decode() for name in re.findall(rb"chaos_pyfunc[\w.]*", path.read_bytes())}


def test_the_committed_model_names_the_modules_before_the_move() -> None:
    """model/ is the proof: pickled before the move, never rewritten."""
    assert pickled_modules(MODEL_DIR / "python_model.pkl") == {"chaos_pyfunc.model"}
    assert pickled_modules(MODEL_DIR / "artifacts" / "pipeline.pkl") == {"chaos_pyfunc.pipeline"}
    assert set(chaos_pyfunc.MOVED) == {"chaos_pyfunc.model", "chaos_pyfunc.pipeline"}


@pytest.mark.parametrize(("old", "new"), sorted(chaos_pyfunc.MOVED.items()))
def test_an_old_name_is_the_new_module_itself(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new) is sys.modules[old]
    assert sys.modules[new].__name__ == sys.modules[new].__spec__.name == new  # untouched by the alias


def test_what_is_pickled_now_names_the_new_modules() -> None:
    assert model.AppetenceModel.__module__ == "chaos_pyfunc.scoring.model"
    assert pipeline.day_of_month.__module__ == "chaos_pyfunc.scoring.pipeline"
    fitted = pickle.loads((MODEL_DIR / "artifacts" / "pipeline.pkl").read_bytes())  # noqa: S301 - ours
    for data in (cloudpickle.dumps(model.AppetenceModel()), pickle.dumps(fitted)):
        names = {name.decode() for name in re.findall(rb"chaos_pyfunc[\w.]*", data)}
        assert names and all(name.startswith("chaos_pyfunc.scoring.") for name in names), names


@pytest.fixture
def rows(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[pd.DataFrame]:
    """The made-up example rows (no customer's: the test runs without the shared data), and the
    indicators the models read (configured from the environment)."""
    engine = engine_with_indicators(pg_url)
    monkeypatch.setenv("CHAOS_DATABASE_URL", pg_url)
    yield schema.as_signature_types(schema.example())
    engine.dispose()


def test_a_version_registered_before_the_move_loads_and_scores_the_same(
        rows: pd.DataFrame, tmp_path: Path) -> None:
    """The committed model/'s files, as they are, registered as a version of a registry (a SQLite
    tracking store, its artifacts in tmp_path), loaded by models:/ URI: the same scores."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    experiment = client.create_experiment("before-the-move", (tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(MODEL_DIR), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(NAME)
    source = f"{run.info.artifact_uri}/model"
    version = client.create_model_version(NAME, source, run_id=run.info.run_id).version

    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    try:
        downloaded = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version}",
                                                               dst_path=str(tmp_path / "download")))
        registered = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    # What the registry holds is what was registered before the move: the old names.
    assert pickled_modules(downloaded / "python_model.pkl") == {"chaos_pyfunc.model"}
    assert (downloaded / "artifacts" / "pipeline.pkl").read_bytes() == \
        (MODEL_DIR / "artifacts" / "pipeline.pkl").read_bytes()
    assert type(registered.unwrap_python_model()) is model.AppetenceModel

    committed = mlflow.pyfunc.load_model(str(MODEL_DIR))
    scores = registered.predict(rows)["appetence"].to_numpy()
    assert len(scores) == len(rows) and ((scores > 0) & (scores < 1)).all()
    np.testing.assert_array_equal(scores, committed.predict(rows)["appetence"].to_numpy())
    assert registered.predict(rows, params={"reasons": 3})["reasons"].map(len).eq(3).all()
