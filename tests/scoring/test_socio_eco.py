import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from conftest import SOCIO_ECO_CSV, engine_with_indicators
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from support.tcp_proxy import TcpProxy

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import INDICATORS, make_engine
from chaos_pyfunc.scoring.socio_eco import (
    IndicatorSource,
    IndicatorsUnavailable,
    IndicatorTable,
    MissingIndicators,
    as_of_join,
    enrich,
    fetch_indicators,
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


def test_indicators_older_than_the_bound_are_refused_naming_rows_not_dates() -> None:
    rows = contacts("2011-02-28", "2011-03-01", "2010-11-01")
    with pytest.raises(MissingIndicators, match=r"row 1; indicators cover 2008-05 to 2010-11$"):
        as_of_join(rows, indicators(), 3)
    assert len(as_of_join(rows.iloc[[0, 2]], indicators(), 3)) == 2


def test_the_bound_is_configurable() -> None:
    with pytest.raises(MissingIndicators):
        as_of_join(contacts("2009-01-10"), indicators(), 0)  # 2009-01 is a gap
    assert len(as_of_join(contacts("2009-01-10"), indicators(), 1)) == 1


def test_rows_before_all_data_are_refused() -> None:
    with pytest.raises(MissingIndicators, match=r"row 0; indicators cover 2008-05") as refused:
        as_of_join(contacts("2008-04-30"), indicators(), 3)
    assert "2008-04-30" not in str(refused.value)  # the caller's value is not repeated


def test_an_empty_table_refuses_every_row() -> None:
    with pytest.raises(MissingIndicators, match=r"row 0; the socio_eco table is empty"):
        as_of_join(contacts("2010-01-01"), indicators().iloc[0:0], 3)


def test_fetch_reads_the_whole_table_sorted(indicators_engine: Engine) -> None:
    frame = fetch_indicators(indicators_engine)
    assert len(frame) == 26
    assert frame["date"].is_monotonic_increasing
    assert frame["date"].dt.strftime("%Y-%m").tolist()[:3] == ["2008-05", "2008-06", "2008-07"]
    assert frame["euribor_3m"].dtype == np.float64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_serves_from_memory_until_the_ttl(indicators_engine: Engine) -> None:
    clock = Clock()
    source = IndicatorSource(indicators_engine, ttl_seconds=60, clock=clock)
    source.get()
    clock.now += 59
    source.get()
    assert source.round_trips == 1
    clock.now += 2
    source.get()
    assert source.round_trips == 2


def test_a_changed_row_is_seen_once_the_ttl_has_passed(indicators_engine: Engine) -> None:
    clock = Clock()
    source = IndicatorSource(indicators_engine, ttl_seconds=30, clock=clock)
    before = source.get().set_index("date")["euribor_3m"]
    with indicators_engine.begin() as conn:
        conn.execute(text("UPDATE socio_eco SET euribor_3m = 9.99 WHERE date = '2010-11-30'"))
    assert source.get().set_index("date")["euribor_3m"].equals(before)
    clock.now += 31
    assert source.get().set_index("date").loc["2010-11-30", "euribor_3m"] == 9.99


def test_ttl_zero_reads_every_time(indicators_engine: Engine) -> None:
    source = IndicatorSource(indicators_engine, ttl_seconds=0, clock=Clock())
    for _ in range(3):
        source.get()
    assert source.round_trips == 3


def test_one_read_serves_all_the_threads_waiting_for_it(indicators_engine: Engine) -> None:
    source = IndicatorSource(indicators_engine, ttl_seconds=60)
    tables = []
    threads = [threading.Thread(target=lambda: tables.append(source.table())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tables) == 8 and len({id(t) for t in tables}) == 1
    assert source.round_trips == 1


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
        IndicatorSource(engine, ttl_seconds=0).get()


def test_a_database_without_the_table_is_reported_as_unavailable(pg_url: str) -> None:
    engine = make_engine(Settings(database_url=pg_url))
    with pytest.raises(IndicatorsUnavailable):
        fetch_indicators(engine)
    engine.dispose()


# ---------------------------------------------------------------- the database away and back


@pytest.fixture
def proxied(module_pg_url: str) -> Iterator[tuple[TcpProxy, Engine]]:
    """A serving engine that reaches the real database through a proxy the test can cut."""
    proxy = TcpProxy(("127.0.0.1", make_url(module_pg_url).port or 5432))
    proxy.start()
    url = make_url(module_pg_url).set(port=proxy.port).render_as_string(hide_password=False)
    engine = make_engine(Settings(database_url=url, connect_timeout_seconds=1), read_only=True)
    yield proxy, engine
    proxy.stop()
    engine.dispose()


def test_while_the_database_is_down_recent_indicators_are_served(
    proxied: tuple[TcpProxy, Engine]
) -> None:
    proxy, engine = proxied
    clock = Clock()
    source = IndicatorSource(engine, ttl_seconds=10, max_staleness_seconds=60, wait_seconds=2,
                             retry_seconds=1, clock=clock)
    good = source.table()
    proxy.stop()
    clock.now += 30  # expired, but within the staleness bound: the last good table
    assert source.table() is good
    clock.now += 31  # read 61 s ago: too old to serve
    with pytest.raises(IndicatorsUnavailable, match="retry later"):
        source.table()


def test_after_a_failure_the_database_is_asked_again_only_after_the_retry_pause(
    proxied: tuple[TcpProxy, Engine]
) -> None:
    proxy, engine = proxied
    clock = Clock()
    source = IndicatorSource(engine, ttl_seconds=0, wait_seconds=2, retry_seconds=1, clock=clock)
    proxy.stop()
    with pytest.raises(IndicatorsUnavailable):
        source.table()
    attempts = source.round_trips
    for _ in range(20):  # within the pause: answered at once, the database is left alone
        with pytest.raises(IndicatorsUnavailable):
            source.table()
    assert source.round_trips == attempts
    proxy.start()
    clock.now += 1.5
    assert len(source.get()) == 26  # healed, with no restart
    assert source.round_trips == attempts + 1


def test_a_hanging_database_holds_no_request_longer_than_the_wait(
    proxied: tuple[TcpProxy, Engine]
) -> None:
    proxy, engine = proxied
    clock = Clock()
    source = IndicatorSource(engine, ttl_seconds=10, max_staleness_seconds=3600, wait_seconds=0.3,
                             read_deadline_seconds=5, clock=clock)
    good = source.table()
    engine.dispose()  # new connections only: they go to the hanging proxy
    proxy.stop()
    proxy.start(blackhole=True)
    clock.now += 11
    started = time.monotonic()
    assert source.table() is good
    assert time.monotonic() - started < 1.5
    hung = source.round_trips
    assert source.table() is good  # the hung read is still the one in flight: no second one
    assert source.round_trips == hung
    clock.now += 6  # past the read deadline: given up on, a new read starts
    assert source.table() is good
    assert source.round_trips == hung + 1
    clock.now += 3600  # and with nothing recent enough left, a quick 503
    started = time.monotonic()
    with pytest.raises(IndicatorsUnavailable):
        source.table()
    assert time.monotonic() - started < 1.5


def test_serving_settings_reach_the_source(indicators_engine: Engine) -> None:
    settings = Settings(cache_ttl_seconds=5, indicators_max_staleness_seconds=7,
                        indicators_wait_seconds=0.5, connect_timeout_seconds=2,
                        statement_timeout_ms=3000)
    source = IndicatorSource.for_serving(indicators_engine, settings)
    assert (source._ttl, source._max_staleness, source._wait, source._read_deadline) == (5, 7, 0.5, 8)


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
    assert len(fetch_indicators(reader)) == 26
    # A database restart, as the pooled connection sees it: its server process is gone.
    admin = make_engine(Settings(database_url=pg_url))
    with admin.connect() as conn:
        killed = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                                   "AND application_name = 'chaos' AND backend_type = 'client backend'"))
        assert killed.scalar_one() >= 1
    admin.dispose()
    assert len(fetch_indicators(reader)) == 26  # the pool's pre-ping replaced the dead connection
    reader.dispose()
