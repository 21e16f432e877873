"""The prediction log: every row scored, with its request id, time, model version, the features
sent and the appetence, in the ``predictions`` table. The drift report reads it.

It never slows or fails a request. ``record`` only appends to a bounded queue in memory (past
``prediction_log_queue_rows`` waiting, the rows are dropped and counted, never waited for); a
writer thread inserts what is queued in batches, once a second. A batch that cannot be written
(the database away) goes back to the front of the queue while there is room, and is tried again.
Once an hour, rows older than the retention are purged. ``close`` (at SIGTERM, after uvicorn has
finished the requests in flight) writes what is still queued.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
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


class PredictionLog:
    def __init__(self, engine: Engine, model_version: str | None, queue_rows: int, retention_days: int,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        self.engine = engine
        self.model_version = model_version
        self.queue_rows = queue_rows
        self.retention = timedelta(days=retention_days)
        self.dropped = 0  # rows dropped because the queue was full (chaos_prediction_log_dropped_rows)
        self.written = 0  # rows written (chaos_prediction_log_written_rows)
        self._pending: deque[pd.DataFrame] = deque()
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = flush_seconds
        self._last_purge = 0.0
        init_schema(engine)  # the table, if it does not exist yet
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, rows: pd.DataFrame, appetence: np.ndarray) -> None:
        """Queue one request's rows; never blocks on the database."""
        if len(appetence) == 0:
            return
        if self._pending_rows + len(appetence) > self.queue_rows:  # a glance; the lock decides
            with self._lock:
                self.dropped += len(appetence)
            return
        frame = rows.loc[:, list(schema.INPUT_COLUMNS)].reset_index(drop=True)  # built outside the lock
        frame[schema.DATE] = frame[schema.DATE].astype(str).str[:10]
        frame[schema.OUTPUT_COLUMN] = appetence
        frame["request_id"] = REQUEST_ID.get()
        frame["scored_at"] = datetime.now(UTC)
        with self._lock:
            if self._pending_rows + len(frame) > self.queue_rows:
                self.dropped += len(frame)
                return
            self._pending.append(frame)
            self._pending_rows += len(frame)

    @property
    def queued(self) -> int:
        return self._pending_rows

    def _take(self) -> pd.DataFrame | None:
        with self._lock:
            if not self._pending:
                return None
            batch, taken = [], 0
            while self._pending and taken < BATCH_ROWS:
                frame = self._pending.popleft()
                batch.append(frame)
                taken += len(frame)
            self._pending_rows -= taken
        return pd.concat(batch, ignore_index=True)

    def _give_back(self, batch: pd.DataFrame) -> None:
        with self._lock:
            if self._pending_rows + len(batch) <= self.queue_rows:
                self._pending.appendleft(batch)
                self._pending_rows += len(batch)
            else:
                self.dropped += len(batch)

    def flush(self) -> bool:
        """Write everything queued now; False if the database refused (the rows stay queued)."""
        while (batch := self._take()) is not None:
            records = records_of(batch.assign(model_version=self.model_version))
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(predictions), records)
            except SQLAlchemyError as exc:
                log.warning("writing the prediction log failed: %s; %d rows kept to retry",
                            type(exc).__name__, len(batch))
                self._give_back(batch)
                return False
            self.written += len(batch)
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
