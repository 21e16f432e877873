"""Overload and slowness at the gateway, with a database that hangs: a request waits at most the
request timeout (504), past max_in_flight requests new ones get 503 at once, the slot of a timed
out request is held until its work is really over, and everything heals once the database
answers again. Plus the size and row limits (413) and the empty request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy.engine import make_url

from .conftest import MODEL_DIR, TcpProxy, error_message, running_server

pytestmark = pytest.mark.e2e

EXAMPLE = json.loads((MODEL_DIR / "serving_input_example.json").read_text())
REQUEST_TIMEOUT, INDICATORS_WAIT, MAX_IN_FLIGHT = 1.0, 3.0, 2
MAX_ROWS, MAX_BODY = 100, 64 * 1024


@pytest.fixture(scope="module")
def server(pg_proxy: TcpProxy, indicators_pg_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("overload")
    url = make_url(indicators_pg_url).set(port=pg_proxy.port).render_as_string(hide_password=False)
    env = {"CHAOS_DATABASE_URL": url, "CHAOS_CACHE_TTL_SECONDS": "0",
           "CHAOS_INDICATORS_MAX_STALENESS_SECONDS": "0", "CHAOS_CONNECT_TIMEOUT_SECONDS": "10",
           "CHAOS_INDICATORS_WAIT_SECONDS": str(INDICATORS_WAIT),
           "CHAOS_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
           "CHAOS_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT), "CHAOS_MAX_ROWS": str(MAX_ROWS),
           "CHAOS_MAX_BODY_BYTES": str(MAX_BODY)}
    with running_server(env, workdir, workdir / "server.log") as base_url:
        yield base_url


def post(base_url: str, body: object | bytes, **headers: str) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{base_url}/invocations", data=data, timeout=30,
                         headers={"Content-Type": "application/json", **headers})


def timed(base_url: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = post(base_url, EXAMPLE)
    return response, time.monotonic() - started


def test_a_hanging_database_means_504_then_503_busy_then_healing(server: str, pg_proxy: TcpProxy) -> None:
    assert post(server, EXAMPLE).status_code == 200
    pg_proxy.stop()
    pg_proxy.start(blackhole=True)
    try:
        with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
            slow = [pool.submit(timed, server) for _ in range(MAX_IN_FLIGHT)]
            time.sleep(0.3)
            busy, busy_elapsed = timed(server)  # both slots taken
            answers = [future.result() for future in slow]
        for response, elapsed in answers:
            assert error_message(response, 504) == "the request took too long; retry later"
            assert response.headers["retry-after"] == "1"
            assert REQUEST_TIMEOUT <= elapsed < REQUEST_TIMEOUT + 1
        assert error_message(busy, 503) == "the server is busy; retry in a second"
        assert busy_elapsed < 0.5
        # The two timed-out requests still wait for the database (up to 3 s): slots still taken.
        assert timed(server)[0].status_code == 503
        time.sleep(INDICATORS_WAIT)
        response, elapsed = timed(server)  # slots free again; the database still hangs
        assert response.status_code == 504
    finally:
        pg_proxy.stop()
        pg_proxy.start()
    deadline = time.monotonic() + 15
    while (status := post(server, EXAMPLE).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: str) -> None:
    response = post(server, b"x" * (MAX_BODY + 1))
    assert error_message(response, 413) == f"body larger than {MAX_BODY} bytes; send fewer rows per request"
    assert response.headers["connection"] == "close"


def test_a_chunked_body_over_the_limit_is_refused_too(server: str) -> None:
    chunks = (b"x" * 8192 for _ in range(MAX_BODY // 8192 + 2))  # no Content-Length: chunked
    response = requests.post(f"{server}/invocations", data=chunks, timeout=30,
                             headers={"Content-Type": "application/json"})
    assert error_message(response, 413).startswith("body larger than")


def test_too_many_rows_are_refused_naming_the_limit(server: str) -> None:
    split = EXAMPLE["dataframe_split"]
    body = {"dataframe_split": {"columns": split["columns"], "data": split["data"] * 34}}  # 102 rows
    assert error_message(post(server, body), 413) == f"102 rows: at most {MAX_ROWS} per request"
    body["dataframe_split"]["data"] = body["dataframe_split"]["data"][:MAX_ROWS]
    assert len(post(server, body).json()["predictions"]) == MAX_ROWS


def test_no_rows_get_no_predictions(server: str) -> None:
    body = {"dataframe_split": {"columns": EXAMPLE["dataframe_split"]["columns"], "data": []}}
    response = post(server, body)
    assert response.status_code == 200 and response.json() == {"predictions": []}
