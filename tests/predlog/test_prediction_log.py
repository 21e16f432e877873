"""The prediction log on the real PostgreSQL: every row queued is written with its request id,
model version, features and appetence; a full queue drops and counts instead of waiting; a
database away keeps the rows to retry; old rows are purged; close writes what is queued."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from support.rows import contract_rows
from support.tcp_proxy import TcpProxy

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import make_engine
from chaos_pyfunc.predlog import prediction_table
from chaos_pyfunc.predlog.prediction_log import CONTACT_IDS, REQUEST_ID, PredictionLog
from chaos_pyfunc.predlog.prediction_table import LayoutError, prediction_rows, predictions


def count(engine: Engine) -> int:
    """Customers in the log."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(prediction_rows)).scalar_one()


def stored(engine: Engine) -> pd.DataFrame:
    """The log as the view shows it: a row per customer, in the order written."""
    with engine.connect() as conn:
        view = prediction_rows.c
        table = pd.read_sql(select(prediction_rows).order_by(view.id, view.position), conn)
    return table.assign(date=table["date"].astype(str))  # a date column; the requests send text


def log_of(url: str, version: str | None = "7", queue_rows: int = 1000, **settings: object) -> PredictionLog:
    """A log flushed by hand here (its thread waits an hour)."""
    return PredictionLog(Settings(database_url=url, prediction_log_queue_rows=queue_rows,
                                  prediction_log_retention_days=30, **settings),  # type: ignore[arg-type]
                         version, flush_seconds=3600)


@pytest.fixture
def recorder(pg_url: str) -> Iterator[PredictionLog]:
    recorder = log_of(pg_url)
    yield recorder
    recorder.close()


def record(recorder: PredictionLog, rows: pd.DataFrame, request_id: str,
           scores: np.ndarray | None = None) -> np.ndarray:
    scores = np.linspace(0.1, 0.9, len(rows)) if scores is None else scores
    batch = schema.fast_batch(schema.as_signature_types(rows))
    assert batch is not None
    token = REQUEST_ID.set(request_id)
    try:
        recorder.record(batch, scores)
    finally:
        REQUEST_ID.reset(token)
    return scores


def test_every_row_is_written_with_its_request_and_model(recorder) -> None:
    first, second = contract_rows(3, seed=81), contract_rows(2, seed=82)
    scores = record(recorder, first, "req-1")
    record(recorder, second, "req-2")
    assert recorder.flush()
    table = stored(recorder.engine)
    assert table["request_id"].tolist() == ["req-1"] * 3 + ["req-2"] * 2
    assert set(table["model_version"]) == {"7"}
    assert table["appetence"].head(3).tolist() == pytest.approx(scores.tolist())
    assert table["age"].head(3).tolist() == first["age"].tolist()
    assert table["job_type"].head(3).tolist() == first["job_type"].tolist()
    assert table["date"].head(3).tolist() == first["date"].tolist()
    assert recorder.written == 5 and recorder.dropped == 0


def test_every_value_of_every_customer_is_stored_as_sent(pg_url: str, customers: pd.DataFrame) -> None:
    """The binary COPY against the real server: all 38k customers, every column, in order, with
    the request id and time of their request (1000 rows per request)."""
    recorder = log_of(pg_url, queue_rows=50_000)
    rows = customers[list(schema.INPUT_COLUMNS)]
    scores = np.random.default_rng(5).random(len(rows))
    before = datetime.now(UTC)
    for start in range(0, len(rows), 1000):
        record(recorder, rows.iloc[start:start + 1000], f"r{start // 1000:03d}", scores[start:start + 1000])
    assert recorder.flush() and recorder.written == len(rows)
    table = stored(recorder.engine)
    recorder.close()
    pd.testing.assert_frame_equal(table[list(schema.INPUT_COLUMNS)], rows.reset_index(drop=True),
                                  check_dtype=False)
    assert table["appetence"].to_numpy().tolist() == scores.tolist()  # float8: bit for bit
    assert table["request_id"].tolist() == [f"r{i // 1000:03d}" for i in range(len(rows))]
    assert (table["scored_at"] >= before).all() and (table["scored_at"] <= datetime.now(UTC)).all()
    assert set(table["model_version"]) == {"7"}


def test_a_model_without_version_is_logged_as_null(pg_url: str) -> None:
    recorder = log_of(pg_url, version=None)
    record(recorder, contract_rows(2, seed=87), "req-n")
    recorder.close()
    assert stored(make_engine(Settings(database_url=pg_url)))["model_version"].tolist() == [None, None]


def test_the_log_needs_postgresql(sqlite_url: str) -> None:
    with pytest.raises(LayoutError, match="the prediction log needs PostgreSQL"):
        log_of(sqlite_url)


def test_a_table_of_another_layout_is_named_not_written_into(pg_url: str) -> None:
    with make_engine(Settings(database_url=pg_url)).begin() as conn:
        conn.execute(text("CREATE TABLE predictions (id bigserial, request_id text, age bigint)"))
    with pytest.raises(LayoutError, match="another layout than this version writes"):
        log_of(pg_url)


def test_a_request_is_one_table_row_its_customers_arrays(recorder) -> None:
    rows = contract_rows(3, seed=79)
    record(recorder, rows, "req-x")
    assert recorder.flush()
    with recorder.engine.connect() as conn:
        (row,) = conn.execute(select(predictions)).mappings().all()
    assert (row["request_id"], row["rows"], row["model_version"]) == ("req-x", 3, "7")
    assert row["age"] == rows["age"].tolist() and row["job_type"] == rows["job_type"].tolist()


def test_a_full_queue_drops_and_counts_without_waiting(pg_url: str) -> None:
    recorder = log_of(pg_url, version=None, queue_rows=4)
    rows = contract_rows(3, seed=83)
    for i in range(3):
        record(recorder, rows, f"req-{i}")
    assert (recorder.queued, recorder.dropped) == (3, 6)  # queued in memory, nothing written yet
    assert count(recorder.engine) == 0
    recorder.close()
    assert count(recorder.engine) == 3


def test_a_database_away_keeps_the_rows_for_the_next_try(pg_url: str) -> None:
    """The database cut away by a real proxy, then back: the rows wait in the queue meanwhile."""
    proxy = TcpProxy(("127.0.0.1", make_url(pg_url).port or 5432))
    proxy.start()
    try:
        recorder = log_of(make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False),
                          version="1", queue_rows=100, connect_timeout_seconds=1)
        record(recorder, contract_rows(2, seed=80), "req-0")
        assert recorder.flush() and recorder.written == 2  # the COPY process is connected
        proxy.stop()
        record(recorder, contract_rows(2, seed=84), "req-a")
        assert recorder.flush() is False and recorder.queued == 2
        assert recorder.flush() is False and recorder.queued == 2  # tried again, still away
        proxy.start()
        assert recorder.flush() and recorder.queued == 0
        recorder.close()
    finally:
        proxy.stop()
    logged = stored(make_engine(Settings(database_url=pg_url)))["request_id"].tolist()
    assert logged == ["req-0"] * 2 + ["req-a"] * 2


def test_a_copy_process_that_died_is_replaced(recorder) -> None:
    record(recorder, contract_rows(1, seed=89), "before")
    assert recorder.flush()
    assert recorder._copier is not None and recorder._copier._process is not None
    recorder._copier._process.kill()
    recorder._copier._process.wait()
    record(recorder, contract_rows(1, seed=90), "after")
    assert recorder.flush()  # a new process, the rows written
    assert stored(recorder.engine)["request_id"].tolist() == ["before", "after"]


def test_old_days_are_dropped_whole(recorder) -> None:
    record(recorder, contract_rows(2, seed=85), "old")
    record(recorder, contract_rows(1, seed=86), "new")
    assert recorder.flush()
    old_day = datetime.now(UTC) - timedelta(days=31)
    prediction_table.add_partitions(recorder.engine, [old_day.date()])
    with recorder.engine.begin() as conn:  # the row moves to the old day's partition
        conn.execute(update(predictions).where(predictions.c.request_id == "old").values(scored_at=old_day))
    assert recorder.purge() == 2  # customers, in one request
    assert count(recorder.engine) == 1
    with recorder.engine.connect() as conn:
        days = prediction_table.partitions(conn)
    assert old_day.date() not in days and datetime.now(UTC).date() in days
    record(recorder, contract_rows(1, seed=87), "after")
    assert recorder.flush() and count(recorder.engine) == 2  # today's partition untouched


def test_the_log_starts_with_its_database_away_then_writes_what_waited(pg_url: str) -> None:
    """No database at start (a real proxy not listening yet): no error, the rows wait; the table
    and its partitions are created once the database answers, and the rows written."""
    proxy = TcpProxy(("127.0.0.1", make_url(pg_url).port or 5432))
    away = make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
    recorder = log_of(away, version="1", queue_rows=100, connect_timeout_seconds=1)
    try:
        assert not recorder.ready
        record(recorder, contract_rows(3, seed=91), "while-away")
        assert recorder.flush() is False and recorder.queued == 3
        proxy.start()
        assert recorder.flush() and recorder.ready and recorder.written == 3
        recorder.close()
    finally:
        proxy.stop()
    assert stored(make_engine(Settings(database_url=pg_url)))["request_id"].tolist() == ["while-away"] * 3


@pytest.fixture
def writer_role(pg_url: str) -> Iterator[tuple[str, str]]:
    """A login role that is not a superuser (privileges can be revoked from it): (its URL, the
    superuser's URL of the same database)."""
    role = f"writer_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}"))
    yield make_url(pg_url).set(username=role).render_as_string(hide_password=False), pg_url
    with admin.connect() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


def written_at_least(recorder: PredictionLog, rows: int, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while recorder.written < rows and time.monotonic() < deadline:
        time.sleep(0.05)
    return recorder.written >= rows


def test_the_writer_outlives_a_refusal_counts_what_it_lost_and_goes_on(writer_role) -> None:
    """Real faults under the writer's own thread: INSERT revoked, then the table dropped."""
    url, admin_url = writer_role
    recorder = PredictionLog(Settings(database_url=url, prediction_log_queue_rows=1000), "3",
                             flush_seconds=0.05)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    role = make_url(url).username
    try:
        record(recorder, contract_rows(2, seed=92), "granted")
        assert written_at_least(recorder, 2)
        with admin.connect() as conn:
            conn.execute(text(f"REVOKE INSERT ON predictions FROM {role}"))
        record(recorder, contract_rows(3, seed=93), "revoked")
        deadline = time.monotonic() + 30
        while recorder.failed < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (recorder.failed, recorder.queued, recorder.written) == (3, 0, 2)
        with admin.connect() as conn:
            conn.execute(text(f"GRANT INSERT ON predictions TO {role}"))
        record(recorder, contract_rows(1, seed=94), "granted-again")
        assert written_at_least(recorder, 3)
        with admin.connect() as conn:
            conn.execute(text("DROP TABLE predictions CASCADE"))  # the view with it
        record(recorder, contract_rows(4, seed=95), "after-drop")
        assert written_at_least(recorder, 7)  # made again, then written
        assert recorder._thread.is_alive()
    finally:
        recorder.close()
        admin.dispose()
    logged = stored(make_engine(Settings(database_url=admin_url)))["request_id"].tolist()
    assert logged == ["after-drop"] * 4  # the table was dropped with what it held
    assert recorder.failed == 3


def test_close_keeps_to_its_time_and_counts_what_it_could_not_write(pg_url: str) -> None:
    proxy = TcpProxy(("127.0.0.1", make_url(pg_url).port or 5432))
    proxy.start()
    try:
        recorder = log_of(make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False))
        record(recorder, contract_rows(2, seed=96), "first")
        assert recorder.flush()
        proxy.stop()
        proxy.start(blackhole=True)  # the database hangs: a COPY would wait for its timeouts
        record(recorder, contract_rows(5, seed=97), "hanging")
        started = time.monotonic()
        recorder.close(timeout=1.0)
        took = time.monotonic() - started
    finally:
        proxy.stop()
    assert took < 1.5, took
    assert recorder.dropped == 5 and recorder.written == 2


def test_contact_ids_are_kept_with_their_rows_null_where_none_was_sent(recorder) -> None:
    token = CONTACT_IDS.set(["c-1", None, "c-3"])
    try:
        record(recorder, contract_rows(3, seed=98), "with-ids")
    finally:
        CONTACT_IDS.reset(token)
    record(recorder, contract_rows(2, seed=99), "without")
    assert recorder.flush()
    table = stored(recorder.engine)
    assert table["contact_id"].tolist() == ["c-1", None, "c-3", None, None]
