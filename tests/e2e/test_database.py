"""The database under the real server: changes reach the predictions after the cache TTL, an
unreachable or hanging database is a quick 503 that heals by itself, and with no database
configured the embedded SQLite default is created and used."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import request_rows
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from support.server import free_port

from chaos_pyfunc.config import Settings
from chaos_pyfunc.db import INDICATORS

from .conftest import (
    TcpProxy,
    error_message,
    invoke,
    running_server,
    score,
    serve_command,
    server_env,
    with_date,
)

pytestmark = pytest.mark.e2e

CACHE_TTL_SECONDS = 1.0
PAST_TTL_SECONDS = CACHE_TTL_SECONDS + 0.6
TOLERANCE = 1e-9


def assert_close(got: list[float], expected: list[float]) -> None:
    assert len(got) == len(expected)
    diff = np.max(np.abs(np.asarray(got) - np.asarray(expected)), initial=0.0)
    assert diff < TOLERANCE, f"largest difference {diff}"


def assert_differ(got: list[float], other: list[float]) -> None:
    assert np.max(np.abs(np.asarray(got) - np.asarray(other))) > 1e-3, "the predictions did not change"


@pytest.fixture(scope="module")
def rows(customers: pd.DataFrame) -> pd.DataFrame:
    return request_rows(customers, 30, seed=5)


# ---------------------------------------------------------------- changes in socio_eco


@pytest.fixture(scope="module")
def cache_server(module_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("cache_server")
    # Once the TTL has passed, a request waits for the new read up to the indicators wait, and
    # would otherwise be served the old table: a wait no loaded machine's read outlasts.
    env = {"CHAOS_DATABASE_URL": module_pg_url, "CHAOS_CACHE_TTL_SECONDS": str(CACHE_TTL_SECONDS),
           "CHAOS_INDICATORS_WAIT_SECONDS": "30"}
    with running_server(env, workdir, workdir / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def sql(module_pg_url: str) -> Iterator[Engine]:
    """Direct SQL on the cache server's database, as an operator would run it."""
    engine = create_engine(module_pg_url)
    yield engine
    engine.dispose()


def month(sql: Engine, date: str) -> dict[str, float] | None:
    with sql.connect() as conn:
        row = conn.execute(text(f"SELECT {', '.join(INDICATORS)} FROM socio_eco WHERE date = :d"),
                           {"d": date}).mappings().first()
    return None if row is None else dict(row)


def put_month(sql: Engine, date: str, values: dict[str, float]) -> None:
    columns = ", ".join(INDICATORS)
    params = ", ".join(f":{c}" for c in INDICATORS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in INDICATORS)
    with sql.begin() as conn:
        conn.execute(
            text(f"INSERT INTO socio_eco (date, {columns}) VALUES (:date, {params}) "
                 f"ON CONFLICT (date) DO UPDATE SET {updates}"),
            {"date": date, **values},
        )


def test_an_updated_month_reaches_the_predictions_after_the_ttl(
    cache_server: str, sql: Engine, rows: pd.DataFrame
) -> None:
    november = with_date(rows, "2010-11-15")
    may_2008 = with_date(rows, "2008-05-15")  # same day of the month: only the indicators differ
    original = month(sql, "2010-11-30")
    may_values = month(sql, "2008-05-31")
    assert original is not None and may_values is not None
    before = score(cache_server, november)
    as_in_may = score(cache_server, may_2008)
    assert_differ(before, as_in_may)
    try:
        with sql.begin() as conn:
            conn.execute(text(
                "UPDATE socio_eco SET euribor_3m = :e, idx_consumer_confidence = :c, "
                "employment_variation_rate = :v, idx_consumer_price = :p, nb_employee = :n "
                "WHERE date = '2010-11-30'"),
                {"e": may_values["euribor_3m"], "c": may_values["idx_consumer_confidence"],
                 "v": may_values["employment_variation_rate"], "p": may_values["idx_consumer_price"],
                 "n": may_values["nb_employee"]},
            )
        time.sleep(PAST_TTL_SECONDS)
        assert_close(score(cache_server, november), as_in_may)
    finally:
        put_month(sql, "2010-11-30", original)
    time.sleep(PAST_TTL_SECONDS)
    assert_close(score(cache_server, november), before)


def test_a_deleted_month_falls_back_then_comes_back(
    cache_server: str, sql: Engine, rows: pd.DataFrame
) -> None:
    november = with_date(rows, "2010-11-15")
    october = with_date(rows, "2010-10-15")
    february = with_date(rows.head(3), "2011-02-15")  # 3 months after the latest month: scored
    original = month(sql, "2010-11-30")
    assert original is not None
    before = score(cache_server, november)
    as_in_october = score(cache_server, october)
    assert len(score(cache_server, february)) == 3
    try:
        with sql.begin() as conn:
            conn.execute(text("DELETE FROM socio_eco WHERE date = '2010-11-30'"))
        time.sleep(PAST_TTL_SECONDS)
        # November now takes October's indicators (the latest month before it) ...
        assert_close(score(cache_server, november), as_in_october)
        # ... and February is 4 months after the latest month: refused, naming the date.
        message = error_message(invoke(cache_server, february), 400)
        assert "date: no socio-economic indicators" in message
        assert message.endswith("rows 0, 1, 2; indicators cover 2008-05 to 2010-10")
    finally:
        put_month(sql, "2010-11-30", original)
    time.sleep(PAST_TTL_SECONDS)
    assert_close(score(cache_server, november), before)
    assert len(score(cache_server, february)) == 3


# ---------------------------------------------------------------- database away and back


@dataclass(frozen=True)
class ProxiedServer:
    url: str
    response_while_down: requests.Response
    elapsed_while_down: float


@pytest.fixture(scope="module")
def proxied(
    pg_proxy: TcpProxy, indicators_pg_url: str, rows: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxiedServer]:
    """A server reading indicators through the proxy, with no cache (every request reads) and
    nothing stale served: a database away is a 503.

    It is started while the proxy is down, asked once, then the proxy comes up.
    """
    workdir = tmp_path_factory.mktemp("proxied_server")
    url = make_url(indicators_pg_url).set(port=pg_proxy.port).render_as_string(hide_password=False)
    env = {"CHAOS_DATABASE_URL": url, "CHAOS_CACHE_TTL_SECONDS": "0",
           "CHAOS_INDICATORS_MAX_STALENESS_SECONDS": "0"}
    pg_proxy.stop()
    try:
        with running_server(env, workdir, workdir / "server.log") as base_url:
            started = time.monotonic()
            response = invoke(base_url, rows, timeout=30)
            elapsed = time.monotonic() - started
            pg_proxy.start()
            yield ProxiedServer(base_url, response, elapsed)
    finally:
        if not pg_proxy.running:
            pg_proxy.start()


def assert_unavailable(response: requests.Response, elapsed: float, proxy: TcpProxy) -> None:
    message = error_message(response, 503)
    assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "indicators are unavailable" in message
    assert "database" in message
    assert "127.0.0.1" not in message and f":{proxy.port}" not in message
    # It waits at most indicators_wait_seconds (1 s) for the database: 10 times that.
    assert elapsed < 10 * Settings().indicators_wait_seconds, f"the 503 took {elapsed:.1f} s"


def timed_invoke(base_url: str, rows: pd.DataFrame) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = invoke(base_url, rows, timeout=30)
    return response, time.monotonic() - started


# After a hang at connect, the next good read can take up to the connect timeout plus the 1 s
# retry pause: 3 times that.
HEALED_WITHIN_SECONDS = 3 * (Settings().connect_timeout_seconds + 1.0)


def wait_until_served(base_url: str, rows: pd.DataFrame,
                      within: float = HEALED_WITHIN_SECONDS) -> list[float]:
    deadline = time.monotonic() + within
    while True:
        response = invoke(base_url, rows, timeout=10)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert response.status_code == 200, f"still {response.status_code} after {within} s: {response.text}"
    return [p["appetence"] for p in response.json()["predictions"]]


def test_server_starts_while_the_database_is_down_then_serves(
    proxied: ProxiedServer, pg_proxy: TcpProxy, rows: pd.DataFrame, pg_server: str
) -> None:
    assert_unavailable(proxied.response_while_down, proxied.elapsed_while_down, pg_proxy)
    assert_close(wait_until_served(proxied.url, rows), score(pg_server, rows))


def test_database_down_is_a_quick_503_and_heals(
    proxied: ProxiedServer, pg_proxy: TcpProxy, rows: pd.DataFrame
) -> None:
    expected = wait_until_served(proxied.url, rows)
    pg_proxy.stop()
    try:
        for _ in range(3):  # again and again: no dead pooled connection, no stuck request
            assert_unavailable(*timed_invoke(proxied.url, rows), pg_proxy)
        assert requests.get(f"{proxied.url}/ping", timeout=5).status_code == 200
    finally:
        pg_proxy.start()
    assert_close(wait_until_served(proxied.url, rows), expected)


def test_database_hanging_at_connect_is_a_503_within_the_connect_timeout(
    proxied: ProxiedServer, pg_proxy: TcpProxy, rows: pd.DataFrame
) -> None:
    expected = wait_until_served(proxied.url, rows)
    pg_proxy.stop()
    pg_proxy.start(blackhole=True)
    try:
        assert_unavailable(*timed_invoke(proxied.url, rows), pg_proxy)
    finally:
        pg_proxy.stop()
        pg_proxy.start()
    assert_close(wait_until_served(proxied.url, rows), expected)


# ---------------------------------------------------------------- configuration


def test_an_invalid_setting_stops_the_server_naming_it(tmp_path: Path) -> None:
    """A negative TTL: the server exits at load, naming the setting, never echoing the password."""
    env = server_env({
        "CHAOS_CACHE_TTL_SECONDS": "-1",
        # pragma: allowlist nextline secret (a made-up password for a database that is not there)
        "CHAOS_DATABASE_URL": "postgresql+psycopg2://chaos:s3cret-pw@127.0.0.1:5432/nowhere",
    })
    done = subprocess.run(serve_command(free_port()), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False, start_new_session=True)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "cache_ttl_seconds is out of range: -1 (must be >= 0)" in output
    assert "s3cret-pw" not in output


# ---------------------------------------------------------------- the embedded default


def test_embedded_default_database(
    tmp_path: Path, rows: pd.DataFrame, pg_server: str
) -> None:
    november = with_date(rows, "2010-11-15")
    database = tmp_path / "var" / "chaos.db"
    assert not database.exists()
    with running_server({"CHAOS_DATABASE_URL": None}, tmp_path, tmp_path / "server.log") as base_url:
        got = score(base_url, november)
        message = error_message(invoke(base_url, with_date(rows, "2012-11-15")), 400)
        assert "date: no socio-economic indicators" in message
    assert database.is_file()
    with sqlite3.connect(database) as conn:
        months = conn.execute("SELECT count(*), min(date), max(date) FROM socio_eco").fetchone()
    assert months == (26, "2008-05-31", "2010-11-30")
    # The embedded seed holds the same public months as PostgreSQL: the same predictions.
    assert_close(got, score(pg_server, november))
