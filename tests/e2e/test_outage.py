"""PostgreSQL stopped for 10 s under steady load, then started again (tests/support/outage.py): no
request is left without an answer, the stale-serving server answers 200 throughout, the strict
one answers 503s that do not wait for the database, and both heal by themselves.

The outage lasts until each server has answered SEEN_DURING_OUTAGE requests due during it (an
event observed, not a pace; support.outage.run raises if it never comes): what the answers were
is asserted, not how many came."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.logs import exited_log
from support.outage import run

from chaos_pyfunc.config import Settings

pytestmark = pytest.mark.e2e

DOWN_SECONDS = 10.0
# The servers read again every CHAOS_CACHE_TTL_SECONDS (1 s, tests/support/outage.py) and retry a
# failed read after 1 s: they heal about 2 s after the database is back. 3 times that:
RECOVERY_BOUND_SECONDS = 3 * 2.0
# A request waits at most indicators_wait_seconds (1 s) for the database. 3 times that:
UNAVAILABLE_BOUND_MS = 3 * Settings().indicators_wait_seconds * 1000
# Requests answered during the outage before the database comes back (10 s at 20/s: 200 are due;
# on a slower machine the outage lasts longer, until these are seen).
SEEN_DURING_OUTAGE = 20


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = run(down=DOWN_SECONDS, before=3.0, after=8.0, rate=20.0,
                 workdir=tmp_path_factory.mktemp("outage"), seen_while_down=SEEN_DURING_OUTAGE)
    print(json.dumps(result, indent=2))  # the figures, with -s or in the report of a failure
    return result


@pytest.mark.parametrize("mode", ["stale", "strict"])
def test_every_request_is_answered_within_the_timeout(outage: dict[str, Any], mode: str) -> None:
    report = outage[mode]
    assert report["timeouts"] == report["connection_errors"] == report["other_errors"] == 0, report
    assert report["4xx"] == 0, report


def test_the_last_good_indicators_are_served_while_the_database_is_down(outage: dict[str, Any]) -> None:
    report = outage["stale"]
    assert report["2xx"] == report["sent"], report
    assert report["while_down"]["2xx"] == report["while_down"]["sent"], report


def test_without_staleness_the_outage_is_a_quick_503_then_heals(outage: dict[str, Any]) -> None:
    report = outage["strict"]
    assert set(report["statuses"]) <= {200, 503}, report
    down = report["while_down"]
    assert down["5xx"] >= 0.8 * down["sent"], down  # the cache expires every second
    assert down["max_ms"] < UNAVAILABLE_BOUND_MS, "a 503 must not wait for the database"
    assert report["recovery_s"] is not None and report["recovery_s"] <= RECOVERY_BOUND_SECONDS, report


@pytest.mark.parametrize("mode", ["stale", "strict"])
def test_both_read_the_database_again_once_it_is_back(outage: dict[str, Any], mode: str) -> None:
    log = exited_log(Path(outage["logs"][mode]))
    assert "reading socio_eco failed: OperationalError" in log
    assert "socio_eco read again after" in log
