"""SIGTERM during load: every request the server had in hand is answered 200 before it exits;
it stops accepting new ones, and the whole exit takes less than its budget after SIGTERM,
``shutdown_timeout_seconds`` (chaos_pyfunc/http/shutdown.py), which fits the pod's grace period
(k8s/base/deployment.yaml: preStop sleep, then SIGTERM, then terminationGracePeriodSeconds). A
drain that would outlast its share of the budget is cut there, and the exit still keeps it.

The requests are slow because the database hangs (support/drain.py), so which ones were in
flight does not depend on the machine's speed.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from support.drain import HANGING_READS_ENV, IN_HAND_AFTER_SECONDS, REQUEST_SECONDS, classify
from support.load import CONNECTION, Attempt, BusyClients
from support.logs import once_logged
from support.server import MODEL_DIR, Served, chaos_server
from support.tcp_proxy import TcpProxy

from chaos_pyfunc.config import SHUTDOWN_RESERVE_SECONDS, Settings

pytestmark = pytest.mark.e2e

CLIENTS = 6
BODY = (MODEL_DIR / "serving_input_example.json").read_bytes()
# A budget whose drain share (1 s) is shorter than the requests in flight need (REQUEST_SECONDS).
SHORT_BUDGET = SHUTDOWN_RESERVE_SECONDS + 1.0


def start(pg_proxy: TcpProxy, pg_url: str, workdir: Path, env: Mapping[str, str]) -> Iterator[Served]:
    url = make_url(pg_url).set(port=pg_proxy.port).render_as_string(hide_password=False)
    with chaos_server({"CHAOS_DATABASE_URL": url, **HANGING_READS_ENV, **env}, workdir) as served:
        yield served


@pytest.fixture
def served(pg_proxy: TcpProxy, module_pg_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from start(pg_proxy, module_pg_url, tmp_path_factory.mktemp("shutdown"), {})


@pytest.fixture
def short_budget(pg_proxy: TcpProxy, module_pg_url: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from start(pg_proxy, module_pg_url, tmp_path_factory.mktemp("short_budget"),
                     {"CHAOS_SHUTDOWN_TIMEOUT_SECONDS": str(SHORT_BUDGET)})


def sigterm_under_load(served: Served, pg_proxy: TcpProxy) -> tuple[list[Attempt], float, float, int]:
    """SIGTERM while CLIENTS requests are in the server's hands: the attempts, when the signal
    was sent and when the process had exited, and its exit code."""
    BusyClients(f"{served.url}/invocations", BODY, 1).start().stop()  # a good read first
    with pg_proxy.hanging():
        accepted = pg_proxy.accepted
        clients = BusyClients(f"{served.url}/invocations", BODY, CLIENTS).start()
        # The server reaching for the database means requests are in its hands.
        assert pg_proxy.wait_accepted(accepted + 1, timeout=30), "no request reached the server"
        time.sleep(IN_HAND_AFTER_SECONDS + 0.5)  # well inside the first requests' REQUEST_SECONDS
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(timeout=60)
        exited = time.monotonic()
        attempts = clients.stop()
    return attempts, signalled, exited, code


def test_sigterm_under_load_loses_no_request_in_flight(served: Served, pg_proxy: TcpProxy) -> None:
    attempts, signalled, exited, code = sigterm_under_load(served, pg_proxy)
    groups = classify(attempts, signalled)
    drain = exited - signalled
    print(f"{len(attempts)} requests; at SIGTERM {len(groups.in_flight)} in flight, answered "
          f"{sorted({a.status for a in groups.in_flight})}; exited {drain:.2f} s after SIGTERM "
          f"with code {code}; {len(groups.around)} sent around or after it")
    assert len(groups.in_flight) >= 2, "the load put too few requests in flight to prove anything"
    assert all(a.status == 200 for a in groups.in_flight), groups.in_flight
    # uvicorn notices the signal at its next tick: a request sent just before or after SIGTERM
    # may still be taken, and is then answered in full before the exit. Any other one finds
    # the port closed. Nothing else: no 5xx, no timeout, no connection cut mid-answer.
    assert all(a.error == CONNECTION or (a.status == 200 and a.ended <= exited)
               for a in groups.around), [(a.status, a.error) for a in groups.around]
    assert all(a.status == 200 for a in attempts if a not in groups.around)
    # uvicorn finishes its shutdown, then re-raises the signal: "killed by SIGTERM" is its clean exit.
    assert code == -signal.SIGTERM
    # The whole exit, signal to process gone, within the budget; the drain's share of it (all but
    # the reserve for writing out what is queued) leaves a request of REQUEST_SECONDS room to spare.
    budget = Settings().shutdown_timeout_seconds
    assert drain < budget, drain
    assert budget - SHUTDOWN_RESERVE_SECONDS >= 3 * REQUEST_SECONDS
    log = once_logged(served.log, "Finished server process")
    assert log.index("Shutting down") < log.index("Application shutdown complete") < log.index(
        "Finished server process")


def test_a_drain_outlasting_its_share_is_cut_there_and_the_exit_keeps_the_budget(
        short_budget: Served, pg_proxy: TcpProxy) -> None:
    attempts, signalled, exited, code = sigterm_under_load(short_budget, pg_proxy)
    groups = classify(attempts, signalled)
    took = exited - signalled
    cut = max(a.ended for a in groups.in_flight) - signalled if groups.in_flight else float("nan")
    statuses = sorted({a.status for a in groups.in_flight})
    print(f"budget {SHORT_BUDGET:g} s (drain {SHORT_BUDGET - SHUTDOWN_RESERVE_SECONDS:g} s): the "
          f"{len(groups.in_flight)} requests in flight answered {statuses} by {cut:.2f} s after SIGTERM; "
          f"exited {took:.2f} s after it with code {code}")
    assert len(groups.in_flight) >= 2, "the load put too few requests in flight to prove anything"
    # Cut at the drain's end, before the REQUEST_SECONDS they needed: a JSON 503 to retry elsewhere,
    # not uvicorn's bare 500.
    assert {a.status for a in groups.in_flight} == {503}, groups.in_flight
    assert took <= SHORT_BUDGET, took
    assert code == -signal.SIGTERM
    assert "timeout graceful shutdown exceeded" in once_logged(short_budget.log,
                                                               "timeout graceful shutdown exceeded")
