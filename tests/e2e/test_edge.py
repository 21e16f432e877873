"""The connection edge on the real server: slow, oversized and careless clients get a clean
answer (or a bounded wait), and the others keep being served meanwhile."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pandas as pd
import pytest
import requests
from conftest import request_rows
from prometheus_client.parser import text_string_to_metric_families

from chaos_pyfunc.http import metrics

from .conftest import json_body, predictions, running_server

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 2.0  # seconds; the production default is 10
HALF_HEADERS = 300


@pytest.fixture(scope="module")
def edge_server(indicators_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("edge")
    env = {"CHAOS_DATABASE_URL": indicators_pg_url, "CHAOS_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)}
    with running_server(env, workdir, workdir / "server.log") as url:
        yield url


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or 30 s)."""
    sock.settimeout(30)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_half_sent_request_heads_are_closed_while_others_are_served(edge_server: str,
                                                                     customers: pd.DataFrame) -> None:
    host, port = address(edge_server)
    idle = []
    for _ in range(HALF_HEADERS):
        sock = socket.create_connection((host, port))
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-")
        idle.append(sock)
    rows = request_rows(customers, 5, seed=51)
    served, slowest = 0, 0.0
    started = time.monotonic()
    while time.monotonic() - started < HEADER_TIMEOUT:  # while the slow clients hold their sockets
        sent = time.monotonic()
        served += len(predictions(requests.post(f"{edge_server}/invocations",
                                                json=json_body(rows, "dataframe_split"), timeout=30)))
        slowest = max(slowest, time.monotonic() - sent)
    print(f"{served // 5} requests served during the half-header flood, "
          f"the slowest in {slowest * 1e3:.0f} ms")
    assert served >= 5
    deadline = started + 3 * HEADER_TIMEOUT + 5  # a 3x margin over the bound, and the setup's seconds
    closed = 0
    for sock in idle:
        sock.settimeout(max(deadline - time.monotonic(), 0.1))
        answer = read_answer(sock)  # b"" at EOF; raises TimeoutError if still open at the deadline
        assert answer.startswith(b"HTTP/1.1 408 ") and b"REQUEST_TIMEOUT" in answer, answer[:200]
        closed += 1
        sock.close()
    assert closed == HALF_HEADERS


def test_a_silent_connection_is_closed_without_an_answer(edge_server: str) -> None:
    with socket.create_connection(address(edge_server)) as sock:
        assert read_answer(sock) == b""


def test_an_oversized_request_head_gets_a_431_and_its_message(edge_server: str) -> None:
    with socket.create_connection(address(edge_server)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        answer = read_answer(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), head
    assert json.loads(body) == {"error_code": "REQUEST_LIMIT_EXCEEDED",
                                "message": "request head larger than 16384 bytes"}


def test_a_malformed_request_gets_a_json_400(edge_server: str) -> None:
    with socket.create_connection(address(edge_server)) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        head, _, body = read_answer(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error_code"] == "BAD_REQUEST"


def test_a_client_that_sends_its_whole_oversized_body_first_reads_the_413(edge_server: str) -> None:
    """Python's http.client sends all 50 MB, then reads: the early 413 must still reach it."""
    host, port = address(edge_server)
    connection = http.client.HTTPConnection(host, port, timeout=60)
    body = b'{"dataframe_records": [' + b" " * (50 * 1024 * 1024) + b"]}"
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 413
    assert json.loads(answer.read())["message"].startswith("body larger than")
    connection.close()


def test_idle_keep_alive_connections_are_closed(edge_server: str) -> None:
    with socket.create_connection(address(edge_server)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_answer(sock)  # returns once the server closes the idle connection
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_the_server_still_serves_after_all_that(edge_server: str, customers: pd.DataFrame) -> None:
    threads = [threading.Thread(target=lambda: requests.get(f"{edge_server}/ping", timeout=30))
               for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    body = json_body(request_rows(customers, 2, seed=52), "dataframe_split")
    assert len(predictions(requests.post(f"{edge_server}/invocations", json=body, timeout=30))) == 2


def refusals(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {s.labels["reason"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "chaos_refusals_total"}


def test_the_edges_refusals_are_counted(edge_server: str) -> None:
    """The 408 and the 431 answered on the connection itself, which the gateway never sees."""
    before = refusals(edge_server)
    with socket.create_connection(address(edge_server)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 431 ")
    with socket.create_connection(address(edge_server)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 408 ")
    after = refusals(edge_server)
    for reason in (metrics.HEADER_TOO_LARGE, metrics.HEADER_TIMEOUT):
        assert after.get(reason, 0) == before.get(reason, 0) + 1, (reason, before, after)
