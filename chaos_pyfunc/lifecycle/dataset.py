"""The data a model learns from and is judged on: labelled contacts joined to their indicators.

Training, the promotion gate and the retraining job read it the same way: the contacts from a
CSV file or the ``customers`` table, the indicators live from ``socio_eco``, through the very
validation and as-of join that serving uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import make_engine, read_customers, read_customers_csv, seed_embedded
from chaos_pyfunc.lifecycle import fingerprint
from chaos_pyfunc.scoring.socio_eco import IndicatorSource


@dataclass(frozen=True, eq=False)
class TrainingData:
    source: str                # the CSV path, or "table:customers"
    features: pd.DataFrame     # validated contacts with their month's indicators
    labels: np.ndarray         # True where the contact subscribed
    fingerprints: dict[str, fingerprint.TableFingerprint]


def read_contacts(customers_csv: str | None, settings: Settings) -> pd.DataFrame:
    """The labelled contacts from ``customers_csv``, or from the customers table if None."""
    if customers_csv is not None:
        frame = read_customers_csv(customers_csv)
        frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
        return frame
    engine = make_engine(settings)
    try:
        return read_customers(engine)
    finally:
        engine.dispose()


def load(customers_csv: str | None, settings: Settings) -> TrainingData:
    seed_embedded(settings)
    contacts = read_contacts(customers_csv, settings)
    engine = make_engine(settings)
    try:
        indicators = IndicatorSource(engine, ttl_seconds=0).table()  # one read: one state of it
        # The very path `predict` takes: same validation, same as-of join.
        features = indicators.join(schema.validate(contacts), settings.max_indicator_age_months)
    finally:
        engine.dispose()
    return TrainingData(customers_csv or "table:customers", features,
                        (contacts[schema.LABEL] == "yes").to_numpy(),
                        fingerprint.of_training_data(contacts, indicators.frame))

