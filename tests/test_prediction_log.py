"""The prediction log on the real PostgreSQL: every row queued is written with its request id,
model version, features and appetence; a full queue drops and counts instead of waiting; a
database away keeps the rows to retry; old rows are purged; close writes what is queued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from conftest import request_rows
from sqlalchemy import func, select, update

from chaos_pyfunc import schema
from chaos_pyfunc.config import Settings
from chaos_pyfunc.db import make_engine, predictions
from chaos_pyfunc.prediction_log import REQUEST_ID, PredictionLog

pytestmark = pytest.mark.data


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(predictions)).scalar_one()


@pytest.fixture
def recorder(pg_url: str):
    recorder = PredictionLog(make_engine(Settings(database_url=pg_url)), "7", queue_rows=1000,
                             retention_days=30, flush_seconds=3600)  # flushed by hand here
    yield recorder
    recorder.close()


def record(recorder: PredictionLog, rows: pd.DataFrame, request_id: str) -> np.ndarray:
    scores = np.linspace(0.1, 0.9, len(rows))
    token = REQUEST_ID.set(request_id)
    try:
        recorder.record(schema.as_signature_types(rows), scores)
    finally:
        REQUEST_ID.reset(token)
    return scores


def test_every_row_is_written_with_its_request_and_model(recorder, customers: pd.DataFrame) -> None:
    first, second = request_rows(customers, 3, seed=81), request_rows(customers, 2, seed=82)
    scores = record(recorder, first, "req-1")
    record(recorder, second, "req-2")
    assert recorder.flush()
    with recorder.engine.connect() as conn:
        stored = pd.read_sql(select(predictions).order_by(predictions.c.id), conn)
    assert stored["request_id"].tolist() == ["req-1"] * 3 + ["req-2"] * 2
    assert set(stored["model_version"]) == {"7"}
    assert stored["appetence"].head(3).tolist() == pytest.approx(scores.tolist())
    assert stored["age"].head(3).tolist() == first["age"].tolist()
    assert stored["job_type"].head(3).tolist() == first["job_type"].tolist()
    assert stored["date"].head(3).tolist() == first["date"].tolist()
    assert recorder.written == 5 and recorder.dropped == 0


def test_a_full_queue_drops_and_counts_without_waiting(pg_url: str, customers: pd.DataFrame) -> None:
    recorder = PredictionLog(make_engine(Settings(database_url=pg_url)), None, queue_rows=4,
                             retention_days=30, flush_seconds=3600)
    rows = request_rows(customers, 3, seed=83)
    for i in range(3):
        record(recorder, rows, f"req-{i}")
    assert (recorder.queued, recorder.dropped) == (3, 6)  # queued in memory, nothing written yet
    assert count(recorder.engine) == 0
    recorder.close()
    assert count(recorder.engine) == 3


def test_a_database_away_keeps_the_rows_for_the_next_try(pg_url: str, customers: pd.DataFrame) -> None:
    away = Settings(database_url="postgresql+psycopg2://root@127.0.0.1:1/none", connect_timeout_seconds=1)
    recorder = PredictionLog(make_engine(Settings(database_url=pg_url)), "1", 100, 30, 3600)
    live, recorder.engine = recorder.engine, make_engine(away)  # the database goes away
    record(recorder, request_rows(customers, 2, seed=84), "req-a")
    assert recorder.flush() is False and recorder.queued == 2
    recorder.engine = live
    assert recorder.flush() and count(live) == 2
    recorder.close()


def test_old_rows_are_purged(recorder, customers: pd.DataFrame) -> None:
    record(recorder, request_rows(customers, 2, seed=85), "old")
    record(recorder, request_rows(customers, 1, seed=86), "new")
    assert recorder.flush()
    with recorder.engine.begin() as conn:
        conn.execute(update(predictions).where(predictions.c.request_id == "old")
                     .values(scored_at=datetime.now(UTC) - timedelta(days=31)))
    assert recorder.purge() == 2
    assert count(recorder.engine) == 1
