"""Read a server's log only after an event that says the lines the test reads are written.

The access lines are not written by the request: the observer's thread writes what is queued
every ``INTERVAL_SECONDS`` (chaos_pyfunc/http/observer.py), after the answers went out. A test that
reads the log the moment its last answer arrives sees some lines missing on a busy machine. So
every read of a server's log in the tests goes through one of these:

- ``once_logged``: the log once a text is in it (``count`` times, if asked);
- ``flushed``: a GET /ping with an id of the test's own, then the log once that request's line
  is in it. The observer writes its lines in the order the requests ended, so every request
  answered before it is in the log too: what a test needs before asserting that something is
  *not* in the log;
- ``exited_log``: the log of a server that has exited, which holds all it will ever hold.

The metrics need none of this: a scrape of /metrics takes in what is queued before it answers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import requests

from chaos_pyfunc.http.observer import INTERVAL_SECONDS

from .server import EXITED

# A server's log: its file, or what reads it (`podman logs` for a container's).
Log = Path | Callable[[], str]

# A bound, not a pause: each helper returns as soon as the line is there. 50 flush periods, so a
# machine busy enough to delay the observer's thread by seconds still passes.
WITHIN_SECONDS = 50 * INTERVAL_SECONDS
assert WITHIN_SECONDS >= 3 * INTERVAL_SECONDS


def _reader(log: Log) -> Callable[[], str]:
    return (lambda: log.read_text(errors="replace")) if isinstance(log, Path) else log


def once_logged(log: Log, text: str, within: float = WITHIN_SECONDS, count: int = 1) -> str:
    """The log's text as soon as it holds ``text`` at least ``count`` times (or as it is after
    ``within`` seconds, for the caller's assertion to show)."""
    read = _reader(log)
    deadline = time.monotonic() + within
    found = read()
    while found.count(text) < count and time.monotonic() < deadline:
        time.sleep(INTERVAL_SECONDS / 4)
        found = read()
    return found


def flushed(log: Log, base_url: str, within: float = WITHIN_SECONDS,
            **request_options: object) -> str:
    """The log once every request answered so far is in it: a GET /ping of the test's own, its
    line waited for. Fails when that line never comes."""
    marker = f"flush-{uuid.uuid4().hex}"
    answer = requests.get(f"{base_url}/ping", headers={"X-Request-ID": marker}, timeout=10,
                          **request_options)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text[:500]
    found = once_logged(log, f'"request_id": "{marker}"', within)
    assert marker in found, f"the server never logged the request {marker} within {within} s"
    return found


def exited_log(log: Path) -> str:
    """The whole log of a server started by ``support.server.launch`` that has exited."""
    assert log in EXITED, f"{log} is read before its server exited: it may not hold every line yet"
    return log.read_text(errors="replace")
