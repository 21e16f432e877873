"""A short soak (bench/soak.py; `make soak` runs 10 minutes): steady load, not one error. The
latency and memory figures are printed, not asserted: the benchmark is where they are judged."""

from __future__ import annotations

import pytest

from bench.load import format_summary
from bench.soak import run

pytestmark = pytest.mark.e2e

SECONDS, RATE = 30.0, 50.0


def test_a_steady_load_gets_no_error(tmp_path) -> None:
    result = run(SECONDS, RATE, warmup=10.0, workdir=tmp_path)
    print(format_summary("short soak", result))
    assert result["sent"] >= 0.95 * SECONDS * RATE
    assert result["2xx"] == result["sent"], result
