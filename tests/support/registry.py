"""A real model registry for the tests: `mlflow server` on loopback, a throwaway PostgreSQL
database as its backend store, a temporary folder as its artifact destination (what
`make registry` runs here, and k8s/registry runs in production with a GCS bucket)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .server import VENV_BIN, Served, launch

STARTUP_SECONDS = 120.0
# The clients the tests start give up at once on a registry that is away, instead of MLflow's
# default of several retries with backoff (minutes): the tests check the outcome, not patience.
CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def server_command(backend_store_uri: str, artifacts: Path) -> Callable[[int], list[str]]:
    return lambda port: [
        str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]


@contextmanager
def mlflow_registry(backend_store_uri: str, workdir: Path) -> Iterator[Served]:
    """`mlflow server` on ``backend_store_uri`` (an empty database: it creates its tables),
    serving its artifacts from ``workdir``/artifacts; yields once GET /health is 200."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CHAOS_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    command = server_command(backend_store_uri, workdir / "artifacts")
    log = workdir / "registry.log"
    with launch(command, env, workdir, log, STARTUP_SECONDS, ready_path="/health") as served:
        yield served
