"""What the people who run the service watch: Prometheus metrics, served at ``GET /metrics``.

prometheus_client writes the exposition; names follow Prometheus' conventions (a ``chaos_``
prefix, base units, ``_total`` counters) and the serving projects scraped already (KServe,
BentoML: requests by endpoint and status, a latency histogram, requests in flight). Labels take
values from fixed sets only (endpoints, statuses, refusal reasons, key ids): never a path as
sent, never a value of a request.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

ENDPOINTS = frozenset({"/invocations", "/appetence", "/ping", "/health", "/version", "/model",
                       "/openapi.json", "/metrics"})
# The gateway's refusals, by the status it answers. Its 408 is a body not received in time: a head
# not received in time, or too large, never reaches it, and the edge counts those (Metrics.refused).
REFUSALS = {413: "too_large", 503: "busy_or_unavailable", 504: "timeout", 401: "unauthenticated",
            408: "body_timeout"}
HEADER_TIMEOUT, HEADER_TOO_LARGE = "header_timeout", "header_too_large"
REFUSAL_REASONS = frozenset({*REFUSALS.values(), HEADER_TIMEOUT, HEADER_TOO_LARGE})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROW_BUCKETS = (1, 10, 100, 1000, 10000)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
CONTENT_TYPE = CONTENT_TYPE_LATEST


def endpoint_of(path: str) -> str:
    return path if path in ENDPOINTS else "other"


class _BeforeScrape(Collector):
    """Registered first: its hooks run before the metrics are read (observer.py takes in what
    is queued)."""

    def __init__(self) -> None:
        self.hooks: list[Callable[[], None]] = []

    def collect(self) -> Iterator[Metric]:
        for hook in self.hooks:
            hook()
        return iter(())


class _IndicatorCollector(Collector):
    """The age of the indicators in use and the failed reads of socio_eco, read at scrape time."""

    def __init__(self) -> None:
        self.source: Any = None  # a socio_eco.IndicatorSource, once the model is loaded

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        age = self.source.age_seconds()
        gauge = GaugeMetricFamily("chaos_indicators_age_seconds",
                                  "Seconds since the socio_eco indicators in use were read (NaN before any)")
        gauge.add_metric([], float("nan") if age is None else age)
        yield gauge
        failures = CounterMetricFamily("chaos_socio_eco_read_failures",
                                       "Reads of the socio_eco table that failed")
        failures.add_metric([], self.source.failed_reads)
        yield failures


class _PredictionLogCollector(Collector):
    """The prediction log's rows written, dropped (queue full), failed (refused) and waiting, read
    at scrape time."""

    def __init__(self) -> None:
        self.source: Any = None  # a prediction_log.PredictionLog, when it is on

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        for name, doc, value in (
                ("chaos_prediction_log_written_rows", "Rows written to the predictions table",
                 self.source.written),
                ("chaos_prediction_log_dropped_rows", "Rows not logged: the queue was full",
                 self.source.dropped),
                ("chaos_prediction_log_failed_rows",
                 "Rows not logged: the database refused their batch for a reason other than its absence",
                 self.source.failed)):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
        queued = GaugeMetricFamily("chaos_prediction_log_queued_rows", "Rows waiting to be written")
        queued.add_metric([], self.source.queued)
        yield queued


class _ScoreCollector(Collector):
    """The histogram of the appetences returned, counted with NumPy a batch at a time:
    prometheus_client's Histogram observes one value per call, a thousand calls per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = np.zeros(len(SCORE_BUCKETS) + 1, dtype=np.int64)  # per bucket, +Inf last
        self._sum = 0.0

    def observe(self, scores: np.ndarray) -> None:
        if len(scores) <= 8:  # a few rows: plain Python, NumPy's call overhead is the larger cost
            with self._lock:
                for score in scores.tolist():
                    self._counts[bisect.bisect_left(SCORE_BUCKETS, score)] += 1
                    self._sum += score
            return
        counts = np.bincount(np.searchsorted(SCORE_BUCKETS, scores, side="left"),
                             minlength=len(SCORE_BUCKETS) + 1)
        with self._lock:
            self._counts += counts
            self._sum += float(np.sum(scores))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts), self._sum
        family = HistogramMetricFamily("chaos_appetence", "Appetences returned, one per row scored")
        bounds = [*(f"{b:g}" for b in SCORE_BUCKETS), "+Inf"]
        family.add_metric([], list(zip(bounds, (float(c) for c in cumulative), strict=True)), total)
        yield family


class Metrics:
    """One registry per server (tests start several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._before_scrape = _BeforeScrape()
        r.register(self._before_scrape)
        self.requests = Counter("chaos_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("chaos_request_duration_seconds", "Time to answer, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.rows = Histogram("chaos_request_rows", "Rows per scoring request answered 200",
                              buckets=ROW_BUCKETS, registry=r)
        self.in_flight = Gauge("chaos_requests_in_flight", "Scoring requests being handled", registry=r)
        self.scores = _ScoreCollector()
        r.register(self.scores)
        self.refusals = Counter("chaos_refusals", "Requests refused before or instead of scoring, by reason",
                                ["reason"], registry=r)
        self.clients = Counter("chaos_client_requests", "Authenticated requests, by API key id",
                               ["key_id"], registry=r)
        self.model = Info("chaos_model", "The model served", registry=r)
        self._requests: dict[tuple[str, int], Any] = {}  # few: endpoints by statuses
        self._latency: dict[str, Any] = {}
        self.indicators = _IndicatorCollector()
        r.register(self.indicators)
        self.prediction_log = _PredictionLogCollector()
        r.register(self.prediction_log)

    def before_scrape(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before every reading of the metrics."""
        self._before_scrape.hooks.append(hook)

    def describe_model(self, model: dict[str, str | None]) -> None:
        self.model.info({k: "" if v is None else str(v) for k, v in model.items()})

    def answered(self, path: str, status: int, seconds: float, rows: int | None,
                 key_id: str | None) -> None:
        endpoint = endpoint_of(path)
        # The labelled children, kept: labels() validates and locks on every call.
        counter = self._requests.get((endpoint, status))
        if counter is None:
            counter = self._requests[endpoint, status] = self.requests.labels(endpoint, str(status))
        counter.inc()
        latency = self._latency.get(endpoint)
        if latency is None:
            latency = self._latency[endpoint] = self.latency.labels(endpoint)
        latency.observe(seconds)
        if rows is not None and status == 200:
            self.rows.observe(rows)
        if status in REFUSALS:
            self.refused(REFUSALS[status])
        if key_id is not None:
            self.clients.labels(key_id).inc()

    def refused(self, reason: str) -> None:
        """One refusal, for ``reason`` (one of REFUSAL_REASONS)."""
        self.refusals.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
