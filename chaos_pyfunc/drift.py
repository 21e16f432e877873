"""`chaos drift --since 7d --output DIR`: are the customers scored lately still like the ones the
model learned from?

The period's rows come from the prediction log (the ``predictions`` table); the reference is the
training data (the ``customers`` table, or ``--reference`` CSV). Both go through the serving
path's validation and as-of join, so the indicators of each contact's month are compared too.
Each feature gets the statistic Evidently uses on samples this large: for numbers the Wasserstein
distance over the reference's standard deviation, for categories the Jensen-Shannon distance of
the frequencies (scipy's implementations); over ``DRIFT_THRESHOLD`` the feature has drifted.
Evidently itself does not import beside pandas 3.1 (checked: 0.7.23, ``infer_dtype_from_object``).
The report is an HTML page and a JSON summary; the exit code is 1 when the share of drifted
features exceeds ``drift_share_threshold``.
"""

from __future__ import annotations

import html
import json
import pickle
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from sqlalchemy import select

from chaos_pyfunc import schema
from chaos_pyfunc.config import Settings
from chaos_pyfunc.dataset import read_contacts
from chaos_pyfunc.db import INDICATORS, make_engine, predictions
from chaos_pyfunc.socio_eco import IndicatorSource

DRIFT_THRESHOLD = 0.1
NUMERIC = (*schema.INTEGERS, *INDICATORS)
CATEGORICAL = tuple(schema.CATEGORIES)


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # "number" or "category"
    statistic: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    since: str
    rows: int
    reference_rows: int
    features: list[FeatureDrift]
    share_threshold: float

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def share(self) -> float:
        return len(self.drifted) / len(self.features)

    @property
    def alarm(self) -> bool:
        return self.share > self.share_threshold

    def summary(self) -> dict[str, object]:
        return {"since": self.since, "rows": self.rows, "reference_rows": self.reference_rows,
                "drifted": self.drifted, "drifted_share": round(self.share, 4),
                "share_threshold": self.share_threshold, "alarm": self.alarm,
                "threshold": DRIFT_THRESHOLD, "features": [asdict(f) for f in self.features]}


def parse_period(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dh])", text.strip())
    if match is None:
        raise ValueError(f"--since must read like 7d or 24h, not {text!r}")
    amount = int(match.group(1))
    return timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount)


def _numeric(name: str, ref: np.ndarray, cur: np.ndarray, kind: str = "number") -> FeatureDrift:
    statistic = float(wasserstein_distance(ref, cur)) / (float(np.std(ref)) or 1.0)
    return FeatureDrift(name, kind, round(statistic, 4), statistic > DRIFT_THRESHOLD)


def compare(reference: pd.DataFrame, current: pd.DataFrame) -> list[FeatureDrift]:
    """Each feature's drift statistic, reference against current (joined contacts, both), and
    the scores' when both hold an appetence column."""
    found = []
    if schema.OUTPUT_COLUMN in reference and schema.OUTPUT_COLUMN in current:
        found.append(_numeric(schema.OUTPUT_COLUMN, reference[schema.OUTPUT_COLUMN].to_numpy(float),
                              current[schema.OUTPUT_COLUMN].to_numpy(float), "score"))
    for column in NUMERIC:
        found.append(_numeric(column, reference[column].to_numpy(float), current[column].to_numpy(float)))
    for column in CATEGORICAL:
        values = list(schema.CATEGORIES[column])
        ref = reference[column].value_counts(normalize=True).reindex(values, fill_value=0).to_numpy()
        cur = current[column].value_counts(normalize=True).reindex(values, fill_value=0).to_numpy()
        statistic = float(jensenshannon(ref, cur, base=2))
        found.append(FeatureDrift(column, "category", round(statistic, 4), statistic > DRIFT_THRESHOLD))
    return found


def logged_rows(settings: Settings, since: timedelta) -> pd.DataFrame:
    """The rows scored in the period, from the prediction log."""
    engine = make_engine(Settings(database_url=settings.prediction_log_database_url))
    columns = [predictions.c[c] for c in (*schema.INPUT_COLUMNS, schema.OUTPUT_COLUMN)]
    try:
        with engine.connect() as conn:
            query = select(*columns).where(predictions.c.scored_at >= datetime.now(UTC) - since)
            return pd.read_sql(query, conn)
    finally:
        engine.dispose()


def joined(rows: pd.DataFrame, source: IndicatorSource, settings: Settings) -> pd.DataFrame:
    """The rows as the model sees them: validated, with their month's indicators (and their
    appetence, when they have one)."""
    features = source.table().join(schema.validate(rows), settings.max_indicator_age_months)
    if schema.OUTPUT_COLUMN in rows:
        features[schema.OUTPUT_COLUMN] = rows[schema.OUTPUT_COLUMN].to_numpy()
    return features


def served_pipeline(model_uri: str) -> Any | None:
    """The fitted pipeline of the model served, when it is a local directory (the image's
    model/); None otherwise (the scores are then not compared)."""
    path = Path(model_uri) / "artifacts" / "pipeline.pkl"
    return pickle.loads(path.read_bytes()) if path.is_file() else None  # noqa: S301 - ours


def report(settings: Settings, since: str, reference_csv: str | None = None) -> DriftReport:
    engine = make_engine(settings)
    try:
        source = IndicatorSource(engine, ttl_seconds=0)
        current = logged_rows(settings, parse_period(since))
        if current.empty:
            raise ValueError(f"the prediction log holds no row scored in the last {since}")
        reference = joined(read_contacts(reference_csv, settings), source, settings)
        pipeline = served_pipeline(settings.model_uri)
        if pipeline is not None:  # the training contacts' appetences, by the same pipeline
            reference[schema.OUTPUT_COLUMN] = pipeline.predict_proba(reference)[:, 1]
        features = compare(reference, joined(current, source, settings))
    finally:
        engine.dispose()
    return DriftReport(since, len(current), len(reference), features, settings.drift_share_threshold)


def write(result: DriftReport, output: Path) -> tuple[Path, Path]:
    output.mkdir(parents=True, exist_ok=True)
    summary_path, page_path = output / "drift.json", output / "drift.html"
    summary_path.write_text(json.dumps(result.summary(), indent=2) + "\n")
    rows = "\n".join(
        f"<tr class={'drift' if f.drifted else 'same'}><td>{html.escape(f.feature)}</td><td>{f.kind}</td>"
        f"<td>{f.statistic:.4f}</td><td>{'drifted' if f.drifted else 'no drift'}</td></tr>"
        for f in sorted(result.features, key=lambda f: -f.statistic))
    verdict = (f"{len(result.drifted)} of {len(result.features)} features drifted "
               f"({result.share:.0%}; alarm above {result.share_threshold:.0%})")
    page_path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chaos drift report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px}} tr.drift td{{background:#fdd}} tr.same td{{background:#efe}}
h1{{font-size:1.4em}}</style></head><body>
<h1>Drift of the customers scored in the last {html.escape(result.since)}</h1>
<p>{result.rows} rows scored against {result.reference_rows} training contacts.
Statistic: Wasserstein distance / reference std (numbers), Jensen-Shannon distance (categories);
drifted above {DRIFT_THRESHOLD}.</p>
<p><strong>{'ALARM: ' if result.alarm else ''}{verdict}</strong></p>
<table><tr><th>feature</th><th>kind</th><th>statistic</th><th>verdict</th></tr>
{rows}
</table></body></html>
""")
    return summary_path, page_path
