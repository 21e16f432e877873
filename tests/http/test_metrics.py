"""GET /metrics: after a known mix of requests the counts match it exactly, the exposition parses
with prometheus_client's own parser, and no value sent in a request appears in it."""

from __future__ import annotations

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from support.asgi import App, call
from support.bodies import VALUE, dumps, records

from chaos_pyfunc.http.metrics import SCORE_BUCKETS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counts_match_a_known_mix_of_requests_and_hold_no_value_sent() -> None:
    metrics = Metrics()
    ok = App(body=b'{"predictions": [{"appetence": 0.5}, {"appetence": 0.25}]}')
    body = dumps({"dataframe_records": records(2, job_type=VALUE)})
    for _ in range(3):
        assert call(ok, "POST", "/invocations", body, metrics=metrics)[0] == 200
    assert call(ok, "POST", "/invocations", b"x" * 5000, metrics=metrics)[0] == 413
    assert call(ok, "GET", "/ping", metrics=metrics)[0] == 200
    assert call(ok, "GET", f"/{VALUE}", metrics=metrics)[0] == 200  # the stand-in answers any path
    got = samples(metrics)
    assert got[("chaos_requests_total", (("endpoint", "/invocations"), ("status", "200")))] == 3
    assert got[("chaos_requests_total", (("endpoint", "/invocations"), ("status", "413")))] == 1
    assert got[("chaos_requests_total", (("endpoint", "/ping"), ("status", "200")))] == 1
    assert got[("chaos_requests_total", (("endpoint", "other"), ("status", "200")))] == 1
    assert got[("chaos_refusals_total", (("reason", "too_large"),))] == 1
    assert got[("chaos_request_rows_count", ())] == 3 and got[("chaos_request_rows_sum", ())] == 6
    assert got[("chaos_request_duration_seconds_count", (("endpoint", "/invocations"),))] == 4
    assert got[("chaos_requests_in_flight", ())] == 0
    assert VALUE not in metrics.exposition().decode()


def test_the_score_histogram_counts_every_appetence_in_its_bucket() -> None:
    metrics = Metrics()
    metrics.scores.observe(np.array([0.0, 0.05, 0.051, 0.5, 0.97, 1.0]))
    metrics.scores.observe(np.array([0.2]))
    got = samples(metrics)
    bounds = ("0.05", "0.1", "0.2", "0.5", "1", "+Inf")
    bucket = {le: got[("chaos_appetence_bucket", (("le", le),))] for le in bounds}
    assert bucket == {"0.05": 2, "0.1": 3, "0.2": 4, "0.5": 5, "1": 7, "+Inf": 7}
    assert got[("chaos_appetence_count", ())] == 7
    assert abs(got[("chaos_appetence_sum", ())] - 2.771) < 1e-9
    assert len(SCORE_BUCKETS) == 20


def test_small_and_large_batches_fill_the_same_buckets() -> None:
    scores = np.random.default_rng(0).random(40).round(2)  # many values on a bucket's bound
    one_at_a_time, at_once = Metrics(), Metrics()
    for score in scores:
        one_at_a_time.scores.observe(np.array([score]))  # the small-batch path
    at_once.scores.observe(scores)  # the NumPy path
    small, large = samples(one_at_a_time), samples(at_once)
    buckets = {k for k in large if k[0] in ("chaos_appetence_bucket", "chaos_appetence_count")}
    assert len(buckets) == 22 and {k: small[k] for k in buckets} == {k: large[k] for k in buckets}
    assert abs(small[("chaos_appetence_sum", ())] - large[("chaos_appetence_sum", ())]) < 1e-9


def test_the_model_served_and_the_indicators_are_described() -> None:
    class Source:
        failed_reads = 2

        def age_seconds(self) -> float:
            return 12.5

    metrics = Metrics()
    metrics.describe_model({"name": "chaos-appetence", "version": "7", "uri": "models:/chaos-appetence/7",
                            "package_version": "0.2.0"})
    metrics.indicators.source = Source()
    got = samples(metrics)
    labels = (("name", "chaos-appetence"), ("package_version", "0.2.0"), ("uri", "models:/chaos-appetence/7"),
              ("version", "7"))
    assert got[("chaos_model_info", labels)] == 1
    assert got[("chaos_indicators_age_seconds", ())] == 12.5
    assert got[("chaos_socio_eco_read_failures_total", ())] == 2
