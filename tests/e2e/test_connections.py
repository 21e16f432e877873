"""Connection hygiene under load: 2,000 concurrent requests that each read socio_eco (cache off)
open no more than the pool's bound of PostgreSQL connections, leak none, and old ones are
recycled. (A leak of one connection in a few thousand reads would pass the pool's bound here.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import create_engine, text
from support.load import median
from support.logs import flushed
from support.server import REPO, Served, chaos_server

pytestmark = pytest.mark.e2e

REQUESTS = 2_000
CLIENTS = 8
POOL_SIZE = 2  # the default: at most 2 * POOL_SIZE connections
BODY = (REPO / "model" / "serving_input_example.json").read_bytes()


@pytest.fixture(scope="module")
def server(module_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    env = {"CHAOS_DATABASE_URL": module_pg_url, "CHAOS_CACHE_TTL_SECONDS": "0",
           "CHAOS_POOL_SIZE": str(POOL_SIZE), "CHAOS_POOL_RECYCLE_SECONDS": "2"}
    with chaos_server(env, tmp_path_factory.mktemp("connections")) as served:
        yield served


def backends(admin_url: str) -> list[tuple[int, str]]:
    """(pid, state) of the server's connections to its database."""
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'chaos' AND pid <> pg_backend_pid()"))]
    finally:
        engine.dispose()


def hammer(url: str, total: int, clients: int) -> list[int]:
    """``total`` POSTs from ``clients`` keep-alive sessions, as fast as the server answers."""
    statuses: list[int] = []
    lock = threading.Lock()
    left = iter(range(total))

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                if next(left, None) is None:
                    return
            status = session.post(f"{url}/invocations", data=BODY, timeout=30,
                                  headers={"Content-Type": "application/json"}).status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_2k_concurrent_requests_stay_within_the_pool_and_leak_nothing(
        server: Served, module_pg_url: str) -> None:
    counts: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            counts.append(len(backends(module_pg_url)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        statuses = hammer(server.url, REQUESTS, CLIENTS)
    finally:
        done.set()
        sampler.join()
    elapsed = time.monotonic() - started
    after = backends(module_pg_url)
    print(f"{REQUESTS} requests in {elapsed:.1f} s from {CLIENTS} clients; chaos connections "
          f"sampled {len(counts)} times: max {max(counts)}, median {median(counts)}; "
          f"after: {len(after)} ({', '.join(state for _, state in after)})")
    assert statuses.count(200) == REQUESTS
    assert max(counts) <= 2 * POOL_SIZE
    assert 1 <= len(after) <= 2 * POOL_SIZE
    assert all(state == "idle" for _, state in after)


def test_old_connections_are_recycled(server: Served, module_pg_url: str) -> None:
    requests.post(f"{server.url}/invocations", data=BODY, timeout=30,
                  headers={"Content-Type": "application/json"}).raise_for_status()
    before = {pid for pid, _ in backends(module_pg_url)}
    time.sleep(2.5)  # past CHAOS_POOL_RECYCLE_SECONDS
    for _ in range(3):
        requests.post(f"{server.url}/invocations", data=BODY, timeout=30,
                      headers={"Content-Type": "application/json"}).raise_for_status()
    now = {pid for pid, _ in backends(module_pg_url)}
    assert before and now and not before & now, (before, now)


def test_the_server_log_names_no_connection_error(server: Served) -> None:
    log = flushed(server.log, server.url)
    assert "reading socio_eco failed" not in log
