"""Happy paths of the real scoring server on PostgreSQL: every request form, row order, the
same numbers as the model loaded in process, empty and the largest requests; and the model
under MLflow's own server."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import request_rows

from chaos_pyfunc.config import CONFIG_FILE_VAR, ENV_VARS, Settings
from chaos_pyfunc.contract.schema import INPUT_COLUMNS, OUTPUT_COLUMN, as_signature_types

from .conftest import (
    MODEL_DIR,
    invoke,
    json_body,
    mlflow_serve_command,
    predictions,
    running_server,
    score,
)

pytestmark = pytest.mark.e2e

JSON_FORMS = ("dataframe_split", "dataframe_records", "instances", "inputs_records", "inputs_columns")
TOLERANCE = 1e-9


def assert_close(got: list[float], expected: list[float] | np.ndarray) -> None:
    assert len(got) == len(expected)
    diff = np.max(np.abs(np.asarray(got, dtype=float) - np.asarray(expected, dtype=float)), initial=0.0)
    assert diff < TOLERANCE, f"largest difference {diff}"


@pytest.fixture(scope="module")
def rows(customers: pd.DataFrame) -> pd.DataFrame:
    """60 real contacts spread over the months of the campaign."""
    return request_rows(customers, 60, seed=7)


@pytest.fixture(scope="module")
def reference(pg_server: str, rows: pd.DataFrame) -> list[float]:
    return score(pg_server, rows, "dataframe_split")


def test_ping(pg_server: str) -> None:
    assert requests.get(f"{pg_server}/ping", timeout=5).status_code == 200


def test_rows_cover_many_months(rows: pd.DataFrame) -> None:
    assert rows["date"].str[:7].nunique() >= 10


@pytest.mark.parametrize("form", [*JSON_FORMS, "csv"])
def test_every_request_form_gives_the_same_predictions(
    pg_server: str, rows: pd.DataFrame, reference: list[float], form: str
) -> None:
    assert_close(score(pg_server, rows, form), reference)


def test_predictions_are_probabilities(reference: list[float], rows: pd.DataFrame) -> None:
    assert len(reference) == len(rows)
    assert all(isinstance(p, float) and math.isfinite(p) and 0.0 <= p <= 1.0 for p in reference)
    assert len(set(reference)) > len(reference) // 2, "the predictions hardly depend on the rows"


def test_row_order_is_kept(pg_server: str, rows: pd.DataFrame, reference: list[float]) -> None:
    permutation = np.random.default_rng(3).permutation(len(rows))
    got = score(pg_server, rows.iloc[permutation].reset_index(drop=True), "dataframe_records")
    assert_close(got, np.asarray(reference)[permutation])


def test_a_row_scores_the_same_alone_or_in_a_batch(
    pg_server: str, rows: pd.DataFrame, reference: list[float]
) -> None:
    for i in (0, 17, 59):
        assert_close(score(pg_server, rows.iloc[[i]], "instances"), [reference[i]])


def test_columns_outside_the_contract_are_ignored(
    pg_server: str, customers: pd.DataFrame, rows: pd.DataFrame, reference: list[float]
) -> None:
    """The label, the post-call duration and any column order: same predictions."""
    full = customers.sample(n=60, random_state=7).reset_index(drop=True)
    assert full[list(INPUT_COLUMNS)].equals(rows)
    shuffled = full[list(reversed(full.columns))]
    assert {"duration_contact", "subscription"} <= set(shuffled.columns)
    assert_close(score(pg_server, shuffled, "dataframe_split"), reference)


def test_server_matches_the_model_loaded_in_process(
    pg_server: str, indicators_pg_url: str, rows: pd.DataFrame, reference: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in (*ENV_VARS.values(), CONFIG_FILE_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CHAOS_DATABASE_URL", indicators_pg_url)
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_model prepends model/code
    model = mlflow.pyfunc.load_model(str(MODEL_DIR))
    local = model.predict(as_signature_types(rows))
    assert list(local.columns) == [OUTPUT_COLUMN]
    assert_close(reference, local[OUTPUT_COLUMN].to_numpy())


@pytest.mark.parametrize("form", ["dataframe_split", "inputs_columns", "csv"])
def test_zero_rows_give_no_predictions(pg_server: str, rows: pd.DataFrame, form: str) -> None:
    """The columns with no data (a header-only CSV): 200 and no predictions."""
    empty = rows.iloc[:0]
    if form == "dataframe_split":
        assert json_body(empty, form) == {"dataframe_split": {"columns": list(rows.columns), "data": []}}
    assert predictions(invoke(pg_server, empty, form)) == []


def test_the_largest_request_allowed_is_scored_row_for_row(pg_server: str,
                                                           customers: pd.DataFrame) -> None:
    """max_rows (10,000 by default) real rows resampled with replacement, in records form (the
    biggest body per row): each prediction is its row's, in order."""
    distinct = request_rows(customers, 500, seed=11)
    distinct_predictions = np.asarray(score(pg_server, distinct))
    picks = np.random.default_rng(5).integers(0, len(distinct), Settings().max_rows)
    big = distinct.iloc[picks].reset_index(drop=True)
    got = predictions(invoke(pg_server, big, "dataframe_records", timeout=60))
    assert_close(got, distinct_predictions[picks])


def test_plain_mlflow_models_serve_still_serves_the_model(
    indicators_pg_url: str, rows: pd.DataFrame, reference: list[float], tmp_path: Path
) -> None:
    """The model stays a standard pyfunc: MLflow's own server, without the gateway, scores it."""
    env = {"CHAOS_DATABASE_URL": indicators_pg_url}
    with running_server(env, tmp_path, tmp_path / "server.log", mlflow_serve_command) as url:
        assert_close(score(url, rows), reference)
