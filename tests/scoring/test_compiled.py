"""The compiled serving path gives the scikit-learn pipeline's answers, and steps aside when unsure."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, engine_with_indicators, request_rows
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.scoring import compiled
from chaos_pyfunc.scoring.compiled import TOLERANCE, Forest, build_forest, compile_pipeline, probe_rows
from chaos_pyfunc.scoring.model import Scorer
from chaos_pyfunc.scoring.socio_eco import IndicatorSource


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    with (REPO / "model" / "artifacts" / "pipeline.pkl").open("rb") as handle:
        return pickle.load(handle)  # noqa: S301 - our own artifact


FOREST = REPO / "model" / "artifacts" / "forest.so"


@pytest.fixture(scope="module")
def scorers(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> tuple[Scorer, Scorer]:
    """(compiled, reference) scorers on the same embedded indicators; the compiled one with the
    committed model's compiled trees."""
    url = f"sqlite:///{tmp_path_factory.mktemp('compiled') / 'chaos.db'}"
    settings = Settings(database_url=url)
    source = IndicatorSource(engine_with_indicators(url), ttl_seconds=3600)
    fast = Scorer(pipeline, source, settings, compile_pipeline(pipeline, FOREST, threads=2))
    assert fast.compiled is not None and fast.compiled.forest is not None
    return fast, Scorer(pipeline, source, settings, None)


@pytest.mark.parametrize(("size", "every"), [(38_429, 1), (1000, 1), (7, 1), (1, 10)])
def test_every_customer_scores_as_the_pipeline_does(scorers: tuple[Scorer, Scorer], customers: pd.DataFrame,
                                                    size: int, every: int) -> None:
    """All the customers at once, then in requests of ``size`` rows (one-row requests: every tenth
    customer, 3,843 of them): within 1e-9 of the pipeline."""
    fast, reference = scorers
    every_row = schema.as_signature_types(customers[list(schema.INPUT_COLUMNS)])
    rows = every_row.iloc[::every].reset_index(drop=True)
    assert len(rows) == -(-38_429 // every)
    expected = reference.score(rows)["appetence"].to_numpy()
    got = np.concatenate([fast.score(rows.iloc[i:i + size].reset_index(drop=True))["appetence"]
                          for i in range(0, len(rows), size)])
    assert len(got) == len(rows) and np.max(np.abs(got - expected)) <= TOLERANCE == 1e-9


def test_the_compiled_trees_answer_from_many_threads_at_once(scorers: tuple[Scorer, Scorer],
                                                             customers: pd.DataFrame) -> None:
    """MLflow predicts in a thread pool: requests scored at the same time get their own answers."""
    from concurrent.futures import ThreadPoolExecutor

    fast, reference = scorers
    batches = [schema.as_signature_types(request_rows(customers, n, seed=n)) for n in (1, 5, 300, 1000) * 4]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda rows: fast.score(rows)["appetence"].to_numpy(), batches))
    for rows, answer in zip(batches, answers, strict=True):
        assert np.max(np.abs(answer - reference.score(rows)["appetence"].to_numpy())) <= TOLERANCE


def test_one_row_takes_the_fast_path(scorers: tuple[Scorer, Scorer], customers: pd.DataFrame,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fast, _ = scorers
    monkeypatch.setattr(fast, "_reference", lambda rows: pytest.fail("took the reference path"))
    assert 0 < fast.score(schema.as_signature_types(request_rows(customers, 1)))["appetence"][0] < 1


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("job_type", "astronaut", "job_type: must be one of"),
        ("age", 35.5, "age: expected an integer"),
        ("age", 131.0, "age: must be 0..130"),
        ("date", "2010-1-05", "date: expected a date YYYY-MM-DD"),
        ("date", "2010-02-30", "date: expected a date YYYY-MM-DD"),
        ("date", "2012-06-15", "date: no socio-economic indicators"),
        ("balance", float("nan"), "balance: expected an integer"),
    ],
)
def test_bad_rows_get_the_reference_message(scorers: tuple[Scorer, Scorer], column: str, value: object,
                                            message: str) -> None:
    fast, reference = scorers
    rows, _ = probe_rows(fast.compiled, 3, seed=5)
    rows[column] = rows[column].astype(object)
    rows.loc[1, column] = value
    with pytest.raises(schema.InvalidInput, match=message) as from_fast:
        fast.score(rows)
    with pytest.raises(schema.InvalidInput) as from_reference:
        reference.score(rows)
    assert str(from_fast.value) == str(from_reference.value)


def test_fast_batch_reads_dates_categories_and_numbers() -> None:
    rows = pd.DataFrame([{"date": "2009-02-28", "age": 41.0, "job_type": "retired", "status": "single",
                          "education": "unknown", "has_default": "no", "balance": -12.0,
                          "has_housing_loan": "yes", "has_perso_loan": "no", "contact": "telephone",
                          "nb_contact": 2.0, "nb_day_last_contact": -1.0, "nb_contact_last_campaign": 0.0,
                          "result_last_campaign": "success"}])
    batch = schema.fast_batch(rows)
    assert batch is not None
    assert batch.months.tolist() == [2009 * 12 + 2]
    assert batch.days.tolist() == [28.0]
    assert batch.codes["job_type"].tolist() == [schema.CATEGORIES["job_type"].index("retired")]
    assert batch.integers["balance"].tolist() == [-12.0]


@pytest.mark.parametrize("change", [
    lambda r: r.drop(columns="age"),
    lambda r: r.assign(age=r["age"].astype(str)),
    lambda r: r.assign(contact=[["cellular"]] * len(r)),
    lambda r: r.assign(date=pd.to_datetime(r["date"])),
    lambda r: r.assign(nb_contact=np.inf),
    lambda r: pd.concat([r, r[["age"]]], axis=1),
])
def test_fast_batch_steps_aside_for_anything_unusual(pipeline: Pipeline, change) -> None:
    rows, _ = probe_rows(compiled._compile(pipeline), 4, seed=9)
    assert schema.fast_batch(rows) is not None
    assert schema.fast_batch(change(rows)) is None


def test_build_forest_compiles_the_trees_the_pipeline_holds(pipeline: Pipeline, tmp_path) -> None:
    classifier = pipeline[-1]
    library = build_forest(classifier, tmp_path / "forest.so")
    assert library is not None and library.stat().st_size > 0
    features = np.random.default_rng(0).normal(size=(500, classifier.n_features_in_)) * 2
    expected = classifier.predict_proba(features)[:, 1]
    assert np.max(np.abs(Forest(library, threads=1).predict(features) - expected)) <= TOLERANCE


def test_without_a_compiler_the_model_has_no_forest(pipeline: Pipeline, tmp_path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc on it
    assert build_forest(pipeline[-1], tmp_path / "forest.so") is None
    assert not (tmp_path / "forest.so").exists()


def test_without_compiled_trees_the_classifier_serves(pipeline: Pipeline, tmp_path) -> None:
    """No forest artifact (a model trained without gcc), or one that does not load here."""
    assert compile_pipeline(pipeline).forest is None
    broken = tmp_path / "forest.so"
    broken.write_bytes(b"not a shared library")
    served = compile_pipeline(pipeline, broken)
    assert served is not None and served.forest is None


def test_an_unknown_pipeline_shape_is_served_as_it_is(pipeline: Pipeline) -> None:
    other = Pipeline([("encode", pipeline[0]), ("classify", LogisticRegression())])
    assert compile_pipeline(other) is None


def test_a_compiled_form_that_disagrees_is_not_used(pipeline: Pipeline,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    predict = Forest.predict
    monkeypatch.setattr(Forest, "predict", lambda self, features: predict(self, features) + 1e-8)
    assert compile_pipeline(pipeline, FOREST) is None


def test_probe_rows_are_valid_and_cover_every_category(pipeline: Pipeline) -> None:
    rows, indicators = probe_rows(compiled._compile(pipeline), 200, seed=0)
    assert schema.fast_batch(rows) is not None
    assert indicators.shape == (200, 5)
    for column, values in schema.CATEGORIES.items():
        assert set(rows[column]) == set(values)


def test_listeners_are_told_the_same_rows_by_either_path(scorers: tuple[Scorer, Scorer],
                                                         customers: pd.DataFrame) -> None:
    """The prediction log and the score histogram see what was scored, whichever path scored it."""
    rows = schema.as_signature_types(request_rows(customers, 50, seed=4))
    told: list[tuple[schema.Batch, np.ndarray]] = []
    for scorer in scorers:
        scorer.listeners.append(lambda batch, scores: told.append((batch, scores)))
        try:
            scorer.score(rows)
        finally:
            scorer.listeners.pop()
    (fast, fast_scores), (reference, reference_scores) = told
    assert np.max(np.abs(fast_scores - reference_scores)) <= TOLERANCE
    assert np.array_equal(fast.months, reference.months) and np.array_equal(fast.days, reference.days)
    assert all(np.array_equal(fast.codes[c], reference.codes[c]) for c in schema.CATEGORIES)
    assert all(np.array_equal(fast.integers[c], reference.integers[c]) for c in schema.INTEGERS)
