"""SIGTERM while requests are in flight, for the process and the container tests alike.

Requests are made slow by the database, not by the CPU: the server reads socio_eco through a
proxy that hangs, with no cache, so every request waits ``indicators_wait_seconds`` for the
read, then is scored on the last good indicators (200). Their length is then a setting, the
same on a fast machine and on a loaded one, and "in flight at SIGTERM" can be told apart from
"sent about when SIGTERM came" with a wide margin.
"""

from __future__ import annotations

from dataclasses import dataclass

from .load import Attempt

# Every request lasts this long (the wait for the hanging read), then is answered 200.
REQUEST_SECONDS = 4.0
# A request sent at least this long before SIGTERM, and not answered by then, was in the
# server's hands: a loaded machine delays a request on its way by far less than this.
IN_HAND_AFTER_SECONDS = 1.0

HANGING_READS_ENV = {
    "CHAOS_CACHE_TTL_SECONDS": "0",
    "CHAOS_INDICATORS_WAIT_SECONDS": str(REQUEST_SECONDS),
    "CHAOS_INDICATORS_MAX_STALENESS_SECONDS": "3600",
    # The read hangs longer than any request waits for it: none sees it fail.
    "CHAOS_CONNECT_TIMEOUT_SECONDS": "60",
}


@dataclass(frozen=True)
class AtSigterm:
    in_flight: list[Attempt]  # sent well before SIGTERM, unanswered when it came
    around: list[Attempt]     # sent less than IN_HAND_AFTER_SECONDS before SIGTERM, or after it


def classify(attempts: list[Attempt], signalled: float) -> AtSigterm:
    in_flight = [a for a in attempts if a.started < signalled - IN_HAND_AFTER_SECONDS < signalled < a.ended]
    around = [a for a in attempts if a.started >= signalled - IN_HAND_AFTER_SECONDS]
    return AtSigterm(in_flight, around)
