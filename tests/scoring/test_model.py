"""The committed model/, loaded in process the way `mlflow models serve` loads it."""

import json
import logging
import pickle
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from conftest import CUSTOMERS_CSV, REPO, engine_with_indicators, request_rows
from mlflow.exceptions import MlflowException
from sqlalchemy import Engine

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import make_engine
from chaos_pyfunc.lifecycle import behaviour
from chaos_pyfunc.scoring import package_version
from chaos_pyfunc.scoring.model import Scorer
from chaos_pyfunc.scoring.socio_eco import IndicatorSource, enrich

MODEL_DIR = REPO / "model"


@pytest.fixture
def served(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[mlflow.pyfunc.PyFuncModel, Engine]]:
    """The committed model, configured at load time from the environment, on PostgreSQL."""
    engine = engine_with_indicators(pg_url)
    monkeypatch.setenv("CHAOS_DATABASE_URL", pg_url)
    monkeypatch.setenv("CHAOS_CACHE_TTL_SECONDS", "0")
    yield mlflow.pyfunc.load_model(str(MODEL_DIR)), engine
    engine.dispose()


def predict(model: mlflow.pyfunc.PyFuncModel, rows: pd.DataFrame) -> np.ndarray:
    out = model.predict(schema.as_signature_types(rows))
    assert list(out.columns) == ["appetence"]
    return out["appetence"].to_numpy()


def test_scores_are_probabilities_in_input_order(served, customers: pd.DataFrame) -> None:
    model, _ = served
    rows = request_rows(customers, 300)
    scores = predict(model, rows)
    assert len(scores) == 300
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.allclose(predict(model, rows.iloc[::-1]), scores[::-1])


def test_scores_equal_the_pipeline_on_the_enriched_rows(served, customers: pd.DataFrame) -> None:
    model, engine = served
    rows = request_rows(customers, 500, seed=1)
    pipeline = pickle.loads((MODEL_DIR / "artifacts" / "pipeline.pkl").read_bytes())  # noqa: S301
    expected = pipeline.predict_proba(enrich(rows, IndicatorSource(engine, 0), 3))[:, 1]
    assert np.abs(predict(model, rows) - expected).max() <= 1e-12


def test_one_database_read_per_request(served, customers: pd.DataFrame) -> None:
    model, _ = served
    source = model.unwrap_python_model().scorer.source
    before = source.round_trips
    predict(model, request_rows(customers, 1000, seed=2))
    assert source.round_trips == before + 1


def test_the_indicators_change_the_score(served, customers: pd.DataFrame) -> None:
    """Same customer, different month: the socio-economic context is really used."""
    model, _ = served
    rows = request_rows(customers, 50, seed=3)
    may_2008 = predict(model, rows.assign(date="2008-05-15"))
    may_2010 = predict(model, rows.assign(date="2010-05-15"))
    assert np.abs(may_2008 - may_2010).mean() > 0.05


def test_the_committed_model_passes_the_behavioural_checks(served, customers: pd.DataFrame) -> None:
    """The promotion gate's checks (behaviour.py), through the pyfunc as it serves."""
    model, _ = served
    rows = request_rows(customers, 300, seed=4)
    assert behaviour.failures(lambda frame: predict(model, frame), rows) == []


def test_a_model_that_ignores_a_past_success_fails_the_direction_check(customers: pd.DataFrame) -> None:
    """The check can fail: a score blind to the last campaign's outcome."""
    rows = request_rows(customers, 50, seed=5)
    blind = behaviour.past_success_raises(lambda frame: np.full(len(frame), 0.3), rows)
    assert blind is not None and "past success" in blind
    assert behaviour.post_call_ignored(lambda frame: frame["duration_contact"].to_numpy() / 5000, rows)


@pytest.mark.data
def test_the_data_scientists_path_takes_pandas_own_dtypes(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`load_model(uri).predict(pd.read_csv("customers.csv"))`, as a data scientist writes it:
    int64 columns, the label and duration_contact still in, no conversion first."""
    engine_with_indicators(pg_url).dispose()
    monkeypatch.setenv("CHAOS_DATABASE_URL", pg_url)
    frame = pd.read_csv(CUSTOMERS_CSV, nrows=2000)
    assert frame["age"].dtype == "int64"
    scores = mlflow.pyfunc.load_model(str(MODEL_DIR)).predict(frame)["appetence"]
    assert len(scores) == 2000 and scores.between(0, 1).all()


def test_bad_rows_are_a_400_naming_the_field(served, customers: pd.DataFrame) -> None:
    model, _ = served
    rows = request_rows(customers, 3).assign(job_type=["admin.", "pilot", "admin."])
    with pytest.raises(MlflowException, match=r"job_type: must be one of .* at row 1") as caught:
        predict(model, rows)
    assert caught.value.get_http_status_code() == 400


def test_rows_without_indicators_are_a_400_naming_the_rows(served, customers: pd.DataFrame) -> None:
    model, _ = served
    rows = request_rows(customers, 2).assign(date=["2010-11-02", "2012-01-10"])
    with pytest.raises(MlflowException, match=r"row 1; indicators cover") as caught:
        predict(model, rows)
    assert caught.value.get_http_status_code() == 400


def test_a_refusal_carries_its_message_alone_for_the_gateway(served, customers: pd.DataFrame) -> None:
    """MLflow's own scoring code answers a refused request with a message that quotes the rows;
    the safe_message beside it names the field alone (what the gateway answers with)."""
    from mlflow.pyfunc import scoring_server

    model, _ = served
    rows = request_rows(customers, 3).assign(result_last_campaign=["success", "pilot", "success"])
    body = json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)})
    with pytest.raises(MlflowException) as caught:  # MLflow's app turns it into the answer's JSON
        scoring_server.invocations(body, "application/json", model, model.metadata.get_input_schema())
    assert caught.value.get_http_status_code() == 400
    error = json.loads(caught.value.serialize_as_json())
    assert "pilot" in error["message"]  # MLflow quotes the input: why safe_message exists
    assert error["safe_message"].startswith("result_last_campaign: must be one of")
    assert "pilot" not in error["safe_message"]


class BrokenPipeline:
    """A pipeline with a bug whose message quotes an input value."""

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        raise ValueError(f"cannot handle {rows['job_type'].iat[0]!r}")


def test_a_bug_is_a_500_whose_answer_and_log_hold_no_input(
    indicators_engine, customers: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    from chaos_pyfunc.scoring.model import AppetenceModel

    model = AppetenceModel()
    model.scorer = Scorer(BrokenPipeline(), IndicatorSource(indicators_engine, 0), Settings())
    rows = request_rows(customers, 1).assign(job_type="student")
    with caplog.at_level(logging.ERROR), pytest.raises(MlflowException) as caught:
        model.predict(None, rows)  # type: ignore[arg-type]
    assert caught.value.get_http_status_code() == 500
    assert "student" not in caught.value.serialize_as_json()
    assert "ValueError" in caplog.text and "predict_proba" in caplog.text
    assert "student" not in caplog.text


def test_zero_rows_give_zero_scores(served) -> None:
    model, _ = served
    empty = pd.DataFrame({c: pd.Series(dtype="int64" if c in schema.INTEGERS else "str")
                          for c in schema.INPUT_COLUMNS})
    assert len(model.predict(empty)) == 0


def test_an_unreachable_database_is_a_503(customers: pd.DataFrame) -> None:
    pipeline = pickle.loads((MODEL_DIR / "artifacts" / "pipeline.pkl").read_bytes())  # noqa: S301
    settings = Settings(database_url="postgresql+psycopg2://root@127.0.0.1:1/none", connect_timeout_seconds=1)
    from chaos_pyfunc.scoring.model import AppetenceModel

    model = AppetenceModel()
    model.scorer = Scorer(pipeline, IndicatorSource(make_engine(settings), 0, wait_seconds=5), settings)
    with pytest.raises(MlflowException, match="unavailable") as caught:
        model.predict(None, request_rows(customers, 1))  # type: ignore[arg-type]
    assert caught.value.get_http_status_code() == 503


def test_the_committed_model_requires_this_package_and_carries_no_code() -> None:
    """One copy of the code: the model names the package, the image installs it."""
    assert not (MODEL_DIR / "code").exists()
    wanted = package_version.required_by(MODEL_DIR)
    assert wanted is not None, "re-export the model (make train): it does not require chaos-pyfunc"
    assert wanted.specifier.contains(package_version.installed_version()), (
        f"model/ requires {wanted}, the package is {package_version.installed_version()}: make train")


def test_a_model_for_another_package_version_is_refused_naming_both(tmp_path: Path) -> None:
    other = tmp_path / "model"
    shutil.copytree(MODEL_DIR, other)
    requirements = other / "requirements.txt"
    requirements.write_text(re.sub(r"chaos-pyfunc\S*", "chaos-pyfunc~=0.1.0", requirements.read_text()))
    with pytest.raises(package_version.IncompatibleModel) as refused:
        mlflow.pyfunc.load_model(str(other))
    assert "chaos-pyfunc~=0.1.0" in str(refused.value)
    assert package_version.installed_version() in str(refused.value)


def test_the_committed_model_declares_its_contract() -> None:
    info = mlflow.models.Model.load(str(MODEL_DIR))  # the file itself: no tracking store
    assert info.signature.inputs.input_names() == list(schema.INPUT_COLUMNS)
    assert info.signature.outputs.input_names() == ["appetence"]
    assert Path(MODEL_DIR / "serving_input_example.json").exists()
