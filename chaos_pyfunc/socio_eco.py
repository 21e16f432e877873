"""Socio-economic indicators: read live from the ``socio_eco`` table, joined as of each contact.

One SELECT per request at most (none while the cache is fresh), never one per row. The join
is a pure function so training and serving share it exactly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Row, Select, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from chaos_pyfunc import schema
from chaos_pyfunc.db import INDICATORS, socio_eco

log = logging.getLogger(__name__)


class IndicatorsUnavailable(RuntimeError):
    """The database could not be read: a temporary condition, worth retrying."""


class MissingIndicators(schema.InvalidInput):
    """Some rows have no indicators recent enough to be scored."""


@dataclass(frozen=True)
class Window:
    """An inclusive range of month ends."""

    first: pd.Timestamp
    last: pd.Timestamp

    def covers(self, other: Window) -> bool:
        return self.first <= other.first and other.last <= self.last

    def union(self, other: Window) -> Window:
        return Window(min(self.first, other.first), max(self.last, other.last))

    @classmethod
    def of_months(cls, first: int, last: int) -> Window:
        """The window from month number ``first`` to ``last`` (year * 12 + month)."""
        def end(number: int) -> pd.Timestamp:
            year, month = divmod(int(number) - 1, 12)
            return pd.Timestamp(year, month + 1, 1) + pd.offsets.MonthEnd(0)
        return cls(end(first), end(last))


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

    def join(self, rows: pd.DataFrame, max_age_months: int) -> pd.DataFrame:
        """``rows`` (validated: dates parsed) with the indicators of their month, as of it.

        Months missing from the table are real: a contact in 2009-01 takes 2008-12. A row whose
        latest month is more than ``max_age_months`` older, or that predates every month, is
        refused, naming the rows and their dates. Row order is kept.
        """
        position, refused = _as_of(self.months, _month_number(rows[schema.DATE].dt), max_age_months)
        if refused.any():
            dates = rows[schema.DATE]
            shown = schema.list_rows(refused, lambda i: f"{i} ({dates.iat[i]:%Y-%m-%d})")
            raise MissingIndicators(
                f"{schema.DATE}: no socio-economic indicators for the contact's month or the "
                f"{max_age_months} month(s) before it at row(s) {shown}"
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


def needed_window(contact_dates: pd.Series, max_age_months: int) -> Window:
    """The months a request can be joined to: from ``max_age_months`` before its first month."""
    ends = month_end(contact_dates)
    first = ends.min() - pd.offsets.MonthEnd(max_age_months)
    return Window(first, ends.max())


def _read(engine: Engine, query: Select) -> list[Row]:
    """One round trip; a second, on a new connection, only when the pooled one was dead."""
    try:
        with engine.connect() as conn:
            return list(conn.execute(query).all())
    except DBAPIError as exc:
        if not exc.connection_invalidated:  # SQLAlchemy has already emptied the stale pool
            raise
        log.info("a pooled connection to the database was dead; reading on a new one")
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def fetch_indicators(engine: Engine, window: Window) -> pd.DataFrame:
    """One SELECT of the months in ``window``, sorted by date."""
    query = (
        select(socio_eco)
        .where(socio_eco.c.date.between(window.first.date(), window.last.date()))
        .order_by(socio_eco.c.date)
    )
    try:
        rows = _read(engine, query)
    except SQLAlchemyError as exc:
        # The driver's message may carry host names; the class is enough for the caller.
        log.warning("reading socio_eco failed: %s", type(exc).__name__)
        raise IndicatorsUnavailable("socio-economic indicators are unavailable: the database "
                                    "cannot be read right now, retry later") from exc
    frame = pd.DataFrame(rows, columns=["date", *INDICATORS])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame.astype(dict.fromkeys(INDICATORS, "float64"))


class IndicatorSource:
    """Reads indicators through a short time-to-live cache shared by a process's threads.

    A cached window serves any request inside it until ``ttl_seconds`` have passed; so a row
    changed in the table reaches the predictions at most ``ttl_seconds`` later.
    """

    def __init__(
        self,
        engine: Engine,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[Window, IndicatorTable, float] | None = None
        self.round_trips = 0  # database reads so far: what the benchmarks and tests count

    def _fresh(self, now: float) -> tuple[Window, IndicatorTable, float] | None:
        if self._cached is not None and now - self._cached[2] < self._ttl:
            return self._cached
        return None

    def table(self, window: Window) -> IndicatorTable:
        """The indicator rows of ``window`` (possibly more months around it)."""
        with self._lock:
            fresh = self._fresh(self._clock())
        if fresh is not None and fresh[0].covers(window):
            return fresh[1]
        # Widen to the fresh cached window so alternating requests do not evict each other.
        wanted = window if fresh is None else fresh[0].union(window)
        started = self._clock()
        table = IndicatorTable.of(fetch_indicators(self._engine, wanted))
        with self._lock:
            self.round_trips += 1
            if self._ttl > 0:
                self._cached = (wanted, table, started)
        return table

    def get(self, window: Window) -> pd.DataFrame:
        """The indicator rows of ``window``, sorted by date (possibly more months around it)."""
        return self.table(window).frame


def as_of_join(rows: pd.DataFrame, indicators: pd.DataFrame, max_age_months: int) -> pd.DataFrame:
    """Add to each row the indicators of the latest month at or before its contact's month
    (IndicatorTable.join, on a frame of socio_eco rows sorted by date)."""
    return IndicatorTable.of(indicators).join(rows, max_age_months)


def enrich(rows: pd.DataFrame, source: IndicatorSource, max_age_months: int) -> pd.DataFrame:
    """Validate a caller's rows and join each to its month's indicators (training and serving)."""
    clean = schema.validate(rows)
    if clean.empty:
        return clean
    window = needed_window(clean[schema.DATE], max_age_months)
    return source.table(window).join(clean, max_age_months)
