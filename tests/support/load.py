"""A steady-rate HTTP load generator for the soak, outage and shutdown runs.

Open loop: request i is due at ``start + i / rate`` whatever happened to the others, so a slow
server does not slow the load down (wrk's closed loop would, and hide the stall). Latency counts
from the due time, so queueing in the client is not hidden either. Every request is recorded:
when it was due, how long it took, its status or the error that ended it.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import requests

TIMEOUT = "timeout"
CONNECTION = "connection error"


def post(session: requests.Session, url: str, body: bytes, content_type: str,
         timeout: float) -> tuple[int | None, str | None]:
    """The status of one POST, or what ended it: TIMEOUT, CONNECTION or an exception's name."""
    try:
        return session.post(url, data=body, headers={"Content-Type": content_type},
                            timeout=timeout).status_code, None
    except requests.Timeout:
        return None, TIMEOUT
    except requests.ConnectionError:
        return None, CONNECTION
    except requests.RequestException as exc:
        return None, type(exc).__name__


@dataclass(frozen=True)
class Outcome:
    due: float        # seconds since the run started
    latency: float    # seconds from due to answer (or to the error)
    status: int | None
    error: str | None = None  # TIMEOUT, CONNECTION or another exception's class name


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    def count(self, low: int, high: int) -> int:
        return sum(1 for o in self.outcomes if o.status is not None and low <= o.status < high)

    @property
    def errors(self) -> Counter[str]:
        return Counter(o.error for o in self.outcomes if o.error is not None)

    def percentile(self, q: float, ok_only: bool = True) -> float:
        latencies = sorted(o.latency for o in self.outcomes
                           if not ok_only or (o.status is not None and o.status < 300))
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))]

    def summary(self) -> dict[str, object]:
        return {
            "sent": self.sent, "2xx": self.count(200, 300), "4xx": self.count(400, 500),
            "5xx": self.count(500, 600), "timeouts": self.errors.get(TIMEOUT, 0),
            "connection_errors": self.errors.get(CONNECTION, 0),
            "other_errors": sum(n for e, n in self.errors.items() if e not in (TIMEOUT, CONNECTION)),
            "statuses": dict(sorted(Counter(o.status for o in self.outcomes
                                            if o.status is not None).items())),
            "p50_ms": round(self.percentile(50) * 1e3, 2),
            "p99_ms": round(self.percentile(99) * 1e3, 2),
            "max_ms": round(max((o.latency for o in self.outcomes), default=float("nan")) * 1e3, 2),
        }

    def between(self, start: float, end: float) -> Report:
        """The requests due in [start, end)."""
        return Report([o for o in self.outcomes if start <= o.due < end])


def format_summary(title: str, summary: dict[str, object]) -> str:
    return f"{title}: " + ", ".join(f"{k} {v}" for k, v in summary.items())


class SteadyLoad:
    """POST ``body`` to ``url`` at ``rate`` requests per second from ``clients`` threads, until
    stopped or, with ``total``, until that many have been sent."""

    def __init__(self, url: str, body: bytes, rate: float, timeout: float, clients: int = 16,
                 content_type: str = "application/json", total: int | None = None) -> None:
        self.url = url
        self.body = body
        self.rate = rate
        self.total = total
        self.timeout = timeout
        self.clients = clients
        self.headers = {"Content-Type": content_type}
        self.report = Report()
        self._tickets = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0.0

    def start(self) -> SteadyLoad:
        self.started = time.monotonic()
        self._threads = [threading.Thread(target=self._client, daemon=True, name=f"load-{i}")
                         for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> Report:
        """Stop issuing requests, wait for those in flight, and return the report."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        self.report.outcomes.sort(key=lambda o: o.due)
        return self.report

    def run(self, seconds: float) -> Report:
        self.start()
        time.sleep(seconds)
        return self.stop()

    def answered_since(self, since: float) -> int:
        """Requests answered so far among those due ``since`` seconds into the run or later."""
        with self._lock:
            return sum(1 for o in self.report.outcomes if o.due >= since)

    def wait(self, timeout: float) -> bool:
        """Wait for ``total`` requests to be sent and answered; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            with self._lock:
                ticket = next(self._tickets)
            if self.total is not None and ticket >= self.total:
                return
            due = self.started + ticket / self.rate
            pause = due - time.monotonic()
            if pause > 0 and self._stop.wait(pause):
                return
            self._record(session, due)

    def _record(self, session: requests.Session, due: float) -> None:
        status, error = post(session, self.url, self.body, self.headers["Content-Type"], self.timeout)
        outcome = Outcome(due - self.started, time.monotonic() - due, status, error)
        with self._lock:
            self.report.outcomes.append(outcome)


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


@dataclass(frozen=True)
class Attempt:
    started: float  # monotonic
    ended: float
    status: int | None
    error: str | None


class BusyClients:
    """``clients`` threads that each POST ``body`` again as soon as the previous answer is in:
    as many requests in flight as clients, at every moment (for the shutdown tests)."""

    def __init__(self, url: str, body: bytes, clients: int, timeout: float = 60) -> None:
        self.url, self.body, self.timeout = url, body, timeout
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> BusyClients:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Attempt]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        return sorted(self.attempts, key=lambda a: a.started)

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started = time.monotonic()
            status, error = post(session, self.url, self.body, "application/json", self.timeout)
            if error == CONNECTION:
                session = requests.Session()
                time.sleep(0.05)  # the server is gone: do not spin
            with self._lock:
                self.attempts.append(Attempt(started, time.monotonic(), status, error))
