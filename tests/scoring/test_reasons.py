"""The reason codes (reasons.py) of the committed model, in process: exact against the fitted
pipeline's own log-odds for every one of the 38,429 customers, the same on the compiled serving
path and on the reference path, named by what the client knows, largest first."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.server import MODEL_DIR

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import request_body, schema
from chaos_pyfunc.contract.answers import Refusal
from chaos_pyfunc.db import INDICATORS
from chaos_pyfunc.scoring.compiled import compile_pipeline
from chaos_pyfunc.scoring.model import Scorer, reasons_asked
from chaos_pyfunc.scoring.socio_eco import IndicatorSource

PIPELINE = pickle.loads((MODEL_DIR / "artifacts" / "pipeline.pkl").read_bytes())  # noqa: S301


@pytest.fixture(scope="module")
def scorers(module_pg_url: str) -> Iterator[tuple[Scorer, Scorer]]:
    """The compiled serving path and the reference path (scikit-learn's pipeline) on one source."""
    from chaos_pyfunc.db import make_engine

    settings = Settings(database_url=module_pg_url)
    engine = make_engine(settings)
    source = IndicatorSource(engine, ttl_seconds=3600)
    compiled = compile_pipeline(PIPELINE, MODEL_DIR / "artifacts" / "forest.so")
    assert compiled is not None
    yield Scorer(PIPELINE, source, settings, compiled), Scorer(PIPELINE, source, settings, None)
    engine.dispose()


def rows_of(customers: pd.DataFrame) -> pd.DataFrame:
    return schema.as_signature_types(customers[list(schema.INPUT_COLUMNS)])


def test_every_customer_s_effects_add_up_to_the_pipeline_s_log_odds(scorers, customers: pd.DataFrame) -> None:
    fast, _ = scorers
    rows = rows_of(customers)
    answer = fast.score(rows, schema.MAX_REASONS)
    assert len(answer) == 38_429
    effects = np.array([[r["effect"] for r in row] for row in answer[schema.REASONS]])
    enriched = fast._reference(rows)[2]
    log_odds = PIPELINE.decision_function(enriched)  # scikit-learn's own, not shap's reading of it
    gap = np.max(np.abs(effects.sum(axis=1) + answer[schema.BASELINE].to_numpy() - log_odds))
    print(f"largest |baseline + effects - decision_function| over 38,429 customers: {gap:.2e}")
    assert gap < 1e-6
    assert np.allclose(1 / (1 + np.exp(-log_odds)), answer[schema.OUTPUT_COLUMN], atol=1e-9)


def test_the_compiled_path_and_the_reference_path_give_the_same_reasons(scorers,
                                                                       customers: pd.DataFrame) -> None:
    fast, reference = scorers
    rows = rows_of(customers.sample(n=500, random_state=3))
    a, b = fast.score(rows, 5), reference.score(rows, 5)
    assert [[r["feature"] for r in row] for row in a[schema.REASONS]] == \
           [[r["feature"] for r in row] for row in b[schema.REASONS]]
    effects_a = np.array([[r["effect"] for r in row] for row in a[schema.REASONS]])
    effects_b = np.array([[r["effect"] for r in row] for row in b[schema.REASONS]])
    assert np.max(np.abs(effects_a - effects_b)) < 1e-9
    assert a[schema.BASELINE].tolist() == b[schema.BASELINE].tolist()


def test_reasons_are_named_as_the_client_knows_them_largest_first_with_the_values_used(
        scorers, customers: pd.DataFrame) -> None:
    fast, _ = scorers
    rows = rows_of(customers.sample(n=50, random_state=4))
    answer = fast.score(rows, schema.MAX_REASONS)
    table = fast.source.table()
    for (_, row), given in zip(rows.iterrows(), answer[schema.REASONS], strict=True):
        assert sorted(r["feature"] for r in given) == sorted(schema.REASON_NAMES)  # each group once: 19
        sizes = [abs(r["effect"]) for r in given]
        assert sizes == sorted(sizes, reverse=True)
        by_name = {r["feature"]: r["value"] for r in given}
        for column in (*schema.CATEGORIES, *schema.INTEGERS):
            assert by_name[column] == row[column]
        assert by_name[schema.DATE] == row[schema.DATE]
        month = pd.Period(row[schema.DATE], "M")
        used = table.rows_for(np.array([month.year * 12 + month.month]), 3)
        assert used is not None
        assert [by_name[name] for name in INDICATORS] == pytest.approx(used[0].tolist())


def test_without_the_option_the_answer_is_the_appetence_alone(scorers, customers: pd.DataFrame) -> None:
    fast, _ = scorers
    answer = fast.score(rows_of(customers.head(3)))
    assert list(answer.columns) == [schema.OUTPUT_COLUMN]


@pytest.mark.parametrize("value", [0, None])
def test_no_reasons_asked(value) -> None:
    assert reasons_asked(None) == 0 and reasons_asked({"reasons": 0}) == 0
    assert reasons_asked({} if value is None else {"reasons": value}) == 0


@pytest.mark.parametrize("value", [20, -1, True, 2.5, "3"])
def test_a_bad_number_of_reasons_names_the_field(value) -> None:
    with pytest.raises(schema.InvalidInput, match=r"params\.reasons: expected a whole number from 1 to 19"):
        reasons_asked({"reasons": value})
    with pytest.raises(Refusal, match=r"params\.reasons: expected a whole number from 1 to 19"):
        request_body.asked_in({"params": {"reasons": value if value != 0 else 20}})
    assert request_body.asked("3", "reasons", text=True) == 3  # a query string's text


def test_chaos_score_writes_the_reasons_as_columns(tmp_path: Path, module_pg_url: str, customers,
                                                   monkeypatch) -> None:
    from chaos_pyfunc.scoring import batch

    monkeypatch.setenv("CHAOS_DATABASE_URL", module_pg_url)
    source = tmp_path / "in.csv"
    customers.head(120).to_csv(source, index=False)
    report = batch.score_csv(str(MODEL_DIR), source, tmp_path / "out.csv", chunk_rows=50, stream=None,
                             reasons_k=3)
    out = pd.read_csv(tmp_path / "out.csv")
    assert report.rows == 120
    assert [c for c in out.columns if c.startswith("reason_")] == [
        f"reason_{rank}_{part}" for rank in (1, 2, 3) for part in ("feature", "effect")]
    assert out["reason_1_feature"].isin(schema.REASON_NAMES).all()
    assert (out["reason_1_effect"].abs() >= out["reason_2_effect"].abs()).all()
    assert out[schema.BASELINE].nunique() == 1
