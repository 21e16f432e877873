"""Overload and slowness at the gateway, with a database that hangs: a request waits at most the
request timeout (504), past max_in_flight requests new ones get 503 at once, the slot of a timed
out request is held until its work is really over, and everything heals once the database
answers again. Plus the size and row limits (413) and the empty request."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy.engine import make_url
from support import http
from support.raw_http import announce_body

from .conftest import MODEL_DIR, TcpProxy, error_message, running_server

pytestmark = pytest.mark.e2e

EXAMPLE = json.loads((MODEL_DIR / "serving_input_example.json").read_text())
# A request waits for the hanging database up to INDICATORS_WAIT, and keeps its slot that long,
# even after its 504 at REQUEST_TIMEOUT: the margins between the two leave room for a slow machine.
REQUEST_TIMEOUT, INDICATORS_WAIT, MAX_IN_FLIGHT = 2.0, 8.0, 2
MAX_ROWS, MAX_BODY = 100, 64 * 1024


@pytest.fixture(scope="module")
def server(pg_proxy: TcpProxy, indicators_pg_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("overload")
    url = make_url(indicators_pg_url).set(port=pg_proxy.port).render_as_string(hide_password=False)
    env = {"CHAOS_DATABASE_URL": url, "CHAOS_CACHE_TTL_SECONDS": "0",
           "CHAOS_INDICATORS_MAX_STALENESS_SECONDS": "0", "CHAOS_CONNECT_TIMEOUT_SECONDS": "30",
           "CHAOS_INDICATORS_WAIT_SECONDS": str(INDICATORS_WAIT),
           "CHAOS_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
           "CHAOS_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT), "CHAOS_MAX_ROWS": str(MAX_ROWS),
           "CHAOS_MAX_BODY_BYTES": str(MAX_BODY)}
    with running_server(env, workdir, workdir / "server.log") as base_url:
        yield base_url


def post(base_url: str, body: object | bytes, **headers: str) -> requests.Response:
    return http.post(base_url, body, headers=headers, timeout=60)


@dataclass(frozen=True)
class Timed:
    response: requests.Response
    started: float
    ended: float

    @property
    def status(self) -> int:
        return self.response.status_code


def timed(base_url: str) -> Timed:
    started = time.monotonic()
    response = post(base_url, EXAMPLE)
    return Timed(response, started, time.monotonic())


def poll_until(base_url: str, done: Callable[[Timed], bool], within: float) -> Timed:
    """POST again and again (503 busy answers cost nothing) until ``done``; fails past ``within``."""
    deadline = time.monotonic() + within
    while not done(answer := timed(base_url)):
        assert time.monotonic() < deadline, f"still {answer.status} after {within:.0f} s"
        time.sleep(0.2)
    return answer


def test_a_hanging_database_means_504_then_503_busy_then_healing(server: str, pg_proxy: TcpProxy) -> None:
    assert post(server, EXAMPLE).status_code == 200
    pg_proxy.stop()
    pg_proxy.start(blackhole=True)
    try:
        # One more request than there are slots, all at once: whichever comes last finds both
        # slots taken, whatever order they arrive in.
        with ThreadPoolExecutor(MAX_IN_FLIGHT + 1) as pool:
            answers = [f.result() for f in [pool.submit(timed, server) for _ in range(MAX_IN_FLIGHT + 1)]]
        busy = [a for a in answers if a.status == 503]
        slow = [a for a in answers if a.status != 503]
        assert len(busy) == 1 and len(slow) == MAX_IN_FLIGHT, [a.status for a in answers]
        assert error_message(busy[0].response, 503) == "the server is busy; retry in a second"
        assert busy[0].response.headers["retry-after"] == "1"
        # Shed at once: answered while the others were still waiting for their timeout.
        assert busy[0].ended < min(a.ended for a in slow)
        for answer in slow:
            assert error_message(answer.response, 504) == "the request took too long; retry later"
            assert answer.response.headers["retry-after"] == "1"
            assert REQUEST_TIMEOUT <= answer.ended - answer.started < 3 * REQUEST_TIMEOUT
        # The timed-out requests still wait for the database (up to INDICATORS_WAIT after they
        # came in): their slots are still taken.
        assert timed(server).status == 503
        # Once their work is over the slots are free again; the database still hangs: a 504.
        assert poll_until(server, lambda a: a.status != 503, within=3 * INDICATORS_WAIT).status == 504
    finally:
        pg_proxy.stop()
        pg_proxy.start()
    # The database answers again: healed, without a restart.
    poll_until(server, lambda a: a.status == 200, within=3 * (REQUEST_TIMEOUT + INDICATORS_WAIT))


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: str) -> None:
    response = post(server, b"x" * (MAX_BODY + 1))
    assert error_message(response, 413) == f"body larger than {MAX_BODY} bytes; send fewer rows per request"
    assert response.headers["connection"] == "close"


def test_an_announced_body_over_the_limit_is_refused_before_it_arrives(server: str) -> None:
    answer = announce_body(server, "/invocations", {"Content-Type": "application/json",
                                                    "Content-Length": str(MAX_BODY + 1)})
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert json.loads(answer.body)["message"] == (
        f"body larger than {MAX_BODY} bytes; send fewer rows per request")


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(server: str) -> None:
    """Chunks past the limit, then nothing more (no closing chunk): the answer comes anyway."""
    chunk = b"x" * 8192
    sent = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (MAX_BODY // len(chunk) + 1)
    answer = announce_body(server, "/invocations", {"Content-Type": "application/json",
                                                    "Transfer-Encoding": "chunked"}, sent)
    assert answer.status == 413
    assert json.loads(answer.body)["message"].startswith("body larger than")


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
