"""The OpenAPI document's dates: exactly the days the as-of join scores."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaos_pyfunc.contract import openapi
from chaos_pyfunc.scoring.socio_eco import IndicatorTable, accepted_months

SEED = Path(__file__).resolve().parents[2] / "chaos_pyfunc" / "seed_indicators.csv"


@pytest.mark.parametrize("max_age", [0, 3])
def test_the_date_pattern_admits_exactly_the_days_the_join_scores(max_age: int) -> None:
    frame = pd.read_csv(SEED, parse_dates=["date"])
    table = IndicatorTable.of(frame.sort_values("date").reset_index(drop=True))
    pattern = re.compile(openapi.date_pattern(accepted_months(table.months, max_age)))
    days = pd.date_range("2007-01-01", "2012-12-31", freq="D")
    months = (days.year * 12 + days.month).to_numpy()
    scored = [table.rows_for(np.array([m]), max_age) is not None for m in months]
    admitted = [pattern.fullmatch(day) is not None for day in days.strftime("%Y-%m-%d")]
    assert admitted == scored
    assert sum(scored) > 365  # the seed covers years


@pytest.mark.parametrize("text", ["0000-00-00", "2010-04-31", "2010-13-01", "2010-1-01", "2010-02-30"])
def test_no_impossible_day_is_admitted(text: str) -> None:
    assert not re.fullmatch(openapi.ANY_REAL_DAY, text)  # a 29 February in any year, though
    assert not re.fullmatch(openapi.date_pattern(list(range(2000 * 12, 2020 * 12))), text)
    assert not re.fullmatch(openapi.date_pattern(list(range(2000 * 12, 2020 * 12))), "2009-02-29")


def test_without_indicators_at_start_any_real_day_is_admitted() -> None:
    customer = openapi.spec(openapi.Settings())["components"]["schemas"]["Customer"]
    assert customer["properties"]["date"]["pattern"] == openapi.ANY_REAL_DAY
    assert re.fullmatch(openapi.ANY_REAL_DAY, "2031-02-28")
