"""The trained pipeline compiled for serving: the one-hot encoding and scaling as a few NumPy
operations, and the trees compiled to C by tl2cgen (treelite's compiler) at training time.

The fitted pipeline's ``predict_proba`` spends its milliseconds in pandas column handling and in
117 per-tree calls of scikit-learn (each an OpenMP region); the compiled trees take 0.03 ms for
one row and about 3 ms for 1000 on one thread (scikit-learn: 2.2 and 7.3 ms here). ``chaos train``
writes the compiled trees as the model's ``forest`` artifact (a shared library, built with the
machine's C compiler, ``quantize`` on: thresholds compared as integers, exactly). At load,
``compile_pipeline`` checks the compiled form against the pipeline on probe rows; a model without
the artifact, or whose library does not load here (another platform), is served by
scikit-learn's trees on the same features.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import INDICATORS

log = logging.getLogger(__name__)

FOREST_ARTIFACT = "forest"
# How far the compiled pipeline may differ from scikit-learn's on the probe rows.
TOLERANCE = 1e-9
PROBE_SIZES = ((1, 0), (48, 1), (1000, 2))  # (rows, seed): one row, a small and a large batch


class NotCompilable(ValueError):
    """The pipeline is not the shape this module knows how to compile."""


def build_forest(classifier: Any, path: Path) -> Path | None:
    """The classifier's trees as a shared library at ``path`` (tl2cgen); None, logged, when this
    is not a HistGradientBoostingClassifier or the machine has no C compiler."""
    if not isinstance(classifier, HistGradientBoostingClassifier):
        return None
    if shutil.which("gcc") is None:
        log.warning("no C compiler (gcc): the model is saved without compiled trees, and is served "
                    "by scikit-learn's, about 2.5 times slower")
        return None
    import tl2cgen  # training only: the server loads the library with tl2cgen.Predictor
    import treelite.sklearn

    tl2cgen.export_lib(treelite.sklearn.import_model(classifier), toolchain="gcc", libpath=str(path),
                       params={"quantize": 1, "parallel_comp": 2}, nthread=2)
    return path


class Forest:
    """The compiled trees: P(subscription) of each row of a feature matrix. tl2cgen's predictor
    is called by one thread at a time (MLflow predicts in a thread pool); it spreads a batch over
    ``threads`` threads itself."""

    def __init__(self, library: Path, threads: int) -> None:
        import tl2cgen

        self._tl2cgen = tl2cgen
        self._predictor = tl2cgen.Predictor(str(library), nthread=threads)
        self._lock = threading.Lock()

    def predict(self, features: np.ndarray) -> np.ndarray:
        matrix = self._tl2cgen.DMatrix(np.ascontiguousarray(features, dtype=np.float64))
        with self._lock:
            return np.asarray(self._predictor.predict(matrix), dtype=np.float64).reshape(-1)


def threads_for(setting: int) -> int:
    """``predict_threads``: 0 means the CPUs this process may run on."""
    return setting or len(os.sched_getaffinity(0))


@dataclass(frozen=True, eq=False)
class CompiledPipeline:
    """One-hot categories, scaled numbers and the day of month, then the trees."""

    category_offsets: dict[str, int]  # first feature column of each category's one-hot block
    numbers_start: int                # first feature column of the scaled numbers
    mean: np.ndarray                  # StandardScaler over schema.INTEGERS then INDICATORS
    scale: np.ndarray
    classifier: HistGradientBoostingClassifier
    forest: Forest | None = None      # the compiled trees; None: the classifier's own

    @property
    def width(self) -> int:
        """Number of features: the one-hot blocks, the scaled numbers, the day of month."""
        return self.numbers_start + len(self.mean) + 1

    def features(self, batch: schema.Batch, indicators: np.ndarray) -> np.ndarray:
        """The matrix the classifier sees, column for column as the ColumnTransformer makes it."""
        n = len(batch)
        out = np.zeros((n, self.width))
        rows = np.arange(n)
        for column, first in self.category_offsets.items():
            out[rows, first + batch.codes[column]] = 1.0
        numbers = np.column_stack([*(batch.integers[c] for c in schema.INTEGERS), indicators])
        out[:, self.numbers_start:self.numbers_start + len(self.mean)] = (numbers - self.mean) / self.scale
        out[:, -1] = batch.days
        return out

    def appetence(self, batch: schema.Batch, indicators: np.ndarray) -> np.ndarray:
        """P(subscription) of each row."""
        features = self.features(batch, indicators)
        if self.forest is not None:
            return self.forest.predict(features)
        return self.classifier.predict_proba(features)[:, 1]


def _compile(pipeline: Any) -> CompiledPipeline:
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise NotCompilable("expected Pipeline([encode, classify])")
    encode, classifier = pipeline[0], pipeline[-1]
    if not (isinstance(encode, ColumnTransformer) and isinstance(classifier, HistGradientBoostingClassifier)):
        raise NotCompilable("expected a ColumnTransformer then a HistGradientBoostingClassifier")
    parts = {name: (transformer, list(columns)) for name, transformer, columns in encode.transformers_}
    if list(parts) != ["categories", "numbers", "day"]:
        raise NotCompilable(f"unexpected transformers {list(parts)}")
    onehot, categorical = parts["categories"]
    scaler, numeric = parts["numbers"]
    if (not isinstance(onehot, OneHotEncoder) or onehot.drop_idx_ is not None
            or [list(c) for c in onehot.categories_] != [list(schema.CATEGORIES[c]) for c in categorical]):
        raise NotCompilable("the one-hot encoder does not use the schema's categories")
    if not isinstance(scaler, StandardScaler) or numeric != [*schema.INTEGERS, *INDICATORS]:
        raise NotCompilable("unexpected numeric columns or scaler")
    offsets, first = {}, 0
    for column in categorical:
        offsets[column] = first
        first += len(schema.CATEGORIES[column])
    width = first + len(numeric) + 1
    if classifier.n_features_in_ != width:
        raise NotCompilable(f"the classifier takes {classifier.n_features_in_} features, not {width}")
    mean = scaler.mean_ if scaler.with_mean else np.zeros(len(numeric))
    scale = scaler.scale_ if scaler.with_std else np.ones(len(numeric))
    return CompiledPipeline(offsets, first, np.asarray(mean, dtype=np.float64),
                            np.asarray(scale, dtype=np.float64), classifier)


def probe_rows(compiled: CompiledPipeline, n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` made-up valid requests and indicators around the training data (every category,
    numbers within three standard deviations): rows on which both forms must agree."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({schema.DATE: [f"{d:%Y-%m-%d}" for d in pd.Timestamp("2008-05-01")
                                       + pd.to_timedelta(rng.integers(0, 940, n), unit="D")]})
    for column, values in schema.CATEGORIES.items():
        rows[column] = [values[i % len(values)] for i in rng.permutation(n)]
    spread = rng.normal(size=(n, len(compiled.mean))) * 3 * compiled.scale + compiled.mean
    for j, (column, rule) in enumerate(schema.INTEGERS.items()):
        rows[column] = np.clip(np.round(spread[:, j]), rule.low, rule.high)
    return rows[list(schema.INPUT_COLUMNS)], spread[:, len(schema.INTEGERS):]


def _reference(pipeline: Pipeline, rows: pd.DataFrame, indicators: np.ndarray) -> np.ndarray:
    """The pipeline's own answer, on the frame the training path builds (validate + join)."""
    enriched = schema.validate(rows)
    enriched[list(INDICATORS)] = indicators
    return pipeline.predict_proba(enriched)[:, 1]


def layout_of(pipeline: Any) -> CompiledPipeline | None:
    """The pipeline's encoding read as the compiled form lays it out (scikit-learn's trees), or
    None when it is not the shape this module knows."""
    try:
        return _compile(pipeline)
    except (NotCompilable, AttributeError, KeyError):
        return None


def compile_pipeline(pipeline: Any, forest: Path | None = None, threads: int = 1) -> CompiledPipeline | None:
    """The compiled form of ``pipeline``, with the compiled trees of ``forest`` when given and
    loadable here; None (serve the pipeline itself) when it cannot be compiled, or when it differs
    from the pipeline by more than TOLERANCE on probe rows of one row, a few and a thousand."""
    try:
        compiled = _compile(pipeline)
    except (NotCompilable, AttributeError, KeyError) as exc:
        log.warning("serving the scikit-learn pipeline as it is: %s", exc)
        return None
    if forest is not None:
        try:
            compiled = replace(compiled, forest=Forest(forest, threads))
        except Exception as exc:  # tl2cgen's error: a library of another platform, say
            log.warning("the compiled trees do not load here (%s): scikit-learn's trees serve",
                        type(exc).__name__)
    for n, seed in PROBE_SIZES:
        rows, indicators = probe_rows(compiled, n, seed)
        batch = schema.fast_batch(rows)
        if batch is None:
            raise RuntimeError("probe rows must be valid")  # a bug here, not in the model
        got = compiled.appetence(batch, indicators)
        worst = float(np.max(np.abs(got - _reference(pipeline, rows, indicators))))
        if worst > TOLERANCE:
            log.error("the compiled pipeline differs from scikit-learn by %.3g on probe rows; "
                      "serving the scikit-learn pipeline", worst)
            return None
    return compiled
