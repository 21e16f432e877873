"""GET /metrics on the real server, on its own port as the pods serve it: the counts of a known
mix of requests, every appetence in the score histogram, the model and the indicators' age."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
import requests
from conftest import request_rows
from prometheus_client.parser import text_string_to_metric_families
from support.server import free_port

from .conftest import json_body, predictions, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def metered(indicators_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    workdir = tmp_path_factory.mktemp("metered")
    port = free_port()
    env = {"CHAOS_DATABASE_URL": indicators_pg_url, "CHAOS_METRICS_PORT": str(port)}
    with running_server(env, workdir, workdir / "server.log") as url:
        yield url, port


def test_the_counts_match_what_was_sent(metered, customers: pd.DataFrame) -> None:
    url, port = metered
    rows = request_rows(customers, 5, seed=61)
    for _ in range(3):
        assert len(predictions(requests.post(f"{url}/invocations", json=json_body(rows, "dataframe_split"),
                                             timeout=30))) == 5
    bad = json_body(rows.assign(job_type="ZQX-pilot"), "dataframe_split")
    assert requests.post(f"{url}/invocations", json=bad, timeout=30).status_code == 400
    assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(text) for s in family.samples}
    assert got[("chaos_requests_total", (("endpoint", "/invocations"), ("status", "200")))] == 3
    assert got[("chaos_requests_total", (("endpoint", "/invocations"), ("status", "400")))] == 1
    assert got[("chaos_appetence_count", ())] == 15  # every row scored, none of the refused
    assert got[("chaos_request_rows_sum", ())] == 15
    assert got[("chaos_indicators_age_seconds", ())] >= 0
    assert got[("chaos_socio_eco_read_failures_total", ())] == 0
    assert any(name == "chaos_model_info" and dict(labels).get("name") == "chaos-appetence"
               for name, labels in got)
    assert "ZQX" not in text


def test_metrics_are_not_on_the_public_port_when_they_have_their_own(metered) -> None:
    url, _ = metered
    assert requests.get(f"{url}/metrics", timeout=10).status_code == 404
