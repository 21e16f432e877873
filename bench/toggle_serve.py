"""`chaos serve` as the pods run it, whose observability a signal switches off and on, for
`make bench`: what it costs, measured in one process (same memory layout, same core, same
database), the two states alternated. SIGUSR1 switches it off, SIGUSR2 on again.

Off means, for the requests that start while off: no metrics counted and no JSON access
line (``Gateway._observe``), no listener of the scores (the score histogram, the prediction
log), and Sentry's logging hook taken out of logging. What stays is part of answering: the
request id and its header, the limits, the load shedding. The metrics port, the prediction
log's writer and the COPY process stay up, idle.
Never used to serve: a benchmark's instrument, as bench/floor_model.py is.

Usage: python -m bench.toggle_serve serve --model model --port 8080
"""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from mlflow.pyfunc import scoring_server

from chaos_pyfunc import cli
from chaos_pyfunc.http import serve

PLAIN_CALL_HANDLERS = logging.Logger.callHandlers  # before Sentry patches it
# The state a request started in: the whole request is observed, or not at all, even when the
# signal comes between its answer and its access line (the client sends it once answered).
OBSERVED: contextvars.ContextVar[bool] = contextvars.ContextVar("observed", default=True)
_switch = {"on": True}


def _create_app(*args: Any, **kwargs: Any) -> Any:
    gateway = _made(*args, **kwargs)
    observe, hooked = gateway._observe, logging.Logger.callHandlers  # Sentry's, by now
    gateway._observe = lambda *args: observe(*args) if OBSERVED.get() else None

    def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
        (hooked if OBSERVED.get() else PLAIN_CALL_HANDLERS)(logger, record)

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            OBSERVED.set(_switch["on"])  # this request's task (and its predict thread) only
        await gateway(scope, receive, send)

    return app


def _load_model(*args: Any, **kwargs: Any) -> Any:
    model = _loaded(*args, **kwargs)
    scorer = model.unwrap_python_model().scorer

    class Listeners(list):  # the scores' listeners, called only when the request is observed
        def __iter__(self) -> Any:
            return super().__iter__() if OBSERVED.get() else iter(())

    scorer.listeners = Listeners(scorer.listeners)
    return model


def _switched(on: bool) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        _switch["on"] = on
        if path := os.environ.get("BENCH_STATE_FILE"):  # where the benchmark waits for it
            Path(path).write_text("on" if on else "off")

    return handler


_made, _loaded = serve.create_app, scoring_server.load_model_with_mlflow_config
serve.create_app = _create_app
scoring_server.load_model_with_mlflow_config = _load_model

if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _switched(False))
    signal.signal(signal.SIGUSR2, _switched(True))
    sys.exit(cli.main())
