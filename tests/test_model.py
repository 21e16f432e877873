"""The committed model/, loaded in process the way `mlflow models serve` loads it."""

import filecmp
import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, engine_with_indicators, request_rows
from mlflow.exceptions import MlflowException
from sqlalchemy import Engine

from chaos_pyfunc import schema
from chaos_pyfunc.config import Settings
from chaos_pyfunc.db import make_engine
from chaos_pyfunc.model import Scorer
from chaos_pyfunc.socio_eco import IndicatorSource, enrich
from chaos_pyfunc.train import SERVING_FILES

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


def test_a_past_success_does_not_lower_the_appetence(served, customers: pd.DataFrame) -> None:
    """Direction test: a customer who subscribed in the last campaign is a better prospect."""
    model, _ = served
    rows = request_rows(customers, 300, seed=4).assign(nb_contact_last_campaign=2, nb_day_last_contact=180)
    success = predict(model, rows.assign(result_last_campaign="success"))
    failure = predict(model, rows.assign(result_last_campaign="failure"))
    assert (success >= failure).mean() >= 0.95
    assert success.mean() > failure.mean() + 0.05


def test_post_call_columns_do_not_change_the_score(served, customers: pd.DataFrame) -> None:
    """Invariance: duration_contact is known only after the call and must be ignored."""
    model, _ = served
    rows = request_rows(customers, 100, seed=5)
    short = predict(model, rows.assign(duration_contact=5.0))
    long = predict(model, rows.assign(duration_contact=3000.0))
    assert np.array_equal(short, long)


def test_bad_rows_are_a_400_naming_the_field(served, customers: pd.DataFrame) -> None:
    model, _ = served
    rows = request_rows(customers, 3).assign(job_type=["admin.", "pilot", "admin."])
    with pytest.raises(MlflowException, match=r"job_type: must be one of .* at row 1") as caught:
        predict(model, rows)
    assert caught.value.get_http_status_code() == 400


def test_rows_without_indicators_are_a_400_naming_the_rows(served, customers: pd.DataFrame) -> None:
    model, _ = served
    rows = request_rows(customers, 2).assign(date=["2010-11-02", "2012-01-10"])
    with pytest.raises(MlflowException, match=r"row\(s\) 1; indicators cover") as caught:
        predict(model, rows)
    assert caught.value.get_http_status_code() == 400


def test_a_refusal_carries_its_message_alone_for_the_gateway(served, customers: pd.DataFrame) -> None:
    """MLflow's server prefixes the message with the rows; safe_message stays as it was."""
    model, _ = served
    rows = request_rows(customers, 3).assign(job_type=["admin.", "pilot", "admin."])
    with pytest.raises(MlflowException) as caught:
        predict(model, rows)
    caught.value.message = f"Failed to predict data '{rows}'. \nError: {caught.value.message}"
    answer = json.loads(caught.value.serialize_as_json())
    assert answer["safe_message"].startswith("job_type: must be one of")
    assert "pilot" not in answer["safe_message"]


class BrokenPipeline:
    """A pipeline with a bug whose message quotes an input value."""

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        raise ValueError(f"cannot handle {rows['job_type'].iat[0]!r}")


def test_a_bug_is_a_500_whose_answer_and_log_hold_no_input(
    indicators_engine, customers: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    from chaos_pyfunc.model import AppetenceModel

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
    empty = pd.DataFrame({c: pd.Series(dtype="float64" if c in schema.INTEGERS else "str")
                          for c in schema.INPUT_COLUMNS})
    assert len(model.predict(empty)) == 0


def test_an_unreachable_database_is_a_503(customers: pd.DataFrame) -> None:
    pipeline = pickle.loads((MODEL_DIR / "artifacts" / "pipeline.pkl").read_bytes())  # noqa: S301
    settings = Settings(database_url="postgresql+psycopg2://root@127.0.0.1:1/none", connect_timeout_seconds=1)
    from chaos_pyfunc.model import AppetenceModel

    model = AppetenceModel()
    model.scorer = Scorer(pipeline, IndicatorSource(make_engine(settings), 0, wait_seconds=5), settings)
    with pytest.raises(MlflowException, match="unavailable") as caught:
        model.predict(None, request_rows(customers, 1))  # type: ignore[arg-type]
    assert caught.value.get_http_status_code() == 503


def test_the_committed_model_carries_this_package() -> None:
    """model/code is what the server runs: it must be the code in this repository."""
    package = REPO / "chaos_pyfunc"
    shipped = MODEL_DIR / "code" / "chaos_pyfunc"
    names = sorted(SERVING_FILES)
    assert sorted(p.name for p in shipped.iterdir()) == names
    _, mismatch, errors = filecmp.cmpfiles(package, shipped, names, shallow=False)
    assert not mismatch and not errors, f"re-export the model (make train): {mismatch + errors} differ"


def test_the_committed_model_declares_its_contract() -> None:
    info = mlflow.models.Model.load(str(MODEL_DIR))  # the file itself: no tracking store
    assert info.signature.inputs.input_names() == list(schema.INPUT_COLUMNS)
    assert info.signature.outputs.input_names() == ["appetence"]
    assert Path(MODEL_DIR / "serving_input_example.json").exists()
