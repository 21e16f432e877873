"""`chaos monitor --since 30d --output DIR`: how well did the appetences served do, now that the
outcomes are known?

The drift report compares inputs; this compares what was answered with what happened. The rows
the prediction log holds for the period with a contact id (the client sends one per row,
optionally) are joined to the outcomes of the environment's ``customers`` table by that id (the
latest scoring of a contact by each version). Per model version and month of contact: the rows
with an outcome, ROC AUC, Brier score, and the calibration: the mean appetence against the
observed rate (the calibration gap), and expected against observed rate by score decile, as
numbers (``monitor.json``) and a reliability plot (``monitor.png``), with their rows-weighted
mean gap (the decile error). A month with at least ``monitor_min_rows`` outcomes is judged: an
AUC below ``monitor_min_roc_auc`` or a calibration gap above ``monitor_max_calibration_error`` is
an alarm, and the command exits 1. The alarm is on the whole month's gap, not the deciles': with
the 200 contacts of a month, a well calibrated model's deciles are off by 0.09 on average by
chance alone (20 contacts each), its mean by 0.03; the drift this data knows (a subscription
rate from 10% to 50%) moves the mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score
from sqlalchemy import select

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import customers, make_engine
from chaos_pyfunc.predlog.prediction_table import parse_period, prediction_rows

DECILES = 10


@dataclass(frozen=True)
class Month:
    model_version: str  # "none" for rows logged without one
    month: str  # YYYY-MM of the contacts
    rows: int
    roc_auc: float | None  # None when the month's outcomes are all alike
    brier: float
    mean_appetence: float
    observed_rate: float
    calibration_gap: float  # |mean appetence - observed rate|
    decile_error: float
    deciles: list[dict[str, float]]  # expected, observed, rows

    def alarms(self, settings: Settings) -> list[str]:
        if self.rows < settings.monitor_min_rows:
            return []
        where = f"version {self.model_version}, {self.month}"
        found = []
        if self.roc_auc is not None and self.roc_auc < settings.monitor_min_roc_auc:
            found.append(f"{where}: ROC AUC {self.roc_auc:.3f} below {settings.monitor_min_roc_auc:.3f} "
                         "(monitor_min_roc_auc)")
        if self.calibration_gap > settings.monitor_max_calibration_error:
            bound = settings.monitor_max_calibration_error
            found.append(f"{where}: mean appetence {self.mean_appetence:.3f} against an observed rate "
                         f"of {self.observed_rate:.3f}, off by more than {bound:.3f} "
                         "(monitor_max_calibration_error)")
        return found


@dataclass(frozen=True)
class MonitorReport:
    since: str
    rows: int  # rows scored in the period with a contact id whose outcome is known
    months: list[Month]
    alarms: list[str]

    def summary(self) -> dict[str, Any]:
        return {"since": self.since, "rows": self.rows, "alarm": bool(self.alarms), "alarms": self.alarms,
                "months": [m.__dict__ for m in self.months]}


def outcomes_joined(settings: Settings, since: str) -> pd.DataFrame:
    """The period's logged rows with a contact id, joined to their outcome (``subscribed``)."""
    start = datetime.now(UTC) - parse_period(since)
    log_engine = make_engine(settings.replaced(database_url=settings.prediction_log_database_url))
    view = prediction_rows.c
    try:
        with log_engine.connect() as conn:
            scored = pd.read_sql(select(view.model_version, view.scored_at, view[schema.DATE],
                                        view[schema.OUTPUT_COLUMN], view[schema.CONTACT_ID])
                                 .where(view.scored_at >= start, view[schema.CONTACT_ID].is_not(None)), conn)
    finally:
        log_engine.dispose()
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            known = pd.read_sql(select(customers.c[schema.CONTACT_ID], customers.c[schema.LABEL])
                                .where(customers.c[schema.CONTACT_ID].is_not(None)), conn)
    finally:
        engine.dispose()
    latest = scored.sort_values("scored_at").drop_duplicates([schema.CONTACT_ID, "model_version"],
                                                             keep="last")
    joined = latest.merge(known.drop_duplicates(schema.CONTACT_ID), on=schema.CONTACT_ID, how="inner")
    joined["subscribed"] = (joined[schema.LABEL] == "yes").astype(int)
    joined["month"] = pd.to_datetime(joined[schema.DATE]).dt.strftime("%Y-%m")
    return joined


def calibration(labels: np.ndarray, scores: np.ndarray) -> tuple[float, list[dict[str, float]]]:
    """The rows-weighted mean |expected - observed| over the score deciles, and the deciles."""
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, DECILES + 1)))
    bins = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, max(len(edges) - 2, 0))
    deciles = []
    for b in np.unique(bins):
        inside = bins == b
        deciles.append({"expected": float(scores[inside].mean()), "observed": float(labels[inside].mean()),
                        "rows": int(inside.sum())})
    error = sum(d["rows"] * abs(d["expected"] - d["observed"]) for d in deciles) / max(len(labels), 1)
    return float(error), deciles


def figures(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC AUC (None with one outcome only), Brier score, the calibration gap and the deciles."""
    error, deciles = calibration(labels, scores)
    auc = float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else None
    mean, rate = float(scores.mean()), float(labels.mean())
    return {"rows": len(labels), "roc_auc": auc, "brier": float(brier_score_loss(labels, scores)),
            "mean_appetence": mean, "observed_rate": rate, "calibration_gap": abs(mean - rate),
            "decile_error": error, "deciles": deciles}


def report(settings: Settings, since: str) -> MonitorReport:
    joined = outcomes_joined(settings, since)
    if joined.empty:
        raise ValueError(f"no row scored in the last {since} has a known outcome: clients send "
                         f"{schema.CONTACT_ID} with their rows, the customers table holds the outcomes "
                         "by the same id (chaos db load customers CSV)")
    months = []
    joined["model_version"] = joined["model_version"].fillna("none")
    for (version, month), group in joined.groupby(["model_version", "month"], sort=True):
        found = figures(group["subscribed"].to_numpy(), group[schema.OUTPUT_COLUMN].to_numpy())
        months.append(Month(str(version), str(month), **found))
    alarms = [alarm for month in months for alarm in month.alarms(settings)]
    return MonitorReport(since, len(joined), months, alarms)


def write(result: MonitorReport, output: Path) -> tuple[Path, Path]:
    """``monitor.json`` (the figures) and ``monitor.png`` (the reliability plot, a curve per
    version and month)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output.mkdir(parents=True, exist_ok=True)
    summary, plot = output / "monitor.json", output / "monitor.png"
    summary.write_text(json.dumps(result.summary(), indent=2) + "\n")
    figure, axis = plt.subplots(figsize=(6, 6))
    for month in result.months:
        axis.plot([d["expected"] for d in month.deciles], [d["observed"] for d in month.deciles], marker="o",
                  label=f"v{month.model_version} {month.month} (n={month.rows})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="expected rate (mean appetence of the decile)", ylabel="observed rate",
             title=f"Reliability of the appetences served, last {result.since}")
    axis.legend(loc="upper left", fontsize="x-small", ncol=2)
    figure.tight_layout()
    figure.savefig(plot, dpi=100)
    plt.close(figure)
    return summary, plot
