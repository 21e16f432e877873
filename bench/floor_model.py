"""The floor of `make bench`: a pyfunc with our signature that answers a constant per row, saved
as a model from code (MLflow 3's way, nothing pickled). Served by `mlflow models serve`, it costs
what MLflow's own server costs for a request of that shape: what is left of a request when the
model takes no time at all."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        return pd.DataFrame({"appetence": np.full(len(model_input), 0.5)})


mlflow.models.set_model(Constant())
