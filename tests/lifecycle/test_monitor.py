"""chaos monitor on the real PostgreSQL: the prediction log's rows with a contact id, joined to the
outcomes of the customers table, give per version and month the AUC, Brier score and
calibration that scikit-learn gives on the same rows; an alarm exits 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score
from support.rows import contract_rows

from chaos_pyfunc.cli import main
from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import load_csv, make_engine
from chaos_pyfunc.lifecycle import monitor
from chaos_pyfunc.predlog.prediction_log import CONTACT_IDS, REQUEST_ID, PredictionLog

MONTHS = ("2010-09", "2010-10")


@pytest.fixture
def logged(pg_url: str, tmp_path: Path) -> tuple[str, pd.DataFrame]:
    """Two versions' rows of two months, with contact ids and scores that know the outcome a
    little; the outcomes loaded in the customers table (and a third of the ids left unknown)."""
    rng = np.random.default_rng(4)
    expected = []
    for version in ("3", "4"):
        recorder = PredictionLog(Settings(database_url=pg_url), version, flush_seconds=3600)
        for month in MONTHS:
            rows = contract_rows(300, seed=int(version) * 10 + int(month[-2:]))
            rows[schema.DATE] = f"{month}-15"
            scores = rng.uniform(0.05, 0.8, 300)  # calibrated: each outcome drawn at its score
            outcome = rng.random(300) < scores
            ids = [f"v{version}-{month}-{i}" for i in range(300)]
            tokens = REQUEST_ID.set(f"r{version}{month}"), CONTACT_IDS.set(ids)
            recorder.record(schema.fast_batch(schema.as_signature_types(rows)), scores)
            REQUEST_ID.reset(tokens[0])
            CONTACT_IDS.reset(tokens[1])
            expected.append(pd.DataFrame({"model_version": version, "month": month, "contact_id": ids,
                                          "appetence": scores, "subscribed": outcome.astype(int)}))
            known = rows.assign(duration_contact=60, subscription=np.where(outcome, "yes", "no"),
                                contact_id=ids)[:200]  # the last 100 have no outcome yet
            known.to_csv(tmp_path / f"c{version}{month}.csv", index=False)
        assert recorder.flush()
        recorder.close()
    outcomes = pd.concat([pd.read_csv(f) for f in sorted(tmp_path.glob("c*.csv"))])
    outcomes.to_csv(tmp_path / "customers.csv", index=False)
    engine = make_engine(Settings(database_url=pg_url))
    load_csv(engine, "customers", tmp_path / "customers.csv")
    engine.dispose()
    frame = pd.concat(expected)
    return pg_url, frame[frame["contact_id"].str.rsplit("-", n=1).str[1].astype(int) < 200]


def test_each_version_and_month_gets_the_figures_of_its_rows(logged) -> None:
    url, expected = logged
    result = monitor.report(Settings(database_url=url), "30d")
    assert result.rows == len(expected) == 800
    assert [(m.model_version, m.month) for m in result.months] == [(v, m) for v in ("3", "4") for m in MONTHS]
    for month in result.months:
        rows = expected[(expected["model_version"] == month.model_version)
                        & (expected["month"] == month.month)]
        y, p = rows["subscribed"], rows["appetence"]
        assert month.rows == 200
        assert month.roc_auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert month.brier == pytest.approx(brier_score_loss(y, p), abs=1e-12)
        assert sum(d["rows"] for d in month.deciles) == 200 and len(month.deciles) == monitor.DECILES
        gaps = sum(d["rows"] * abs(d["expected"] - d["observed"]) for d in month.deciles) / 200
        assert month.decile_error == pytest.approx(gaps)
        assert (month.mean_appetence, month.observed_rate) == pytest.approx((p.mean(), y.mean()))
        assert month.calibration_gap == pytest.approx(abs(p.mean() - y.mean()))
    assert result.alarms == []


def test_the_command_writes_its_report_and_exits_1_on_an_alarm(logged, tmp_path: Path, monkeypatch,
                                                              capsys) -> None:
    url, _ = logged
    monkeypatch.setenv("CHAOS_DATABASE_URL", url)
    monkeypatch.delenv("CHAOS_CONFIG", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["monitor", "--since", "30d", "--output", str(tmp_path / "ok")]) == 0
    summary = json.loads((tmp_path / "ok" / "monitor.json").read_text())
    assert summary["rows"] == 800 and not summary["alarm"]
    assert (tmp_path / "ok" / "monitor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setenv("CHAOS_MONITOR_MIN_ROC_AUC", "0.99")
    assert main(["monitor", "--since", "30d", "--output", str(tmp_path / "alarm")]) == 1
    out = capsys.readouterr().out
    assert "monitor alarm: version 3, 2010-09: ROC AUC" in out and "below 0.990" in out


def test_no_outcome_known_is_a_clear_error(pg_url: str, tmp_path: Path, monkeypatch, capsys) -> None:
    recorder = PredictionLog(Settings(database_url=pg_url), "1", flush_seconds=3600)
    recorder.close()  # the table, empty
    engine = make_engine(Settings(database_url=pg_url))
    load_csv(engine, "customers", _empty_customers(tmp_path))
    engine.dispose()
    monkeypatch.setenv("CHAOS_DATABASE_URL", pg_url)
    monkeypatch.delenv("CHAOS_CONFIG", raising=False)
    assert main(["monitor", "--output", str(tmp_path / "none")]) == 2
    assert "no row scored in the last 30d has a known outcome" in capsys.readouterr().err


def _empty_customers(folder: Path) -> Path:
    path = folder / "empty.csv"
    contract_rows(1).assign(duration_contact=1, subscription="no").head(0).to_csv(path, index=False)
    return path
