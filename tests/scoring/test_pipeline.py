import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from chaos_pyfunc.contract import schema
from chaos_pyfunc.scoring.pipeline import Hyperparameters, build_pipeline, day_of_month
from chaos_pyfunc.scoring.socio_eco import IndicatorSource, enrich


@pytest.fixture(scope="module")
def enriched(customers: pd.DataFrame, tmp_path_factory) -> tuple[pd.DataFrame, np.ndarray]:
    from conftest import engine_with_indicators

    engine = engine_with_indicators(f"sqlite:///{tmp_path_factory.mktemp('db') / 'c.db'}")
    rows = customers.sample(8000, random_state=0).reset_index(drop=True)
    features = enrich(rows, IndicatorSource(engine, 0), 3)
    engine.dispose()
    return features, (rows[schema.LABEL] == "yes").to_numpy()


def test_day_of_month_reads_the_contact_date() -> None:
    frame = pd.DataFrame({"date": pd.to_datetime(["2010-11-02", "2009-01-31"])})
    assert day_of_month(frame).ravel().tolist() == [2, 31]


def test_pipeline_learns_something_real(enriched) -> None:
    features, labels = enriched
    fitted = build_pipeline(Hyperparameters(max_iter=100)).fit(features[:6000], labels[:6000])
    scores = fitted.predict_proba(features[6000:])[:, 1]
    assert roc_auc_score(labels[6000:], scores) > 0.72  # about 0.75 on 6000 rows


def test_pipeline_ignores_columns_outside_the_contract(enriched) -> None:
    features, labels = enriched
    fitted = build_pipeline(Hyperparameters(max_iter=20)).fit(features, labels)
    noisy = features.assign(duration_contact=9999, extra="x")
    assert np.array_equal(fitted.predict_proba(noisy), fitted.predict_proba(features))


def test_pipeline_refuses_an_unknown_category_rather_than_guess(enriched) -> None:
    features, labels = enriched
    fitted = build_pipeline(Hyperparameters(max_iter=5)).fit(features, labels)
    with pytest.raises(ValueError, match="unknown categor"):
        fitted.predict_proba(features.head(1).assign(job_type="pilot"))
