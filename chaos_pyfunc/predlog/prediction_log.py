"""The prediction log: every row scored, with its request id, time, model version, the features
sent and the appetence, kept in PostgreSQL. Its layout is prediction_table.py's: a row per
request, the customers as arrays; the ``prediction_rows`` view, a row per customer. The drift
report reads it.

It never slows or fails a request. ``record`` only appends the request's rows as the scorer
already holds them (``schema.Batch``: plain arrays, categories as codes) to a bounded queue in
memory (past ``prediction_log_queue_rows`` waiting, the rows are dropped and counted, never
waited for): a few microseconds, no copy. A writer thread takes what is queued once a second,
joins it into a few compact arrays (``Rows``) and hands them to the COPY process
(copy_worker.py), which encodes them in PostgreSQL's binary COPY format and writes them: the
serving process' interpreter is not held meanwhile. A batch that cannot be written because the
database is away goes back to the front of the queue while there is room, and is tried again; a
batch the database refuses for any other reason (privileges revoked, bad data) is logged, counted
as failed and dropped, and the writer goes on: it never dies silently. The database need not
answer at start: the table and its partitions are created when it does, and the rows scored
meanwhile wait in the queue. Once an hour, the day partitions past the retention are dropped
(prediction_table.py). ``close`` (at SIGTERM, after uvicorn has finished the requests in flight)
writes what is still queued, within the time it is given.

What earlier forms cost the requests (1000-row requests, this machine): SQLAlchemy's many-row
INSERT, then pandas' CSV in the thread, halved the throughput; a table row per customer in
binary COPY, encoded in the thread, still took 12%, and 9% from a process of its own.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import numpy as np
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import make_engine, pg_connect_args
from chaos_pyfunc.predlog import pg_copy, prediction_table
from chaos_pyfunc.predlog.copy_worker import CopyFailed, CopyProcess, Target

log = logging.getLogger(__name__)

# The request being answered: set by the gateway, read in MLflow's worker thread (Starlette's
# threadpool copies the context).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# The contact id of each row of the request, when it sent them (request_body.contact_ids).
CONTACT_IDS: contextvars.ContextVar[list[str | None] | None] = contextvars.ContextVar("contact_ids",
                                                                                     default=None)
FLUSH_SECONDS = 1.0
PURGE_SECONDS = 3600.0
BATCH_ROWS = 50_000
CLOSE_SECONDS = 10.0  # close's bound when it is given none
# The errors of a batch that say the database is away (the COPY process names the type): the rows
# wait for it. The table or a day's partition missing: made again, the rows retried.
AWAY = frozenset({"OperationalError", "InterfaceError", CopyProcess.ENDED})
MISSING = frozenset({"UndefinedTable", "CheckViolation"})  # no such table; no partition for a row


class Scored(NamedTuple):
    """One request's rows, waiting in the queue."""

    batch: schema.Batch
    appetence: np.ndarray
    request_id: str
    scored_at: float  # seconds since 1970, UTC
    contact_ids: list[str | None] | None


@dataclass(frozen=True, eq=False)
class Rows:
    """Queued requests as the COPY process takes them: per request its id, time and number of
    rows; per row scored, compact arrays of its values, in order."""

    request_ids: list[str]
    scored_at: np.ndarray   # seconds since 1970, per request
    counts: np.ndarray      # rows per request, int32
    days: np.ndarray        # each contact's date, days since 1970, int32
    codes: dict[str, np.ndarray]     # uint8
    integers: dict[str, np.ndarray]  # int64
    appetence: np.ndarray
    contacts: tuple[np.ndarray, list[str | None]]  # each row's contact id: codes into the choices

    @classmethod
    def of(cls, taken: list[Scored]) -> Rows:
        months = np.concatenate([entry.batch.months for entry in taken]) - 1970 * 12 - 1  # since 1970-01
        first_days = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        days = first_days + np.concatenate([entry.batch.days for entry in taken]).astype(np.int64) - 1
        return cls([entry.request_id for entry in taken], np.array([entry.scored_at for entry in taken]),
                   np.array([len(entry.appetence) for entry in taken], dtype=np.int32), days.astype(np.int32),
                   {c: np.concatenate([entry.batch.codes[c] for entry in taken]).astype(np.uint8)
                    for c in schema.CATEGORIES},
                   {c: np.concatenate([entry.batch.integers[c] for entry in taken]).astype(np.int64)
                    for c in schema.INTEGERS},
                   np.concatenate([entry.appetence for entry in taken]).astype(np.float64),
                   _contacts(taken))

    def __len__(self) -> int:
        return len(self.appetence)

    def columns(self, model_version: str | None) -> list[pg_copy.Column]:
        """The predictions table's columns (prediction_table.WRITTEN), as pg_copy.encode takes them."""
        requests = len(self.counts)
        by_request: list[pg_copy.Column] = [
            ("text", np.arange(requests), self.request_ids),
            ("timestamptz", self.scored_at),
            ("text", np.zeros(requests, dtype=np.uint8), [model_version]),
            ("int4", self.counts),
        ]
        by_row: dict[str, pg_copy.Column] = {
            schema.DATE: ("date[]", self.days),
            **{c: ("int8[]", self.integers[c]) for c in schema.INTEGERS},
            **{c: ("text[]", self.codes[c], list(schema.CATEGORIES[c])) for c in schema.CATEGORIES},
            schema.OUTPUT_COLUMN: ("float8[]", self.appetence),
            schema.CONTACT_ID: ("text[]", *self.contacts),
        }
        return [*by_request, *(by_row[name] for name in prediction_table.ROW_COLUMNS)]


def _contacts(taken: list[Scored]) -> tuple[np.ndarray, list[str | None]]:
    """The rows' contact ids as codes into a list of them (None first: no id), as pg_copy takes
    text: no Python work at all for the requests that sent none."""
    total = sum(len(entry.appetence) for entry in taken)
    if all(entry.contact_ids is None for entry in taken):
        return np.zeros(total, dtype=np.int32), [None]
    choices: dict[str | None, int] = {None: 0}
    codes = [choices.setdefault(i, len(choices)) for entry in taken
             for i in (entry.contact_ids or [None] * len(entry.appetence))]
    return np.array(codes, dtype=np.int32), list(choices)


class PredictionLog:
    """The log of ``settings``' database (the prediction log's: Settings.prediction_log_database_url)."""

    def __init__(self, settings: Settings, model_version: str | None,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        self.engine = make_engine(settings)
        self.model_version = model_version
        self.queue_rows = settings.prediction_log_queue_rows
        self.retention = timedelta(days=settings.prediction_log_retention_days)
        self.dropped = 0  # rows dropped because the queue was full (chaos_prediction_log_dropped_rows)
        self.failed = 0  # rows whose batch the database refused (chaos_prediction_log_failed_rows)
        self.written = 0  # rows written (chaos_prediction_log_written_rows)
        self._pending: deque[Scored] = deque()
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = flush_seconds
        self._last_purge = 0.0
        self._days: set[date] = set()  # the days whose partitions are known to be attached
        self.ready = False  # the table is there (created if need be)
        self._copier = CopyProcess(Target(
            settings.url.set(drivername="postgresql").render_as_string(hide_password=False),
            pg_connect_args(settings), prediction_table.COPY))
        if self.engine.dialect.name != "postgresql":
            raise prediction_table.LayoutError(
                f"the prediction log needs PostgreSQL (arrays), not {self.engine.dialect.name}: "
                "set prediction_log_url, or turn prediction_log off")
        try:
            self._prepare()
        except OperationalError as exc:  # the server starts and serves all the same
            log.warning("the prediction log's database cannot be reached (%s): not writing yet; up to %d "
                        "rows wait in memory, and the table is created once it answers",
                        type(exc).__name__, self.queue_rows)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def _prepare(self, days: set[date] | None = None) -> None:
        """The table, and the partitions of ``days`` (and of today and tomorrow) attached."""
        if not self.ready:
            prediction_table.create(self.engine)
            self.ready = True
            self._days.clear()
            log.info("the prediction log writes to the predictions table")
        today = datetime.now(UTC).date()
        wanted = {today, today + timedelta(days=1), *(days or ())}
        if not wanted <= self._days:
            prediction_table.add_partitions(self.engine, sorted(wanted))
            self._days |= wanted

    def record(self, batch: schema.Batch, appetence: np.ndarray) -> None:
        """Queue one request's rows; never blocks on the database, copies nothing."""
        n = len(appetence)
        if n == 0:
            return
        ids = CONTACT_IDS.get()
        ids = ids if ids is not None and len(ids) == n else None
        entry = Scored(batch, appetence, REQUEST_ID.get(), time.time(), ids)
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

    def flush(self) -> bool:
        """Write everything queued now; False if the database is away (its rows stay queued)."""
        while taken := self._take():
            if not self._write(taken):
                return False
        return True

    def _write(self, taken: list[Scored]) -> bool:
        """One batch: written, or failed and counted (True); kept for later (False)."""
        n = sum(len(entry.appetence) for entry in taken)
        try:
            days = {datetime.fromtimestamp(entry.scored_at, UTC).date() for entry in taken}
            for attempt in (1, 2):
                try:
                    self._prepare(days)
                    rows = Rows.of(taken)
                    self._copier.write(rows.columns(self.model_version), rows.counts)
                    break
                except CopyFailed as exc:
                    if str(exc) not in MISSING or attempt == 2:
                        raise
                    self.ready = False  # the table or a partition went missing: made again, once
            self.written += n
        except (CopyFailed, OperationalError) as exc:
            if isinstance(exc, OperationalError) or str(exc) in AWAY:
                log.warning("the prediction log's database is away (%s); %d rows kept to retry",
                            exc if isinstance(exc, CopyFailed) else type(exc).__name__, n)
                self._give_back(taken)
                return False
            self._failed(n, str(exc))
        except Exception as exc:  # anything else: counted and logged (Sentry), the writer goes on
            self._failed(n, type(exc).__name__, exc)
        return True

    def _failed(self, rows: int, why: str, exc: Exception | None = None) -> None:
        self.failed += rows
        # Only the error's type: its text may quote the rows.
        log.error("the prediction log could not write a batch (%s): %d rows lost", why, rows,
                  exc_info=None if exc is None else (type(exc), exc, exc.__traceback__))

    def purge(self) -> int:
        """Drop the day partitions past the retention; the customers they held."""
        cutoff = datetime.now(UTC) - self.retention
        removed, names = prediction_table.drop_partitions_before(self.engine, cutoff)
        self._days -= {day for day in self._days if prediction_table.partition_name(day) in names}
        return removed

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._tick()
            except Exception:  # the thread lives on: a dead writer would leave the queue growing
                log.exception("the prediction log's writer failed; it goes on")

    def _tick(self) -> None:
        self.flush()
        if self.ready and time.monotonic() - self._last_purge > PURGE_SECONDS:
            self._last_purge = time.monotonic()
            try:
                removed = self.purge()
            except SQLAlchemyError as exc:
                log.warning("purging the prediction log failed: %s", type(exc).__name__)
            else:
                if removed:
                    log.info("purged %d prediction log rows older than %s", removed, self.retention)

    def close(self, timeout: float | None = None) -> None:
        """Stop the writer and write what is still queued (at shutdown), all within ``timeout``
        seconds (CLOSE_SECONDS if None); what cannot be written by then is counted as dropped."""
        deadline = time.monotonic() + (CLOSE_SECONDS if timeout is None else timeout)
        self._stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        last = threading.Thread(target=self.flush, name="prediction-log-close", daemon=True)
        last.start()
        last.join(max(0.0, deadline - time.monotonic()))
        if self._pending_rows or last.is_alive():
            with self._lock:
                lost, self._pending_rows = self._pending_rows, 0
                self._pending.clear()
                self.dropped += lost
            log.error("the prediction log could not write %d queued rows at shutdown%s", lost,
                      " (out of time)" if last.is_alive() else "")
        self._copier.close(max(0.0, deadline - time.monotonic()))
        self.engine.dispose()
