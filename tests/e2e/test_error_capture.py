"""The real server with CHAOS_SENTRY_DSN set, its database away: the failed reads reach the
recorder as events, and no byte sent holds what the requests carried (a marker value in a
column, the query string, the headers)."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import requests
from conftest import request_rows
from support.envelopes import recording_sentry
from support.logs import exited_log

from .conftest import json_body, running_server

pytestmark = pytest.mark.e2e

MARKER = "ZQX-MARKER-5519"
WAIT_FOR_EVENTS_SECONDS = 30.0  # the SDK sends from a background thread


def test_failed_reads_are_captured_without_any_customer_data(tmp_path, customers: pd.DataFrame) -> None:
    rows = request_rows(customers, 3, seed=71).assign(note=MARKER)  # an extra column: ignored, still sent
    env = {"CHAOS_DATABASE_URL": "postgresql+psycopg2://root@127.0.0.1:1/none",
           "CHAOS_CONNECT_TIMEOUT_SECONDS": "1", "CHAOS_INDICATORS_MAX_STALENESS_SECONDS": "0"}
    with recording_sentry() as sentry:
        env["CHAOS_SENTRY_DSN"] = sentry.dsn
        with running_server(env, tmp_path, tmp_path / "server.log") as url:
            body = json_body(rows, "dataframe_split")
            for _ in range(3):
                answer = requests.post(f"{url}/invocations?customer={MARKER}", json=body, timeout=30,
                                       headers={"X-Customer": MARKER, "Authorization": f"Bearer {MARKER}"})
                assert answer.status_code == 503
            deadline = time.monotonic() + WAIT_FOR_EVENTS_SECONDS
            while not sentry.events() and time.monotonic() < deadline:
                time.sleep(0.2)
        events = sentry.events()
        assert events, "no event reached the recorder"
        assert any(b"reading socio_eco failed" in e for e in events)
        assert MARKER.encode() not in sentry.all_bytes()
    assert MARKER not in exited_log(tmp_path / "server.log")
