"""The drift report on the real customers: traffic drawn from them shows no drift; traffic whose
ages or months (so euribor_3m) are shifted is flagged, by `chaos drift` reading the real
prediction log on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import CUSTOMERS_CSV, REPO, engine_with_indicators, request_rows

from chaos_pyfunc.cli import main
from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import load_csv
from chaos_pyfunc.lifecycle import drift
from chaos_pyfunc.predlog.prediction_log import REQUEST_ID, PredictionLog
from chaos_pyfunc.scoring.socio_eco import IndicatorSource

pytestmark = pytest.mark.data

MODEL_DIR = REPO / "model"
SHARE = Settings().drift_share_threshold


@pytest.fixture(scope="module")
def reference(customers: pd.DataFrame,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, object]:
    url = f"sqlite:///{tmp_path_factory.mktemp('drift') / 'chaos.db'}"
    engine = engine_with_indicators(url)
    source = IndicatorSource(engine, ttl_seconds=0)
    return drift.joined(customers, source, Settings(database_url=url)), (source, url)


def current(rows: pd.DataFrame, reference) -> pd.DataFrame:
    _, (source, url) = reference
    return drift.joined(rows, source, Settings(database_url=url))


def drifted(reference, rows: pd.DataFrame) -> set[str]:
    features, _ = drift.compare(reference[0], current(rows, reference), SHARE)
    return {f.feature for f in features if f.drifted}


def test_traffic_drawn_from_the_training_customers_shows_no_drift(reference, customers) -> None:
    assert drifted(reference, request_rows(customers, 3000, seed=1)) == set()


def test_older_customers_are_flagged_on_age_alone(reference, customers) -> None:
    rows = request_rows(customers, 3000, seed=2)
    assert drifted(reference, rows.assign(age=np.minimum(rows["age"] + 15, 130))) == {"age"}


def test_contacts_moved_to_other_months_are_flagged_on_the_indicators(reference, customers) -> None:
    rows = request_rows(customers, 3000, seed=3).assign(date="2008-06-15")  # euribor at its 2008 peak
    assert {"euribor_3m", "employment_variation_rate"} <= drifted(reference, rows)


def batch_of(rows: pd.DataFrame) -> schema.Batch:
    """The rows as the scorer hands them to the prediction log."""
    batch = schema.fast_batch(schema.as_signature_types(rows))
    assert batch is not None
    return batch


def test_the_command_reads_the_prediction_log_and_exits_1_on_drift(pg_url: str, customers, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_with_indicators(pg_url)
    recorder = PredictionLog(Settings(database_url=pg_url, prediction_log_queue_rows=100_000), "1",
                             flush_seconds=3600)
    pipeline = drift.served_pipeline(str(MODEL_DIR))
    source = IndicatorSource(engine, ttl_seconds=0)

    def scored(frame: pd.DataFrame) -> np.ndarray:  # what the server would have answered
        return pipeline.predict_proba(drift.joined(frame, source, Settings(database_url=pg_url)))[:, 1]

    token = REQUEST_ID.set("drift-test")
    rows = request_rows(customers, 2000, seed=4)
    recorder.record(batch_of(rows), scored(rows))
    REQUEST_ID.reset(token)
    assert recorder.flush()
    monkeypatch.setenv("CHAOS_DATABASE_URL", pg_url)
    monkeypatch.delenv("CHAOS_CONFIG", raising=False)
    assert main(["drift", "--since", "7d", "--output", str(tmp_path / "same"),
                 "--reference", str(CUSTOMERS_CSV)]) == 0
    summary = json.loads((tmp_path / "same" / "drift.json").read_text())
    assert summary["rows"] == 2000 and summary["drifted"] == [] and not summary["alarm"]
    assert (summary["model_version"], summary["reference"]) == ("1", str(CUSTOMERS_CSV))
    assert "appetence" in {f["feature"] for f in summary["features"]}  # the scores are compared too
    page = (tmp_path / "same" / "drift.html").read_text()
    assert page.count('"data_drift": "Not Detected"') == len(summary["features"])  # Evidently's own verdicts

    shifted = rows.assign(date="2008-06-15", age=np.minimum(rows["age"] + 15, 130),
                          contact="unknown", result_last_campaign="unknown")
    recorder.record(batch_of(shifted), scored(shifted))
    recorder.record(batch_of(shifted), scored(shifted))
    assert recorder.flush()
    assert main(["drift", "--since", "7d", "--output", str(tmp_path / "shifted"),
                 "--reference", str(CUSTOMERS_CSV)]) == 1
    summary = json.loads((tmp_path / "shifted" / "drift.json").read_text())
    assert {"age", "euribor_3m"} <= set(summary["drifted"]) and summary["alarm"]
    page = (tmp_path / "shifted" / "drift.html").read_text()
    assert page.count('"data_drift": "Detected"') == len(summary["drifted"])
    recorder.close()


def test_a_bad_period_an_empty_log_or_no_reference_is_a_clear_error(pg_url: str, tmp_path: Path, capsys,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    engine_with_indicators(pg_url).dispose()
    monkeypatch.setenv("CHAOS_DATABASE_URL", pg_url)
    assert main(["drift", "--since", "a week", "--output", str(tmp_path)]) == 2
    assert "--since must read like 7d, 24h or 90m" in capsys.readouterr().err
    PredictionLog(Settings(database_url=pg_url), None, flush_seconds=3600).close()  # the table, empty
    assert main(["drift", "--since", "7d", "--output", str(tmp_path)]) == 2
    assert "holds no row scored in the last 7d" in capsys.readouterr().err

    def log_scores(n: int) -> None:
        recorder = PredictionLog(Settings(database_url=pg_url), "1", flush_seconds=3600)
        rows = pd.read_csv(CUSTOMERS_CSV, nrows=n)
        recorder.record(batch_of(rows[list(schema.INPUT_COLUMNS)]), np.full(n, 0.5))
        assert recorder.flush()
        recorder.close()

    log_scores(10)
    assert main(["drift", "--since", "7d", "--output", str(tmp_path)]) == 2
    assert "holds 10 rows scored in the last 7d, fewer than drift_min_rows (1000)" in capsys.readouterr().err
    log_scores(1000)
    assert main(["drift", "--since", "7d", "--output", str(tmp_path)]) == 2  # no customers table loaded
    assert "the reference, the customers table, holds no contact" in capsys.readouterr().err


def test_scores_that_moved_alone_are_flagged(reference, customers) -> None:
    rows = request_rows(customers, 3000, seed=5)
    ref = reference[0].assign(appetence=np.random.default_rng(0).beta(1, 8, len(reference[0])))
    now = current(rows, reference).assign(appetence=np.random.default_rng(1).beta(4, 4, len(rows)))
    features, _ = drift.compare(ref, now, SHARE)
    assert {f.feature for f in features if f.drifted} == {"appetence"}


def test_a_registry_away_leaves_the_customers_table_as_reference(sqlite_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_with_indicators(sqlite_url)
    load_csv(engine, "customers", CUSTOMERS_CSV)
    engine.dispose()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    found = drift.reference_of(Settings(database_url=sqlite_url), "3", None)
    assert found.source == "the customers table" and len(found.contacts) == 38_429
