"""The prediction log: every row scored, with its request id, time, model version, the features
sent and the appetence, in the ``predictions`` table. The drift report reads it.

It never slows or fails a request. ``record`` only appends the request's frame, as it is, to a
bounded queue in memory (past ``prediction_log_queue_rows`` waiting, the rows are dropped and
counted, never waited for): tens of microseconds. A writer thread turns what is queued into one
frame per batch, once a second, and writes it with PostgreSQL's COPY (an INSERT of many rows on
other databases): SQLAlchemy's many-row INSERT took 40 ms of the interpreter for 150 rows, which
the requests waited out (soak p99 482 ms against 23 ms without the log). A batch that cannot be written
(the database away) goes back to the front of the queue while there is room, and is tried again.
Once an hour, rows older than the retention are purged. ``close`` (at SIGTERM, after uvicorn has
finished the requests in flight) writes what is still queued.
"""

from __future__ import annotations

import contextvars
import io
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd
import psycopg2
from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import SQLAlchemyError

from chaos_pyfunc import schema
from chaos_pyfunc.db import init_schema, predictions, records_of

log = logging.getLogger(__name__)

# The request being answered: set by the gateway, read in MLflow's worker thread (Starlette's
# threadpool copies the context).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
FLUSH_SECONDS = 1.0
PURGE_SECONDS = 3600.0
BATCH_ROWS = 5000
COLUMNS = ("request_id", "scored_at", "model_version", *schema.INPUT_COLUMNS, schema.OUTPUT_COLUMN)


class Scored(NamedTuple):
    """One request's rows (the input columns' values, in schema order), waiting in the queue."""

    values: np.ndarray
    appetence: np.ndarray
    request_id: str
    scored_at: datetime


class PredictionLog:
    def __init__(self, engine: Engine, model_version: str | None, queue_rows: int, retention_days: int,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        self.engine = engine
        self.model_version = model_version
        self.queue_rows = queue_rows
        self.retention = timedelta(days=retention_days)
        self.dropped = 0  # rows dropped because the queue was full (chaos_prediction_log_dropped_rows)
        self.written = 0  # rows written (chaos_prediction_log_written_rows)
        self._pending: deque[Scored] = deque()
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = flush_seconds
        self._last_purge = 0.0
        init_schema(engine)  # the table, if it does not exist yet
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, rows: pd.DataFrame, appetence: np.ndarray) -> None:
        """Queue one request's rows; never blocks on the database. The values are taken as one
        array (tens of microseconds): the writer then stacks them without pandas per request."""
        n = len(appetence)
        if n == 0:
            return
        in_order = tuple(rows.columns) == tuple(schema.INPUT_COLUMNS)
        ordered = rows if in_order else rows.loc[:, list(schema.INPUT_COLUMNS)]
        entry = Scored(ordered.to_numpy(dtype=object), appetence, REQUEST_ID.get(), datetime.now(UTC))
        with self._lock:
            if self._pending_rows + n > self.queue_rows:
                self.dropped += n
                return
            self._pending.append(entry)
            self._pending_rows += n

    @property
    def queued(self) -> int:
        return self._pending_rows

    def _take(self) -> list[Scored]:
        with self._lock:
            taken: list[Scored] = []
            rows = 0
            while self._pending and rows < BATCH_ROWS:
                taken.append(self._pending.popleft())
                rows += len(taken[-1].appetence)
            self._pending_rows -= rows
        return taken

    def _give_back(self, taken: list[Scored]) -> None:
        rows = sum(len(entry.appetence) for entry in taken)
        with self._lock:
            if self._pending_rows + rows <= self.queue_rows:
                self._pending.extendleft(reversed(taken))
                self._pending_rows += rows
            else:
                self.dropped += rows

    def _frame(self, taken: list[Scored]) -> pd.DataFrame:
        """The batch as the table's columns: one frame, built in the writer thread."""
        lengths = [len(entry.appetence) for entry in taken]
        stacked = np.vstack([entry.values for entry in taken])
        frame = pd.DataFrame(stacked, columns=list(schema.INPUT_COLUMNS)).infer_objects()
        frame[schema.DATE] = frame[schema.DATE].astype(str).str[:10]
        frame[schema.OUTPUT_COLUMN] = np.concatenate([entry.appetence for entry in taken])
        frame["request_id"] = np.repeat([entry.request_id for entry in taken], lengths)
        frame["scored_at"] = np.repeat(np.array([entry.scored_at for entry in taken], dtype=object), lengths)
        frame["model_version"] = self.model_version
        return frame.loc[:, list(COLUMNS)]

    def _write(self, frame: pd.DataFrame) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # COPY: parsed by the server, not by Python
                text = io.StringIO()
                frame.to_csv(text, index=False, header=False)
                text.seek(0)
                columns = ", ".join(f'"{c}"' for c in COLUMNS)
                with conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
                    cursor.copy_expert(f"COPY predictions ({columns}) FROM STDIN WITH (FORMAT csv)", text)
            else:
                conn.execute(insert(predictions), records_of(frame))

    def flush(self) -> bool:
        """Write everything queued now; False if the database refused (the rows stay queued)."""
        while taken := self._take():
            frame = self._frame(taken)
            try:
                self._write(frame)
            except (SQLAlchemyError, psycopg2.Error) as exc:  # COPY runs on the driver's own cursor
                log.warning("writing the prediction log failed: %s; %d rows kept to retry",
                            type(exc).__name__, len(frame))
                self._give_back(taken)
                return False
            self.written += len(frame)
        return True

    def purge(self) -> int:
        cutoff = datetime.now(UTC) - self.retention
        with self.engine.begin() as conn:
            return conn.execute(delete(predictions).where(predictions.c.scored_at < cutoff)).rowcount

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
            if time.monotonic() - self._last_purge > PURGE_SECONDS:
                self._last_purge = time.monotonic()
                try:
                    removed = self.purge()
                except SQLAlchemyError as exc:
                    log.warning("purging the prediction log failed: %s", type(exc).__name__)
                else:
                    if removed:
                        log.info("purged %d prediction log rows older than %s", removed, self.retention)

    def close(self) -> None:
        """Stop the writer and write what is still queued (at shutdown)."""
        self._stop.set()
        self._thread.join(timeout=10)
        if not self.flush():
            log.error("the prediction log could not write %d queued rows at shutdown", self._pending_rows)
        self.engine.dispose()
