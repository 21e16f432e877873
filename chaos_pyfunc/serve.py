"""`chaos serve`: MLflow's scoring app for a model, behind the gateway, under uvicorn.

What `mlflow models serve --env-manager local` runs (uvicorn on MLflow's FastAPI app), minus
its launcher process, plus the gateway. One process: SIGTERM reaches uvicorn itself, which
stops accepting connections, lets the requests in flight finish (up to
``shutdown_timeout_seconds``), then exits.
"""

from __future__ import annotations

import logging
import os

import uvicorn

from chaos_pyfunc import openapi
from chaos_pyfunc.config import Settings, load_settings
from chaos_pyfunc.gateway import Gateway, Limits

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def create_app(model_uri: str, settings: Settings) -> Gateway:
    """Load the model (its load_context reads the settings too) and wrap MLflow's app for it."""
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.pyfunc import scoring_server

    # MLflow's own timeout only as a backstop: the gateway's answers first, and cleanly.
    os.environ[MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name] = str(
        int(settings.request_timeout_seconds) + 30)
    model = scoring_server.load_model_with_mlflow_config(model_uri)
    return Gateway(scoring_server.init(model), Limits.of(settings), openapi.spec(settings))


def serve(model_uri: str, host: str, port: int) -> None:
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)
    app = create_app(model_uri, settings)
    log.info("serving %s on http://%s:%d", model_uri, host, port)
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None,
                timeout_graceful_shutdown=settings.shutdown_timeout_seconds)
