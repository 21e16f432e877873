"""The MLflow pyfunc: thin glue between MLflow's scoring server and the modules that do the work.

MLflow's scoring server turns any exception that is not an ``MlflowException`` into a 400
carrying a stack trace, so every failure leaves ``predict`` as an ``MlflowException`` with the
right code: a bad request is 400, a database that cannot be read is 503, a bug is 500. The
server also prefixes the message with the input rows; the exception therefore carries its
message a second time as ``safe_message``, which the HTTP front (gateway.py) answers with.
"""

from __future__ import annotations

import gc
import logging
import pickle
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.pyfunc import PythonModel, PythonModelContext  # by name: mypy sees mlflow.pyfunc as a lazy loader

from chaos_pyfunc.config import Settings, load_settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.contract.schema import BASELINE, MAX_REASONS, REASONS
from chaos_pyfunc.db import INDICATORS, make_engine, seed_embedded
from chaos_pyfunc.scoring import package_version
from chaos_pyfunc.scoring.compiled import (
    FOREST_ARTIFACT,
    CompiledPipeline,
    compile_pipeline,
    layout_of,
    threads_for,
)
from chaos_pyfunc.scoring.reasons import Explainer, top, values_of
from chaos_pyfunc.scoring.socio_eco import IndicatorSource, IndicatorsUnavailable, enrich

log = logging.getLogger(__name__)

PIPELINE_ARTIFACT = "pipeline"
INTERNAL_ERROR_MESSAGE = "internal error while scoring; it is logged, retry later or report it"


def refusal(message: str, error_code: int) -> MlflowException:
    """An MlflowException whose ``safe_message`` field is ``message`` alone, free of input rows."""
    return MlflowException(message, error_code=error_code, safe_message=message)


class Scorer:
    """A caller's rows in, one appetence per row out, in order; raises InvalidInput or
    IndicatorsUnavailable, which the pyfunc below turns into HTTP 400 or 503.

    Valid requests take the fast path: NumPy validation, the cached indicators' arrays, the
    compiled pipeline. Anything else takes the reference path, the very code training uses
    (pandas validation, as-of join, the scikit-learn pipeline), which scores what it accepts
    and explains what it refuses. Both give the same appetences (tests/scoring/test_compiled.py).
    """

    def __init__(self, pipeline: Any, source: IndicatorSource, settings: Settings,
                 compiled: CompiledPipeline | None = None) -> None:
        self.pipeline = pipeline
        self.source = source
        self.settings = settings
        self.compiled = compiled
        self._explain: Explainer | None = None  # made at the first request for reasons
        # Told every batch scored, rows and appetences: the score histogram (metrics.py), the
        # prediction log (prediction_log.py).
        self.listeners: list[Callable[[schema.Batch, np.ndarray], None]] = []

    def score(self, rows: pd.DataFrame, reasons: int = 0) -> pd.DataFrame:
        """One appetence per row; with ``reasons``, each row's that many reason codes too, and
        the baseline they add up from (reasons.py)."""
        fast = schema.fast_batch(rows)
        found = None if fast is None else self._fast(fast)
        if fast is None or found is None:
            batch, appetence, enriched = self._reference(rows)
            matrix = None if not reasons or enriched.empty else self.pipeline[0].transform(enriched)
            indicators = None if enriched.empty else enriched[list(INDICATORS)].to_numpy(dtype=np.float64)
            sent = enriched
        else:
            batch, (appetence, indicators), sent = fast, found, rows
            matrix = None if not reasons else self.compiled.features(batch, indicators)  # type: ignore[union-attr]
        for listener in self.listeners:
            listener(batch, appetence)
        scored = pd.DataFrame({schema.OUTPUT_COLUMN: appetence})
        if reasons and len(scored):
            explained = self._explainer().explain(np.asarray(matrix))
            scored[REASONS] = pd.Series(top(explained, values_of(sent, np.asarray(indicators)), reasons),
                                        dtype=object)
            scored[BASELINE] = explained.baseline
        return scored

    def _explainer(self) -> Explainer:
        if self._explain is None:
            layout = self.compiled or layout_of(self.pipeline)
            if layout is None:
                raise schema.InvalidInput("params.reasons: this model version gives no reasons "
                                          "(its pipeline is not the shape reasons.py reads)")
            self._explain = Explainer(layout)
        return self._explain

    def _fast(self, batch: schema.Batch) -> tuple[np.ndarray, np.ndarray] | None:
        if self.compiled is None or len(batch) == 0:
            return None
        indicators = self.source.table().rows_for(batch.months, self.settings.max_indicator_age_months)
        if indicators is None:
            return None
        return self.compiled.appetence(batch, indicators), indicators

    def _reference(self, rows: pd.DataFrame) -> tuple[schema.Batch, np.ndarray, pd.DataFrame]:
        enriched = enrich(rows, self.source, self.settings.max_indicator_age_months)
        if enriched.empty:
            return schema.batch_of(enriched), np.empty(0, dtype=np.float64), enriched
        appetence = self.pipeline.predict_proba(enriched)[:, 1].astype(np.float64)
        return schema.batch_of(enriched), appetence, enriched


def reasons_asked(params: dict[str, Any] | None) -> int:
    """The number of reasons a request asks for (MLflow's params): 0 for none; InvalidInput for
    anything but a whole number 1..MAX_REASONS (the gateway refuses those first, naming them)."""
    asked = (params or {}).get(REASONS, 0)
    if asked == 0:
        return 0
    if (count := schema.reasons_count(asked)) is None:
        raise schema.InvalidInput(f"params.{REASONS}: expected a whole number from 1 to {MAX_REASONS}")
    return count


class AppetenceModel(PythonModel):
    """Probability that a customer subscribes a term deposit if called."""

    def load_context(self, context: PythonModelContext) -> None:
        # Settings come from the serving machine's environment, never from training time.
        pipeline_path = Path(context.artifacts[PIPELINE_ARTIFACT])
        # Before anything else: a model this package cannot run is refused, naming both versions.
        package_version.check_compatible(pipeline_path.parents[1], f"the model at {pipeline_path.parents[1]}")
        settings = load_settings()
        seed_embedded(settings)
        with open(pipeline_path, "rb") as handle:
            pipeline = pickle.load(handle)  # noqa: S301 - our own artifact, written by train.py
        source = IndicatorSource.for_serving(make_engine(settings, read_only=True), settings)
        try:  # the first request then finds the cache warm; a database still away is no reason
            source.table()  # not to start: requests get 503 until it is back
        except IndicatorsUnavailable:
            log.warning("socio_eco cannot be read yet; requests get 503 until it can")
        forest = context.artifacts.get(FOREST_ARTIFACT)  # absent from models trained without gcc
        compiled = compile_pipeline(pipeline, None if forest is None else Path(forest),
                                    threads_for(settings.predict_threads))
        self.scorer = Scorer(pipeline, source, settings, compiled)
        # Everything loaded so far (MLflow, pandas, scikit-learn, the model: millions of objects)
        # lives as long as the server: keep it out of the garbage collector's full passes, which
        # otherwise stall a request now and then for tens of milliseconds.
        gc.collect()
        gc.freeze()
        log.info("chaos model loaded; indicators from %s", settings.safe_url())

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        try:
            return self.scorer.score(model_input, reasons_asked(params))
        except schema.InvalidInput as exc:
            raise refusal(str(exc), INVALID_PARAMETER_VALUE) from None
        except IndicatorsUnavailable as exc:
            raise refusal(str(exc), TEMPORARILY_UNAVAILABLE) from None
        except Exception as exc:
            # The traceback says where; the exception's own text may quote input values.
            log.error("scoring failed: %s\n%s", type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)))
            raise refusal(INTERNAL_ERROR_MESSAGE, INTERNAL_ERROR) from None
