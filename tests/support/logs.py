"""Read a running server's log once it holds a line: the access lines are written by the
observer's thread every 0.2 s (chaos_pyfunc/observer.py), not by the request itself."""

from __future__ import annotations

import time
from collections.abc import Callable

WITHIN_SECONDS = 5.0


def once_logged(read: Callable[[], str], text: str, within: float = WITHIN_SECONDS) -> str:
    """The log as ``read`` returns it, as soon as it holds ``text`` (or as it is after ``within``
    seconds, for the caller's assertion to show)."""
    deadline = time.monotonic() + within
    log = read()
    while text not in log and time.monotonic() < deadline:
        time.sleep(0.1)
        log = read()
    return log
