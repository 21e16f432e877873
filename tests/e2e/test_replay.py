"""The replay (tests/support/replay.py, `make replay`) on its last 3 months with a quick recipe:
the real server, registry and jobs, month by month. Every row scored is logged under its contact
id, chaos monitor gives the live figures back from the log and the outcomes, each month's model
folder loads without a server, and the registry is kept under the run's folder."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from support.replay import run
from support.server import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.data, pytest.mark.training]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("replay")
    result = run(3, quick=True, root=root)
    print(json.dumps({k: v for k, v in result.items() if k != "months"}, indent=2))
    return result, root


def test_three_months_are_lived_served_and_logged(replayed) -> None:
    result, root = replayed
    months = result["months"]
    assert [m["month"] for m in months] == ["2010-09", "2010-10", "2010-11"]
    for month in months:
        assert month["rows_scored"] == month["rows_logged"] == month["live"]["rows"] > 0
        assert 0.5 < month["live"]["roc_auc"] <= 1 and 0 < month["live"]["brier"] < 0.3
    assert months[0]["gate"]["verdict"] == "the starting version"
    assert all(m["gate"]["verdict"] in ("passed", "refused", "not trained") for m in months[1:])
    # A version passed is the one served the month after; a refusal keeps the one before.
    for before, after in itertools.pairwise(months):
        moved = after["gate"]["verdict"] == "passed"
        assert (after["served"]["version"] != before["served"]["version"]) == moved
    assert (root / "mlflow.db").is_file() and (root / "artifacts").is_dir()  # the registry, kept


def test_monitor_gives_back_the_live_figures_from_the_log_and_the_outcomes(replayed) -> None:
    result, _ = replayed
    for month in result["months"]:
        assert month["monitor"]["rows"] == month["live"]["rows"]
        assert month["monitor"]["roc_auc"] == pytest.approx(month["live"]["roc_auc"], abs=1e-4)
        assert month["monitor"]["brier"] == pytest.approx(month["live"]["brier"], abs=1e-4)


def test_each_model_path_loads_without_a_server(replayed) -> None:
    result, _ = replayed
    paths = {m["served"]["model_path"] for m in result["months"]} | {result["pooled"]["frozen"]["model_path"]}
    for path in paths:
        folder = Path(path) if Path(path).is_absolute() else REPO / path
        assert (folder / "MLmodel").is_file()
        assert mlflow.pyfunc.load_model(str(folder)).metadata.signature is not None


def test_the_pooled_figures_and_the_gate_s_false_refusals_are_reported(replayed) -> None:
    result, _ = replayed
    pooled = result["pooled"]
    rows = sum(m["live"]["rows"] for m in result["months"])
    assert pooled["served"]["rows"] == pooled["frozen"]["rows"] == rows
    assert result["gate"]["null_comparisons"] == 2
    assert 0 <= result["gate"]["false_refusals"] <= 2
    assert all("as_fitted" in m and "drift" in m for m in result["months"][1:])
