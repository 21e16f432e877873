"""The shutdown's one deadline (shutdown.py): set by the first signal, every wait derived from it."""

from __future__ import annotations

import time

from chaos_pyfunc.config import SHUTDOWN_RESERVE_SECONDS
from chaos_pyfunc.http.shutdown import ShutdownClock


def test_the_budget_runs_from_the_first_signal_and_the_drain_leaves_the_reserve() -> None:
    clock = ShutdownClock(SHUTDOWN_RESERVE_SECONDS + 10)
    assert clock.remaining() == SHUTDOWN_RESERVE_SECONDS + 10  # no signal yet: the whole budget
    clock.start()
    time.sleep(0.05)
    clock.start()  # a second signal moves nothing
    assert SHUTDOWN_RESERVE_SECONDS + 9.5 < clock.remaining() <= SHUTDOWN_RESERVE_SECONDS + 9.95
    assert abs(clock.drain_seconds() - (clock.remaining() - SHUTDOWN_RESERVE_SECONDS)) < 0.01


def test_past_the_deadline_every_wait_is_zero() -> None:
    clock = ShutdownClock(0.01)
    clock.start()
    time.sleep(0.05)
    assert clock.remaining() == 0.0 and clock.drain_seconds() == 0.0
    assert ShutdownClock(SHUTDOWN_RESERVE_SECONDS / 2).drain_seconds() == 0.0  # a budget below the reserve
