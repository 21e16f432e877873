"""`chaos serve` as the pods run it, whose observability a signal switches off and on, for
`make bench`: what it costs, measured in one process (same memory layout, same core, same
database), the two states alternated. SIGUSR1 switches it off, SIGUSR2 on again.

Off means: no metrics counted and no JSON access line (``Gateway._observe``), no listener of
the scores (the score histogram, the prediction log), and Sentry's logging hook taken out of
logging. What stays is part of answering: the request id and its header, the limits, the load
shedding. The metrics port, the prediction log's writer and the COPY process stay up, idle.
Never used to serve: a benchmark's instrument, as bench/floor_model.py is.

Usage: python -m bench.toggle_serve serve --model model --port 8080
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any

from mlflow.pyfunc import scoring_server

from chaos_pyfunc import cli, serve

PLAIN_CALL_HANDLERS = logging.Logger.callHandlers  # before Sentry patches it
_served: dict[str, Any] = {}  # the gateway and the scorer, once made
_state: dict[str, Any] = {}   # what was switched off


def _create_app(*args: Any, **kwargs: Any) -> Any:
    _served["gateway"] = _made(*args, **kwargs)
    return _served["gateway"]


def _load_model(*args: Any, **kwargs: Any) -> Any:
    model = _loaded(*args, **kwargs)
    _served["scorer"] = model.unwrap_python_model().scorer
    return model


def _off(signum: int, frame: FrameType | None) -> None:
    if _state:
        return
    scorer = _served["scorer"]
    _state.update(listeners=list(scorer.listeners), call_handlers=logging.Logger.callHandlers)
    scorer.listeners.clear()
    _served["gateway"]._observe = lambda *args: None
    logging.Logger.callHandlers = PLAIN_CALL_HANDLERS  # type: ignore[method-assign]


def _on(signum: int, frame: FrameType | None) -> None:
    if not _state:
        return
    _served["scorer"].listeners[:] = _state["listeners"]
    del _served["gateway"]._observe
    logging.Logger.callHandlers = _state["call_handlers"]  # type: ignore[method-assign]
    _state.clear()


_made, _loaded = serve.create_app, scoring_server.load_model_with_mlflow_config
serve.create_app = _create_app
scoring_server.load_model_with_mlflow_config = _load_model

if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _off)
    signal.signal(signal.SIGUSR2, _on)
    sys.exit(cli.main())
