"""The predictions table on the real PostgreSQL: partitioned by day, new days attached ahead,
expired days detached and dropped whole. Two million expired rows go in a few statements, none
near the statement timeout, while the writer goes on writing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, event, text
from support.rows import contract_rows

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import make_engine
from chaos_pyfunc.predlog import prediction_table
from chaos_pyfunc.predlog.prediction_log import REQUEST_ID, PredictionLog

EXPIRED_ROWS = 2_000_000
EXPIRED_DAYS = 10


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(Settings(database_url=pg_url))
    prediction_table.create(engine)
    yield engine
    engine.dispose()


def test_a_day_is_attached_once_and_holds_only_its_rows(engine: Engine) -> None:
    today = datetime.now(UTC).date()
    assert prediction_table.add_partitions(engine, [today, today]) == [prediction_table.partition_name(today)]
    assert prediction_table.add_partitions(engine, [today]) == []
    with engine.connect() as conn:
        assert list(prediction_table.partitions(conn)) == [today]
    with pytest.raises(Exception, match="no partition"), engine.begin() as conn:  # no day, no row
        conn.execute(text("INSERT INTO predictions (request_id, scored_at, rows, date, age, job_type, "
                          "status, education, has_default, balance, has_housing_loan, has_perso_loan, "
                          "contact, nb_contact, nb_day_last_contact, nb_contact_last_campaign, "
                          "result_last_campaign, appetence, contact_id) VALUES ('x', now() - interval "
                          "'3 days', 0, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', "
                          "'{}', '{}', '{}', '{}', '{}')"))


def fill_expired_days(engine: Engine, days: list[datetime]) -> None:
    """EXPIRED_ROWS rows (a customer each) spread over ``days``, written by the server itself."""
    prediction_table.add_partitions(engine, [day.date() for day in days])
    per_day = EXPIRED_ROWS // len(days)
    arrays = {name: "ARRAY[1]::bigint[]" for name in schema.INTEGERS}
    arrays |= {name: "ARRAY['unknown']" for name in schema.CATEGORIES}
    arrays |= {schema.DATE: "ARRAY[DATE '2010-11-02']", schema.OUTPUT_COLUMN: "ARRAY[0.5]::float8[]",
               schema.CONTACT_ID: "ARRAY['c-' || n]"}
    names = ", ".join(f'"{name}"' for name in prediction_table.ROW_COLUMNS)
    values = ", ".join(arrays[name] for name in prediction_table.ROW_COLUMNS)
    with engine.connect() as conn:
        conn.execute(text("SET statement_timeout = 0"))  # the setup, not the purge
        for day in days:
            conn.execute(text(
                f"INSERT INTO predictions (request_id, scored_at, model_version, rows, {names}) "
                f"SELECT 'old-' || n, :at, '1', 1, {values} FROM generate_series(1, :n) AS n"
            ).bindparams(at=day + timedelta(hours=12), n=per_day))
        conn.commit()


def test_two_million_expired_rows_go_without_a_long_statement_or_a_blocked_writer(pg_url: str) -> None:
    settings = Settings(database_url=pg_url)
    recorder = PredictionLog(settings, "2", flush_seconds=3600)  # flushed by hand below, timed
    old = [datetime.now(UTC) - timedelta(days=settings.prediction_log_retention_days + 2 + i)
           for i in range(EXPIRED_DAYS)]
    filling = time.monotonic()
    fill_expired_days(recorder.engine, old)
    filled = time.monotonic() - filling

    statements: list[tuple[float, str]] = []

    @event.listens_for(recorder.engine, "before_cursor_execute")
    def started(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        conn.info.setdefault("started", []).append(time.perf_counter())

    @event.listens_for(recorder.engine, "after_cursor_execute")
    def ended(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append((time.perf_counter() - conn.info["started"].pop(), statement.split(" (")[0]))

    writes: list[float] = []
    purging = threading.Event()

    def write() -> None:  # the writer's own work, timed, while the purge runs
        rows = contract_rows(5, seed=7)
        batch = schema.fast_batch(schema.as_signature_types(rows))
        assert batch is not None
        i = 0
        while purging.is_set() or not writes:
            token = REQUEST_ID.set(f"during-{i}")
            recorder.record(batch, [0.5] * 5)  # type: ignore[arg-type]
            REQUEST_ID.reset(token)
            began = time.perf_counter()
            assert recorder.flush()
            writes.append(time.perf_counter() - began)
            i += 1
            time.sleep(0.01)

    purging.set()
    writer = threading.Thread(target=write)
    writer.start()
    began = time.monotonic()
    removed = recorder.purge()
    took = time.monotonic() - began
    purging.clear()
    writer.join(timeout=30)
    recorder.close()
    longest = max(statements)
    print(f"{EXPIRED_ROWS:,} rows over {EXPIRED_DAYS} days written in {filled:.1f} s; purged in "
          f"{took:.2f} s, {len(statements)} statements, the longest {longest[0] * 1e3:.0f} ms "
          f"({longest[1]}); {len(writes)} writes meanwhile, the longest {max(writes) * 1e3:.0f} ms")
    assert removed == EXPIRED_ROWS
    assert longest[0] < settings.statement_timeout_ms / 1e3 / 5, longest  # far from the timeout
    assert max(writes) < 1.0, max(writes)  # the writer never waited on the purge
    with make_engine(settings).connect() as conn:
        left = dict(conn.execute(text("SELECT split_part(request_id, '-', 1), count(*) FROM predictions "
                                      "GROUP BY 1")).all())
    assert left == {"during": len(writes)}
