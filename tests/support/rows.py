"""Valid rows made from the input contract alone, for the tests that need rows to score or log
but not the labelled customers: they run wherever PostgreSQL is, without ../shared/data (the
GitLab unit-tests job, in the image)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chaos_pyfunc.contract import schema

# Months the shared socio_eco.csv covers, so every row has its indicators.
MONTHS = pd.period_range("2008-05", "2010-11", freq="M")


def contract_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of the request's columns: each category and whole number drawn within what
    schema.py allows, dates on the days of the months the indicators cover."""
    rng = np.random.default_rng(seed)
    months = MONTHS[rng.integers(0, len(MONTHS), n)]
    days = rng.integers(1, 29, n)
    columns: dict[str, object] = {
        schema.DATE: [f"{m.year:04d}-{m.month:02d}-{d:02d}" for m, d in zip(months, days, strict=True)]}
    for column in schema.CUSTOMER_COLUMNS:
        if column in schema.INTEGERS:
            rule = schema.INTEGERS[column]
            columns[column] = rng.integers(max(rule.low, -5000), min(rule.high, 5000) + 1, n)
        else:
            values = schema.CATEGORIES[column]
            columns[column] = [values[i] for i in rng.integers(0, len(values), n)]
    return pd.DataFrame(columns)[list(schema.INPUT_COLUMNS)]
