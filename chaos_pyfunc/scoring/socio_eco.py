"""Socio-economic indicators: read live from the ``socio_eco`` table, joined as of each contact.

The table is small (one row per month), so a read takes all of it: one SELECT, never one per
row, none while the cache is fresh. Reads run off the request path, so a database that is down
or hangs holds no request longer than ``wait_seconds``: past that, the last good indicators
are served while they are recent enough, else the request gets a quick 503. The join is a pure
function, so training and serving share it exactly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import INDICATORS, socio_eco

log = logging.getLogger(__name__)

UNAVAILABLE = ("socio-economic indicators are unavailable: the database cannot be read right "
               "now, retry later")


class IndicatorsUnavailable(RuntimeError):
    """The database could not be read: a temporary condition, worth retrying."""


class MissingIndicators(schema.InvalidInput):
    """Some rows have no indicators recent enough to be scored."""


@dataclass(frozen=True, eq=False)
class IndicatorTable:
    """The socio_eco rows of a window, as read, and as NumPy arrays for the serving path."""

    frame: pd.DataFrame  # date and INDICATORS, sorted by date
    months: np.ndarray   # year * 12 + month of each row, ascending
    values: np.ndarray   # the INDICATORS of each row, float64

    @classmethod
    def of(cls, frame: pd.DataFrame) -> IndicatorTable:
        return cls(frame, _month_number(pd.DatetimeIndex(frame["date"])),
                   frame[list(INDICATORS)].to_numpy(dtype=np.float64))

    def rows_for(self, contact_months: np.ndarray, max_age_months: int) -> np.ndarray | None:
        """The indicators of each contact month, as of it; None if any row must be refused
        (join then says which and why)."""
        position, refused = _as_of(self.months, contact_months, max_age_months)
        return None if refused.any() else self.values[position]

    def coverage(self) -> str:
        """Which months the table holds, for messages (the table's data, not the caller's)."""
        if not len(self.months):
            return "the socio_eco table is empty"
        first, last = (f"{(m - 1) // 12:04d}-{(m - 1) % 12 + 1:02d}" for m in self.months[[0, -1]])
        return f"indicators cover {first} to {last}"

    def join(self, rows: pd.DataFrame, max_age_months: int) -> pd.DataFrame:
        """``rows`` (validated: dates parsed) with the indicators of their month, as of it.

        Months missing from the table are real: a contact in 2009-01 takes 2008-12. A row whose
        latest month is more than ``max_age_months`` older, or that predates every month, is
        refused, naming the rows (not their dates: those are the caller's data). Row order
        is kept.
        """
        position, refused = _as_of(self.months, _month_number(rows[schema.DATE].dt), max_age_months)
        if refused.any():
            raise MissingIndicators(
                f"{schema.DATE}: no socio-economic indicators for the contact's month or the "
                f"{max_age_months} month(s) before it at {schema.at_rows(refused)}; "
                f"{self.coverage()}"
            )
        joined = rows.copy()
        joined[list(INDICATORS)] = self.values[position]
        return joined


def month_end(dates: pd.Series) -> pd.Series:
    """The last day of each date's month, at midnight."""
    return dates.dt.normalize() + pd.offsets.MonthEnd(0)


def _month_number(dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(dates.year * 12 + dates.month, dtype=np.int64)


def _as_of(table_months: np.ndarray, contact_months: np.ndarray,
           max_age_months: int) -> tuple[np.ndarray, np.ndarray]:
    """For each contact month, the position of the latest table month at or before it, and
    whether the row is refused (no such month, or older than the bound)."""
    position = np.searchsorted(table_months, contact_months, side="right") - 1
    # position -1 (no earlier month) indexes the last month: harmless, position < 0 refuses it.
    matched = table_months[position] if len(table_months) else contact_months
    return position, (position < 0) | (contact_months - matched > max_age_months)


def accepted_months(table_months: np.ndarray, max_age_months: int) -> list[int]:
    """Every contact month (year * 12 + month) the as-of join scores with ``table_months``."""
    if not len(table_months):
        return []
    candidates = np.arange(table_months[0], table_months[-1] + max_age_months + 1)
    _, refused = _as_of(table_months, candidates, max_age_months)
    return candidates[~refused].tolist()


def fetch_indicators(engine: Engine) -> pd.DataFrame:
    """One SELECT of the whole table, sorted by date."""
    query = select(socio_eco).order_by(socio_eco.c.date)
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        # The driver's message may carry host names; the class is enough for the caller.
        log.warning("reading socio_eco failed: %s", type(exc).__name__)
        raise IndicatorsUnavailable(UNAVAILABLE) from exc
    frame = pd.DataFrame(rows, columns=["date", *INDICATORS])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame.astype(dict.fromkeys(INDICATORS, "float64"))


@dataclass(frozen=True)
class _Snapshot:
    table: IndicatorTable
    read_at: float  # clock time the read that produced it started


@dataclass(frozen=True)
class _Read:
    started: float
    result: Future[_Snapshot]


class IndicatorSource:
    """The socio_eco table through a time-to-live cache shared by a process's threads.

    - Fresh (read less than ``ttl_seconds`` ago): served from memory, so a row changed in the
      table reaches the predictions at most ``ttl_seconds`` later.
    - Expired: one read at a time runs in a background thread; requests wait for it up to
      ``wait_seconds`` (None: as long as it takes, for training and batch jobs).
    - The read failed or is still running: the last good table is served if it was read less
      than ``max_staleness_seconds`` ago, else IndicatorsUnavailable. After a failure, no new
      read starts for ``retry_seconds``, so an outage costs the database one attempt per
      ``retry_seconds``, and the service heals within about as long once it is back.
    - A read running longer than ``read_deadline_seconds`` (a database that hangs) is given up
      on, and the next request starts a new one.
    """

    def __init__(
        self,
        engine: Engine,
        ttl_seconds: float,
        max_staleness_seconds: float = 0.0,
        wait_seconds: float | None = None,
        read_deadline_seconds: float = 10.0,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._max_staleness = max_staleness_seconds
        self._wait = wait_seconds
        self._read_deadline = read_deadline_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._read: _Read | None = None
        self._failures = 0  # failed reads since the last good one
        self.failed_reads = 0  # failed reads in all (the metric chaos_socio_eco_read_failures_total)
        self.round_trips = 0  # reads started so far: what the benchmarks and tests count

    @classmethod
    def for_serving(cls, engine: Engine, settings: Settings) -> IndicatorSource:
        return cls(
            engine,
            ttl_seconds=settings.cache_ttl_seconds,
            max_staleness_seconds=settings.indicators_max_staleness_seconds,
            wait_seconds=settings.indicators_wait_seconds,
            # A connect, a statement and the pool's own wait, each under its own timeout.
            read_deadline_seconds=2 * settings.connect_timeout_seconds
            + settings.statement_timeout_ms / 1000 + 1,
        )

    def table(self) -> IndicatorTable:
        """The whole socio_eco table, as fresh as the settings above allow."""
        now = self._clock()
        snapshot = self._snapshot
        if snapshot is not None and now - snapshot.read_at < self._ttl:
            return snapshot.table
        try:
            return self._current_read(now).result(timeout=self._wait).table
        except FutureTimeout:
            failure: str = "still running"
        except IndicatorsUnavailable:
            failure = "failed"
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.read_at < self._max_staleness:
            log.debug("read of socio_eco %s; serving the table read %.0f s ago", failure,
                      self._clock() - snapshot.read_at)
            return snapshot.table
        raise IndicatorsUnavailable(UNAVAILABLE)

    def _current_read(self, now: float) -> Future[_Snapshot]:
        """The read in flight, the failed one still in its retry pause, or a new one."""
        with self._lock:
            read = self._read
            if read is not None:
                if not read.result.done():
                    if now - read.started < self._read_deadline:
                        return read.result
                    log.warning("a read of socio_eco hung for %.0f s; starting another",
                                now - read.started)
                elif read.result.exception() is not None and now - read.started < self._retry:
                    return read.result
            read = _Read(now, Future())
            self._read = read
            self.round_trips += 1
        threading.Thread(target=self._run, args=(read,), name="socio-eco-read", daemon=True).start()
        return read.result

    def _run(self, read: _Read) -> None:
        try:
            snapshot = _Snapshot(IndicatorTable.of(fetch_indicators(self._engine)), read.started)
        except IndicatorsUnavailable as exc:
            with self._lock:
                self._failures += 1
                self.failed_reads += 1
            read.result.set_exception(exc)
            return
        except Exception:  # a bug, logged here; the waiting requests see the database as away
            log.exception("reading socio_eco failed unexpectedly")
            read.result.set_exception(IndicatorsUnavailable(UNAVAILABLE))
            return
        with self._lock:
            if self._snapshot is None or self._snapshot.read_at < snapshot.read_at:
                self._snapshot = snapshot
            failures, self._failures = self._failures, 0
        if failures:
            log.info("socio_eco read again after %d failed read(s)", failures)
        read.result.set_result(snapshot)

    def age_seconds(self) -> float | None:
        """How long ago the indicators in use were read; None before the first good read."""
        snapshot = self._snapshot
        return None if snapshot is None else self._clock() - snapshot.read_at

    def get(self) -> pd.DataFrame:
        """The whole socio_eco table, sorted by date."""
        return self.table().frame


def as_of_join(rows: pd.DataFrame, indicators: pd.DataFrame, max_age_months: int) -> pd.DataFrame:
    """Add to each row the indicators of the latest month at or before its contact's month
    (IndicatorTable.join, on a frame of socio_eco rows sorted by date)."""
    return IndicatorTable.of(indicators).join(rows, max_age_months)


def enrich(rows: pd.DataFrame, source: IndicatorSource, max_age_months: int) -> pd.DataFrame:
    """Validate a caller's rows and join each to its month's indicators (training and serving)."""
    clean = schema.validate(rows)
    if clean.empty:
        return clean
    return source.table().join(clean, max_age_months)
