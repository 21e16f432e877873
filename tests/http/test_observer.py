"""The observer: what requests leave is counted and written in batches once started, never
behind a scrape of /metrics, and all of it by the close; at once when not started."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaos_pyfunc.error_capture import ACCESS_LOG
from chaos_pyfunc.http.metrics import Metrics
from chaos_pyfunc.http.observer import Answered, BatchedStreamHandler, Observer


def answered(status: int = 200, rows: int | None = 3) -> Answered:
    return Answered(time.time(), "req-1", "POST", "/invocations", status, rows, 0.012, "key1")


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def requests_counted(metrics: Metrics) -> float:
    return sum(v for (name, _), v in samples(metrics).items() if name == "chaos_requests_total")


def test_not_started_every_request_is_counted_and_written_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOG)
    metrics = Metrics()
    observer = Observer(metrics, "4")
    observer.answered(answered())
    assert metrics.requests.labels("/invocations", "200")._value.get() == 1
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOG]
    line = json.loads(record.getMessage())
    del line["time"]
    assert line == {"request_id": "req-1", "method": "POST", "path": "/invocations", "status": 200, "rows": 3,
                    "ms": 12.0, "model_version": "4", "key_id": "key1"}


def test_started_a_scrape_takes_in_what_is_queued_and_close_writes_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOG)
    metrics = Metrics()
    observer = Observer(metrics, None, interval=3600)  # the thread never wakes by itself here
    observer.start()
    for status in (200, 200, 503):
        observer.answered(answered(status))
    observer.scored(np.array([0.01, 0.5]))
    observer.scored(np.array([0.99]))
    assert metrics.requests.labels("/invocations", "200")._value.get() == 0  # queued, not counted yet
    found = samples(metrics)  # the scrape counts first
    assert found["chaos_requests_total", (("endpoint", "/invocations"), ("status", "200"))] == 2
    assert found["chaos_requests_total", (("endpoint", "/invocations"), ("status", "503"))] == 1
    assert found["chaos_appetence_count", ()] == 3
    assert found["chaos_refusals_total", (("reason", "busy_or_unavailable"),)] == 1
    observer.answered(answered(404, None))
    observer.close(timeout=10)
    assert requests_counted(metrics) == 4
    assert [json.loads(r.getMessage())["status"] for r in caplog.records if r.name == ACCESS_LOG] \
        == [200, 200, 503, 404]


def test_the_thread_writes_without_a_scrape(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOG)
    metrics = Metrics()
    observer = Observer(metrics, None, interval=0.01)
    observer.start()
    observer.answered(answered())
    deadline = time.monotonic() + 10
    while not [r for r in caplog.records if r.name == ACCESS_LOG] and time.monotonic() < deadline:
        time.sleep(0.01)
    observer.close(timeout=10)
    assert len([r for r in caplog.records if r.name == ACCESS_LOG]) == 1


def test_the_access_lines_of_a_batch_are_written_together(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """serve.py's handler: lines wait in the stream's buffer until the observer's batch is done."""
    caplog.set_level(logging.INFO, logger=ACCESS_LOG)
    path = tmp_path / "access.log"
    handler = BatchedStreamHandler(open(path, "w", buffering=1 << 16))  # noqa: SIM115 - closed below
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger(ACCESS_LOG)
    access.addHandler(handler)
    try:
        observer = Observer(Metrics(), None, interval=3600)
        observer.start()
        observer.answered(answered())
        observer.answered(answered(503))
        access.info("a line outside any batch")  # written by nobody until the batch's flush
        assert path.read_text() == ""
        observer.drain()
        lines = path.read_text().splitlines()
        observer.close(timeout=10)
    finally:
        access.removeHandler(handler)
        handler.close()
    assert lines[0] == "a line outside any batch"
    assert [json.loads(line)["status"] for line in lines[1:]] == [200, 503]
