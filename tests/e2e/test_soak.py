"""A short soak (tests/support/soak.py; `make soak` runs 10 minutes): a steady load, every request
answered 200. The pace, latency and memory figures are printed, not asserted: the benchmark is
where they are judged, since a loaded machine sends and answers more slowly."""

from __future__ import annotations

import pytest
from support.load import format_summary
from support.soak import run

pytestmark = pytest.mark.e2e

REQUESTS, RATE = 1500, 50.0


def test_a_steady_load_gets_no_error(tmp_path) -> None:
    result = run(REQUESTS / RATE, RATE, warmup=10.0, workdir=tmp_path, total=REQUESTS)
    print(format_summary("short soak", result))
    assert result["sent"] == REQUESTS, result  # nothing left unsent or unanswered
    assert result["2xx"] == REQUESTS, result
    # The prediction log kept up: every row scored is in it, or was dropped and counted.
    assert result["logged_rows"] + result["dropped_rows"] == result["scored_rows"], result
