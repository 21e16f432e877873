import socket

import numpy as np
import pandas as pd
import pytest
from conftest import SOCIO_ECO_CSV, engine_with_indicators
from sqlalchemy import Engine, text

from chaos_pyfunc import schema
from chaos_pyfunc.config import Settings
from chaos_pyfunc.db import INDICATORS, make_engine
from chaos_pyfunc.socio_eco import (
    IndicatorSource,
    IndicatorsUnavailable,
    IndicatorTable,
    MissingIndicators,
    Window,
    as_of_join,
    enrich,
    fetch_indicators,
    needed_window,
)


def indicators() -> pd.DataFrame:
    frame = pd.read_csv(SOCIO_ECO_CSV)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def contacts(*dates: str) -> pd.DataFrame:
    return pd.DataFrame({schema.DATE: pd.to_datetime(list(dates)), "age": range(len(dates))})


def month_of_joined(joined: pd.DataFrame) -> list[str]:
    """Which month's euribor each row got, read back from the table."""
    table = indicators().set_index("euribor_3m")["date"]
    return [f"{table[value]:%Y-%m}" for value in joined["euribor_3m"]]


def test_a_contact_takes_its_own_month() -> None:
    joined = as_of_join(contacts("2008-05-05", "2010-11-30"), indicators(), 3)
    assert month_of_joined(joined) == ["2008-05", "2010-11"]


def test_missing_months_fall_back_to_the_latest_earlier_month() -> None:
    # 2008-09, 2009-01, 2009-02, 2010-01 and 2010-02 are real gaps in the table.
    joined = as_of_join(contacts("2009-01-20", "2009-02-03", "2008-09-30", "2010-02-01"), indicators(), 3)
    assert month_of_joined(joined) == ["2008-12", "2008-12", "2008-08", "2009-12"]


def test_row_order_and_other_columns_are_kept() -> None:
    rows = contacts("2010-11-02", "2008-05-05", "2009-06-10")
    joined = as_of_join(rows, indicators(), 3)
    assert joined["age"].tolist() == [0, 1, 2]
    assert month_of_joined(joined) == ["2010-11", "2008-05", "2009-06"]
    assert set(INDICATORS) <= set(joined.columns)


def test_indicators_older_than_the_bound_are_refused_with_rows_and_dates() -> None:
    rows = contacts("2011-02-28", "2011-03-01", "2010-11-01")
    with pytest.raises(MissingIndicators, match=r"row\(s\) 1 \(2011-03-01\)$"):
        as_of_join(rows, indicators(), 3)
    assert len(as_of_join(rows.iloc[[0, 2]], indicators(), 3)) == 2


def test_the_bound_is_configurable() -> None:
    with pytest.raises(MissingIndicators):
        as_of_join(contacts("2009-01-10"), indicators(), 0)  # 2009-01 is a gap
    assert len(as_of_join(contacts("2009-01-10"), indicators(), 1)) == 1


def test_rows_before_all_data_are_refused() -> None:
    with pytest.raises(MissingIndicators, match=r"2008-04-30"):
        as_of_join(contacts("2008-04-30"), indicators(), 3)


def test_an_empty_table_refuses_every_row() -> None:
    with pytest.raises(MissingIndicators, match=r"row\(s\) 0"):
        as_of_join(contacts("2010-01-01"), indicators().iloc[0:0], 3)


def test_needed_window_reaches_back_by_the_bound() -> None:
    window = needed_window(pd.Series(pd.to_datetime(["2009-05-17", "2009-02-01"])), 3)
    assert window == Window(pd.Timestamp("2008-11-30"), pd.Timestamp("2009-05-31"))


def test_windows_cover_and_unite() -> None:
    wide = Window(pd.Timestamp("2009-01-31"), pd.Timestamp("2009-12-31"))
    inner = Window(pd.Timestamp("2009-03-31"), pd.Timestamp("2009-04-30"))
    assert wide.covers(inner)
    assert not inner.covers(wide)
    assert inner.union(Window(pd.Timestamp("2010-01-31"), pd.Timestamp("2010-02-28"))) == Window(
        pd.Timestamp("2009-03-31"), pd.Timestamp("2010-02-28")
    )


def test_fetch_reads_only_the_window_sorted(indicators_engine: Engine) -> None:
    window = Window(pd.Timestamp("2008-11-30"), pd.Timestamp("2009-05-31"))
    frame = fetch_indicators(indicators_engine, window)
    assert frame["date"].dt.strftime("%Y-%m").tolist() == [
        "2008-11", "2008-12", "2009-03", "2009-04", "2009-05"
    ]
    assert frame["euribor_3m"].dtype == np.float64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


WINDOW = Window(pd.Timestamp("2010-08-31"), pd.Timestamp("2010-11-30"))


def test_cache_serves_inside_its_window_until_the_ttl(indicators_engine: Engine) -> None:
    clock = Clock()
    source = IndicatorSource(indicators_engine, ttl_seconds=60, clock=clock)
    source.get(WINDOW)
    source.get(Window(pd.Timestamp("2010-09-30"), pd.Timestamp("2010-10-31")))
    assert source.round_trips == 1
    clock.now += 61
    source.get(WINDOW)
    assert source.round_trips == 2


def test_cache_widens_rather_than_evicts(indicators_engine: Engine) -> None:
    source = IndicatorSource(indicators_engine, ttl_seconds=60, clock=Clock())
    early = Window(pd.Timestamp("2008-05-31"), pd.Timestamp("2008-08-31"))
    source.get(WINDOW)
    source.get(early)
    source.get(WINDOW)
    source.get(early)
    assert source.round_trips == 2


def test_a_changed_row_is_seen_once_the_ttl_has_passed(indicators_engine: Engine) -> None:
    clock = Clock()
    source = IndicatorSource(indicators_engine, ttl_seconds=30, clock=clock)
    before = source.get(WINDOW).set_index("date")["euribor_3m"]
    with indicators_engine.begin() as conn:
        conn.execute(text("UPDATE socio_eco SET euribor_3m = 9.99 WHERE date = '2010-11-30'"))
    assert source.get(WINDOW).set_index("date")["euribor_3m"].equals(before)
    clock.now += 31
    assert source.get(WINDOW).set_index("date").loc["2010-11-30", "euribor_3m"] == 9.99


def test_ttl_zero_reads_every_time(indicators_engine: Engine) -> None:
    source = IndicatorSource(indicators_engine, ttl_seconds=0, clock=Clock())
    for _ in range(3):
        source.get(WINDOW)
    assert source.round_trips == 3


def test_enrich_makes_one_query_for_many_rows(indicators_engine: Engine, customers: pd.DataFrame) -> None:
    source = IndicatorSource(indicators_engine, ttl_seconds=0)
    enriched = enrich(customers.head(2000), source, 3)
    assert source.round_trips == 1
    assert len(enriched) == 2000
    assert not enriched[list(INDICATORS)].isna().any().any()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_database_is_reported_as_unavailable() -> None:
    url = f"postgresql+psycopg2://root@127.0.0.1:{_closed_port()}/chaos"
    engine = make_engine(Settings(database_url=url, connect_timeout_seconds=1))
    with pytest.raises(IndicatorsUnavailable, match="retry later"):
        IndicatorSource(engine, ttl_seconds=0).get(WINDOW)


def test_a_database_without_the_table_is_reported_as_unavailable(pg_url: str) -> None:
    engine = make_engine(Settings(database_url=pg_url))
    with pytest.raises(IndicatorsUnavailable):
        fetch_indicators(engine, WINDOW)
    engine.dispose()


def test_a_window_of_month_numbers_spans_their_month_ends() -> None:
    window = Window.of_months(2009 * 12 + 11, 2010 * 12 + 2)
    assert (window.first, window.last) == (pd.Timestamp("2009-11-30"), pd.Timestamp("2010-02-28"))


def test_the_table_form_joins_as_of_like_the_frame_form() -> None:
    frame = pd.read_csv(SOCIO_ECO_CSV, parse_dates=["date"])
    table = IndicatorTable.of(frame)
    # 2009-01 is a gap: it takes 2008-12; 2010-03 is there; 2012-01 is too far from 2010-11.
    months = np.array([2009 * 12 + 1, 2010 * 12 + 3])
    rows = table.rows_for(months, 3)
    expected = frame.set_index(frame["date"].dt.strftime("%Y-%m"))[list(INDICATORS)]
    np.testing.assert_array_equal(rows, expected.loc[["2008-12", "2010-03"]].to_numpy())
    assert table.rows_for(np.array([2012 * 12 + 1]), 3) is None
    assert table.rows_for(np.array([2008 * 12 + 1]), 3) is None


def test_a_connection_the_database_dropped_is_replaced_without_an_error(pg_url: str) -> None:
    engine_with_indicators(pg_url).dispose()
    reader = make_engine(Settings(database_url=pg_url), read_only=True)
    window = Window(pd.Timestamp("2010-03-31"), pd.Timestamp("2010-05-31"))
    assert len(fetch_indicators(reader, window)) == 3
    # A database restart, as the pooled connection sees it: its server process is gone.
    admin = make_engine(Settings(database_url=pg_url))
    with admin.connect() as conn:
        killed = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                                   "AND application_name = 'chaos' AND backend_type = 'client backend'"))
        assert killed.scalar_one() >= 1
    admin.dispose()
    assert len(fetch_indicators(reader, window)) == 3
    reader.dispose()
