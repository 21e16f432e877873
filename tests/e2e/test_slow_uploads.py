"""Slow uploads on the real server: 40 connections each sending a request head, then its body a
byte a second, never reaching its end. Each is answered 408 once the body deadline has passed,
and closed; none holds a scoring slot meanwhile, so a normal client is served all along."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support.server import MODEL_DIR

from chaos_pyfunc.http.edge import LINGER_SECONDS

from .conftest import running_server

pytestmark = pytest.mark.e2e

BODY_TIMEOUT = 2.0  # seconds; the production default is 20
MAX_IN_FLIGHT = 2  # fewer slots than slow clients by far: one held by a slow body would show
SLOW_CLIENTS = 40
BYTE_EVERY = 1.0  # seconds between two bytes of a slow body
BODY = (MODEL_DIR / "serving_input_example.json").read_bytes()


@pytest.fixture(scope="module")
def server(indicators_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("slow_uploads")
    env = {"CHAOS_DATABASE_URL": indicators_pg_url, "CHAOS_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
           "CHAOS_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT)}
    with running_server(env, workdir, workdir / "server.log") as url:
        yield url


@dataclass
class Trickle:
    """One slow upload: what it was answered, and when (seconds after its head was sent)."""

    answer: bytes = b""
    answered: float | None = None
    closed: float | None = None  # EOF or reset, after the answer or without one
    bytes_sent: int = 0


def trickle(url: str, path: str, within: float) -> Trickle:
    """POST ``path`` announcing BODY, then send it a byte every BYTE_EVERY seconds, never the last
    one, until the server closes the connection (or ``within`` seconds have passed)."""
    parts = urlsplit(url)
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n").encode()
    seen = Trickle()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head)
        started = time.monotonic()
        sock.settimeout(BYTE_EVERY)  # a read waits at most until the next byte is due
        while time.monotonic() - started < within:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(BODY[seen.bytes_sent:seen.bytes_sent + 1])
                except OSError:  # reset: closed
                    chunk = b""
                else:
                    seen.bytes_sent += 1
                    assert seen.bytes_sent < len(BODY), "the body was sent whole: no deadline came"
                    continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                seen.closed = time.monotonic() - started
                return seen
            if seen.answered is None:
                seen.answered = time.monotonic() - started
            seen.answer += chunk
    return seen


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def span(values: list[float]) -> str:
    return f"{min(values):.2f}..{max(values):.2f}" if values else "-"


def refusals(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {s.labels["reason"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "chaos_refusals_total"}


def test_slow_uploads_get_a_408_and_are_closed_while_a_normal_client_is_served(server: str) -> None:
    bound = BODY_TIMEOUT + LINGER_SECONDS  # from the head to the connection's close
    slow: list[Trickle] = []
    lock = threading.Lock()

    def upload() -> None:
        seen = trickle(server, "/invocations", within=3 * bound)
        with lock:
            slow.append(seen)

    threads = [threading.Thread(target=upload) for _ in range(SLOW_CLIENTS)]
    for thread in threads:
        thread.start()
    statuses: list[int] = []
    slowest = 0.0
    with requests.Session() as session:
        while any(thread.is_alive() for thread in threads):  # while the slow clients hold their sockets
            sent = time.monotonic()
            statuses.append(session.post(f"{server}/invocations", data=BODY, timeout=30,
                                         headers={"Content-Type": "application/json"}).status_code)
            slowest = max(slowest, time.monotonic() - sent)
    for thread in threads:
        thread.join()
    answered = [s.answered for s in slow if s.answered is not None]
    closed = [s.closed for s in slow if s.closed is not None]
    print(f"normal client: {statuses.count(200)}/{len(statuses)} answered 200 (slowest "
          f"{slowest * 1e3:.0f} ms) during {SLOW_CLIENTS} slow uploads; {len(answered)} of those "
          f"answered in {span(answered)} s, {len(closed)} closed in {span(closed)} s "
          f"(body deadline {BODY_TIMEOUT:g} s, bound {bound:g} s), after "
          f"{max(s.bytes_sent for s in slow)} bytes each at most")
    assert statuses and set(statuses) == {200}, statuses
    assert len(statuses) >= 5
    assert len(slow) == SLOW_CLIENTS
    for seen in slow:
        status, headers, body = parse(seen.answer)
        assert status == 408, seen.answer[:300]
        assert headers["connection"] == "close" and headers["content-type"] == "application/json"
        assert json.loads(body) == {"error_code": "REQUEST_TIMEOUT", "message":
                                    f"the request body was not complete within {BODY_TIMEOUT:g} s"}
        assert seen.answered is not None and seen.answered >= 0.95 * BODY_TIMEOUT  # a whole-body deadline
        assert seen.closed is not None and seen.closed <= bound, seen
    assert refusals(server).get("body_timeout") == SLOW_CLIENTS


def test_a_connection_answered_before_its_body_arrives_is_closed(server: str) -> None:
    """POST /model is answered 405 at once, body unread: a client still sending its body a byte at a
    time does not keep the connection (uvicorn would discard the bytes for as long as they come)."""
    seen = trickle(server, "/model", within=3 * LINGER_SECONDS)
    status, _, _ = parse(seen.answer)
    assert status == 405
    assert seen.closed is not None and seen.closed <= LINGER_SECONDS, seen
