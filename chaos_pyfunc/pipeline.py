"""The scikit-learn pipeline: every transformation from enriched rows to a probability.

Only scikit-learn's own classes, so the pickle loads wherever scikit-learn of the same version
is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from chaos_pyfunc import schema
from chaos_pyfunc.db import INDICATORS

CATEGORICAL = tuple(schema.CATEGORIES)
NUMERIC = (*schema.INTEGERS, *INDICATORS)


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float = 0.03
    max_iter: int = 600
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 30
    l2_regularization: float = 0.0
    random_state: int = 0

    def as_params(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Hyperparameters:
        """The hyperparameters a training run logged (as text); the default for any it did not."""
        default = cls()
        return cls(**{f.name: type(getattr(default, f.name))(params[f.name])
                      for f in fields(cls) if f.name in params})


def day_of_month(frame: pd.DataFrame) -> np.ndarray:
    """The contact's day of the month: adds about 0.01 of ROC AUC on both splits (measured);
    the calendar month is left out, it learns the past campaigns and hurts the time split."""
    return frame[schema.DATE].dt.day.to_numpy().reshape(-1, 1)


def build_pipeline(hyper: Hyperparameters = Hyperparameters()) -> Pipeline:
    """One-hot categories (fixed by the input contract), scaled numbers, gradient boosting."""
    encode = ColumnTransformer(
        [
            (
                "categories",
                OneHotEncoder(categories=[list(schema.CATEGORIES[c]) for c in CATEGORICAL],
                              handle_unknown="error", sparse_output=False),
                list(CATEGORICAL),
            ),
            ("numbers", StandardScaler(), list(NUMERIC)),
            ("day", FunctionTransformer(day_of_month, feature_names_out="one-to-one"), [schema.DATE]),
        ],
        remainder="drop",
    )
    return Pipeline([("encode", encode), ("classify", HistGradientBoostingClassifier(**hyper.as_params()))])
