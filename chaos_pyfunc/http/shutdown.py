"""The shutdown's one budget: ``shutdown_timeout_seconds`` from SIGTERM to the exit.

In the pod, terminationGracePeriodSeconds covers the preStop pause, then this budget, then the
kubelet's SIGKILL. Every wait after SIGTERM derives from the one deadline set when the signal
arrives: uvicorn's drain of the requests in flight gets the budget but SHUTDOWN_RESERVE_SECONDS,
and what comes after it (the observer's last access lines, the prediction log's last rows and its
COPY process) gets what is left until the deadline. Bounds of their own, one after the other,
would add up past the grace period, and the SIGKILL would lose what was still queued.
"""

from __future__ import annotations

import time

from chaos_pyfunc.config import SHUTDOWN_RESERVE_SECONDS


class ShutdownClock:
    """The deadline of the shutdown, set by the first signal."""

    def __init__(self, budget_seconds: float) -> None:
        self.budget_seconds = budget_seconds
        self._deadline: float | None = None

    def start(self) -> None:
        """The signal arrived: the budget runs from now. A second signal changes nothing."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.budget_seconds

    def remaining(self) -> float:
        """Seconds left until the deadline; the whole budget while no signal has come."""
        if self._deadline is None:
            return self.budget_seconds
        return max(0.0, self._deadline - time.monotonic())

    def drain_seconds(self) -> float:
        """What the drain of the requests in flight gets: what remains, but the reserve."""
        return max(0.0, self.remaining() - SHUTDOWN_RESERVE_SECONDS)
