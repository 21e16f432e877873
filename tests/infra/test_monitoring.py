"""The alert rules and the Grafana dashboard: every expression parses as PromQL (promql-parser,
in the tools' venv) and names only metrics the server really exposes; a broken one is caught."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from chaos_pyfunc.http.metrics import REFUSAL_REASONS, Metrics

from .tools import REPO, run_tool

pytestmark = pytest.mark.infra

RULES = REPO / "k8s" / "base" / "rules.yaml"
OBSERVABILITY = REPO / "docs" / "observability.md"
DASHBOARD = REPO / "k8s" / "monitoring" / "grafana-dashboard.json"


def exposed() -> set[str]:
    """Every sample name a server's /metrics can hold, with each labelled series present once."""
    metrics = Metrics()
    metrics.answered("/invocations", 200, 0.01, 3, "0123abcd")
    metrics.answered("/invocations", 503, 0.01, None, None)
    metrics.scores.observe(np.array([0.5]))

    class Source:
        failed_reads = 0

        def age_seconds(self) -> float:
            return 1.0

    class Log:
        written, dropped, failed, queued = 10, 1, 1, 2

    metrics.indicators.source = Source()
    metrics.prediction_log.source = Log()
    metrics.describe_model({"name": "chaos-appetence", "version": "1"})
    text = metrics.exposition().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def check(*paths: Path) -> dict[str, list[str]]:
    done = run_tool("python", [REPO / "tools" / "check_promql.py", *paths])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_expression_parses_and_names_only_exposed_metrics() -> None:
    used = check(RULES, DASHBOARD)
    names = exposed()
    for path, metrics in used.items():
        assert metrics, path
        assert set(metrics) <= names, (path, set(metrics) - names)


def test_the_rules_alert_on_errors_latency_and_stale_indicators() -> None:
    manifest = yaml.safe_load(RULES.read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("monitoring.googleapis.com/v1", "Rules")
    alerts = {rule["alert"]: rule for group in manifest["spec"]["groups"] for rule in group["rules"]}
    assert {"ChaosHighErrorRate", "ChaosSlowP99", "ChaosIndicatorsStale", "ChaosDriftDetected",
            "ChaosPredictionLogDropping"} <= set(alerts)
    assert "chaos-drift-" in alerts["ChaosDriftDetected"]["expr"]  # the nightly drift Job's failures
    assert all(rule["annotations"]["summary"] and rule["labels"]["severity"] for rule in alerts.values())


def test_a_broken_expression_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yaml"
    broken.write_text(yaml.safe_dump({"spec": {"groups": [{"rules": [{"expr": "sum(rate(chaos_x[5m])"}]}]}}))
    done = run_tool("python", [REPO / "tools" / "check_promql.py", broken])
    assert done.returncode == 1 and "not PromQL" in done.stderr


def test_the_refusal_reasons_are_the_ones_documented_and_alerted_on() -> None:
    """docs/observability.md lists every reason chaos_refusals_total counts, and no other; the
    rules and the dashboard select reasons the server counts."""
    (row,) = [line for line in OBSERVABILITY.read_text().splitlines()
              if line.startswith("| `chaos_refusals_total{reason}`")]
    documented = set(re.findall(r"`([a-z_]+)` \(\d{3}[:)]", row))
    assert documented == REFUSAL_REASONS
    for path in (RULES, DASHBOARD):
        for selected in re.findall(r'chaos_refusals_total\{[^}]*reason=~?\\?"([^"\\]+)', path.read_text()):
            assert set(selected.split("|")) <= REFUSAL_REASONS, (path.name, selected)
