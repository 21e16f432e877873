"""Why this customer: each appetence's exact reason codes, on request.

The model is gradient-boosted trees over one-hot categories (no categorical split), so the exact
Shapley values of each feature's contribution to the log-odds are cheap: TreeSHAP, by shap's
``TreeExplainer`` (the field's standard, its C++ core), on the fitted classifier, tree-path
dependent (the training contacts' counts down each branch are the background: nothing else is
kept). The encoded features are summed back to what the client knows: a one-hot group to its
column, the day of the month to ``date``, each indicator to its own name with the value the
as-of join used. The baseline (the log-odds of the average training contact) plus every
feature's effect equals the model's log-odds for the row; a reason says what moved this
customer's score in the model, not what would make them subscribe (it is not a causal effect).

shap brings numba and llvmlite (about 210 MB); they load only when a request asks for reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from chaos_pyfunc.contract import schema
from chaos_pyfunc.scoring.compiled import CompiledPipeline


@dataclass(frozen=True)
class Explained:
    """Every group's effect on each row's log-odds (rows x schema.REASON_NAMES), and the baseline."""

    effects: np.ndarray
    baseline: float


class Explainer:
    """Reason codes for a compiled pipeline's rows: its features matrix in, each group's effect out."""

    def __init__(self, compiled: CompiledPipeline) -> None:
        import shap  # heavy (numba): loaded with the first request that asks for reasons

        self.compiled = compiled
        self._explainer = shap.TreeExplainer(compiled.classifier, feature_perturbation="tree_path_dependent")
        self._groups = _groups(compiled)

    def explain(self, features: np.ndarray) -> Explained:
        """The Shapley values of ``features`` (the classifier's matrix), summed by group."""
        values = np.asarray(self._explainer.shap_values(features, check_additivity=False), dtype=np.float64)
        effects = values @ self._groups  # (rows, encoded features) @ (encoded features, groups)
        return Explained(effects, float(np.asarray(self._explainer.expected_value).reshape(-1)[0]))


def _groups(compiled: CompiledPipeline) -> np.ndarray:
    """The 0/1 matrix summing the encoded features into schema.REASON_NAMES' groups."""
    groups = np.zeros((compiled.width, schema.MAX_REASONS))
    for g, column in enumerate(schema.CATEGORIES):
        first = compiled.category_offsets[column]
        groups[first:first + len(schema.CATEGORIES[column]), g] = 1.0
    numbers = len(schema.CATEGORIES)
    for j in range(len(schema.INTEGERS) + len(schema.INDICATORS)):
        groups[compiled.numbers_start + j, numbers + j] = 1.0
    groups[compiled.width - 1, schema.MAX_REASONS - 1] = 1.0  # the day of the month: the date's
    return groups


def values_of(rows: pd.DataFrame, indicators: np.ndarray) -> list[list[Any]]:
    """Per row, the value of each of schema.REASON_NAMES: what the client sent, the indicators used."""
    sent = [rows[c].tolist() for c in (*schema.CATEGORIES, *schema.INTEGERS)]
    dates = [str(d)[:10] for d in rows[schema.DATE]]
    used = [indicators[:, j].tolist() for j in range(len(schema.INDICATORS))]
    return [list(values) for values in zip(*sent, *used, dates, strict=True)]


def top(explained: Explained, values: list[list[Any]], k: int) -> list[list[dict[str, Any]]]:
    """Each row's ``k`` largest effects, largest first: its feature, the value, the effect."""
    order = np.argsort(-np.abs(explained.effects), axis=1, kind="stable")[:, :k]
    names = schema.REASON_NAMES
    return [[{"feature": names[g], "value": _plain(row_values[g]), "effect": float(row_effects[g])}
             for g in row_order]
            for row_order, row_effects, row_values in zip(order, explained.effects, values, strict=True)]


def _plain(value: Any) -> Any:
    """A value as JSON writes it: NumPy's integers and floats as Python's."""
    return value.item() if isinstance(value, np.generic) else value
