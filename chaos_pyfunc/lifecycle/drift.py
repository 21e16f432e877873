"""`chaos drift --since 7d --output DIR`: are the customers scored lately still like the ones the
model learned from?

The period's rows come from the prediction log (the ``prediction_rows`` view). The reference is
the training data of the version that scored most of them: the contacts it learned from, reread
from this environment's own ``customers`` table (its run records their dates and fingerprint in
the tracking store, MLFLOW_TRACKING_URI, never a customer row: the registry is read by every
environment), with the version's own pipeline for the scores; the report says when the table's
months no longer match what the version learned. Without a registry, or for a version whose run
recorded no fingerprint, the whole ``customers`` table and the local model; ``--reference`` CSV
names one. Both go through the serving
path's validation and as-of join, so the indicators of each contact's month are compared too, and
the scores: the logged appetences against the training contacts' appetences by the served pipeline.
Evidently computes each feature's statistic (Wasserstein distance over the reference's standard
deviation for numbers, Jensen-Shannon distance for categories; drifted at ``DRIFT_THRESHOLD``)
and draws the HTML report; the JSON summary is ours. The exit code is 1 when the share of drifted
features exceeds ``drift_share_threshold``. Evidently 0.7.23 needs pandas below 3 (it imports
``infer_dtype_from_object``), hence pandas 2.3 in the locks.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.presets import DataDriftPreset
from mlflow.exceptions import MlflowException
from sqlalchemy import select

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import INDICATORS, make_engine
from chaos_pyfunc.lifecycle import fingerprint
from chaos_pyfunc.lifecycle.dataset import read_contacts
from chaos_pyfunc.lifecycle.registry import version_uri
from chaos_pyfunc.predlog.prediction_table import parse_period, prediction_rows
from chaos_pyfunc.scoring.socio_eco import IndicatorSource

log = logging.getLogger(__name__)

DRIFT_THRESHOLD = 0.1
NUMBER_METHOD, CATEGORY_METHOD = "wasserstein", "jensenshannon"  # Evidently's names
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
    reference: str  # where the reference came from
    model_version: str | None  # the version that scored most of the period's rows
    features: list[FeatureDrift]
    share_threshold: float
    snapshot: Snapshot | None = field(default=None, repr=False)  # Evidently's, for the HTML page

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
        return {"since": self.since, "rows": self.rows, "model_version": self.model_version,
                "reference": self.reference, "reference_rows": self.reference_rows,
                "drifted": self.drifted, "drifted_share": round(self.share, 4),
                "share_threshold": self.share_threshold, "alarm": self.alarm,
                "threshold": DRIFT_THRESHOLD, "features": [asdict(f) for f in self.features]}


def compare(reference: pd.DataFrame, current: pd.DataFrame,
            share_threshold: float) -> tuple[list[FeatureDrift], Snapshot]:
    """Each feature's drift statistic, reference against current (joined contacts, both), and
    the scores' when both hold an appetence column; with Evidently's report of it, whose verdict
    on the whole is drift above ``share_threshold`` of the features, as ours."""
    numbers = [*NUMERIC]
    if schema.OUTPUT_COLUMN in reference and schema.OUTPUT_COLUMN in current:
        numbers.insert(0, schema.OUTPUT_COLUMN)
    columns = [*numbers, *CATEGORICAL]
    definition = DataDefinition(numerical_columns=numbers, categorical_columns=list(CATEGORICAL))
    preset = DataDriftPreset(columns=columns, num_method=NUMBER_METHOD, cat_method=CATEGORY_METHOD,
                             threshold=DRIFT_THRESHOLD, drift_share=share_threshold,
                             include_tests=False)
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition))
    statistics = {metric["config"]["column"]: float(metric["value"])
                  for metric in snapshot.dict()["metrics"] if metric["config"].get("column") in columns}
    found = []
    for column in columns:
        kind = "score" if column == schema.OUTPUT_COLUMN else "number" if column in numbers else "category"
        statistic = statistics[column]  # a KeyError here: Evidently changed its report's shape
        found.append(FeatureDrift(column, kind, round(statistic, 4), statistic >= DRIFT_THRESHOLD))
    return found, snapshot


def logged_rows(settings: Settings, since: timedelta) -> pd.DataFrame:
    """The rows scored in the period, from the prediction log, with the version that scored them."""
    # The environment's settings (timeouts, pool) on the prediction log's database.
    engine = make_engine(settings.replaced(database_url=settings.prediction_log_database_url))
    columns = [prediction_rows.c[c] for c in ("model_version", *schema.INPUT_COLUMNS, schema.OUTPUT_COLUMN)]
    try:
        with engine.connect() as conn:
            query = select(*columns).where(prediction_rows.c.scored_at >= datetime.now(UTC) - since)
            return pd.read_sql(query, conn)
    finally:
        engine.dispose()


@dataclass(frozen=True, eq=False)
class Reference:
    contacts: pd.DataFrame  # the training contacts, as sent (INPUT_COLUMNS)
    pipeline: Any | None    # the fitted pipeline that scores them; None: the scores are not compared
    source: str


def reference_of(settings: Settings, version: str | None, reference_csv: str | None) -> Reference:
    """The training data to compare with: ``reference_csv``; else the contacts ``version`` learned
    from, reread from the customers table; else the whole customers table (and the local model's
    pipeline)."""
    if reference_csv is None and version is not None and os.environ.get("MLFLOW_TRACKING_URI"):
        try:
            return _version_reference(settings, version)
        except MlflowException as exc:  # no registry, no such version, a run without a fingerprint
            log.warning("what version %s learned from could not be read from the tracking store (%s): "
                        "the customers table stands in", version, exc.error_code)
    source = reference_csv or "the customers table"
    return Reference(read_contacts(reference_csv, settings), served_pipeline(settings.model_uri), source)


def _version_reference(settings: Settings, version: str) -> Reference:
    client = mlflow.MlflowClient()
    name = settings.registered_model
    run_id = client.get_model_version(name, version).run_id
    if run_id is None:
        raise MlflowException(f"version {version} has no training run")
    learned = fingerprint.from_tags(client.get_run(run_id).data.tags)
    if learned is None or not learned["customers"].earliest:
        raise MlflowException(f"the run of version {version} recorded no fingerprint of its contacts")
    first, last = learned["customers"].earliest, learned["customers"].latest
    table = read_contacts(None, settings)
    contacts = table[(table[schema.DATE] >= first) & (table[schema.DATE] <= last)]
    now = fingerprint.of_table(contacts, fingerprint.CUSTOMER_FIELDS)
    rewritten = fingerprint.rewritten(learned["customers"], now)
    source = f"the contacts version {version} learned from ({first} to {last}, the customers table)"
    if rewritten:
        source += f"; the table's months {', '.join(rewritten)} differ from what it learned"
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(mlflow.artifacts.download_artifacts(version_uri(name, version), dst_path=scratch))
        pipeline = served_pipeline(str(model))
    return Reference(contacts, pipeline, source)


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
        if len(current) < settings.drift_min_rows:  # a few hundred rows drift by chance alone
            raise ValueError(f"the prediction log holds {len(current)} rows scored in the last {since}, "
                             f"fewer than drift_min_rows ({settings.drift_min_rows}): too few to judge")
        versions = current["model_version"].dropna()
        version = None if versions.empty else str(versions.mode().iloc[0])
        training = reference_of(settings, version, reference_csv)
        if training.contacts.empty:  # Evidently's own message would name a column, not the cause
            raise ValueError(f"the reference, {training.source}, holds no contact: load the training "
                             "customers (chaos db load customers CSV) or name a CSV with --reference")
        reference = joined(training.contacts, source, settings)
        if training.pipeline is not None:  # the training contacts' appetences, by the same pipeline
            reference[schema.OUTPUT_COLUMN] = training.pipeline.predict_proba(reference)[:, 1]
        features, snapshot = compare(reference, joined(current, source, settings),
                                     settings.drift_share_threshold)
    finally:
        engine.dispose()
    return DriftReport(since, len(current), len(reference), training.source, version, features,
                       settings.drift_share_threshold, snapshot)


def write(result: DriftReport, output: Path) -> tuple[Path, Path]:
    """``drift.json`` (our summary, for machines) and ``drift.html`` (Evidently's report)."""
    output.mkdir(parents=True, exist_ok=True)
    summary_path, page_path = output / "drift.json", output / "drift.html"
    summary_path.write_text(json.dumps(result.summary(), indent=2) + "\n")
    if result.snapshot is None:
        raise ValueError("this report has no Evidently snapshot to draw")
    result.snapshot.save_html(str(page_path))
    return summary_path, page_path
