"""End-to-end fixtures: the real server (`chaos serve`, as the image runs it) in a subprocess,
real PostgreSQL, a real TCP proxy that can cut the database away from the server.

Nothing is mocked. Servers are slow to start (several seconds), so the server on the shared
PostgreSQL database lives for the whole session; the tests that need special settings start
their own, one per module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from conftest import throwaway_pg_database
from support.http import post
from support.server import MODEL_DIR, VENV_BIN, ServerDidNotStart, chaos_command, launch
from support.tcp_proxy import TcpProxy

from chaos_pyfunc.config import ENV_VARS

STARTUP_TIMEOUT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 30.0
PG_HOST, PG_PORT = "127.0.0.1", 5432


def server_env(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """The test process's environment without any CHAOS_* setting, then ``overrides``.

    A value of None removes the variable. The venv's bin comes first on PATH: `mlflow models
    serve` execs `uvicorn` by name.
    """
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS.values() and k != "CHAOS_CONFIG"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def serve_command(port: int) -> list[str]:
    return chaos_command()(port)


def mlflow_serve_command(port: int) -> list[str]:
    """MLflow's own server, without the gateway: the model must keep working there too."""
    return [
        str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(MODEL_DIR), "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port),
    ]


@contextmanager
def running_server(env: Mapping[str, str | None], cwd: Path, log_path: Path,
                   command: Callable[[int], list[str]] = serve_command) -> Iterator[str]:
    """Start the server on a free port; yield its base URL once GET /ping is 200."""
    try:
        with launch(command, server_env(env), cwd, log_path, STARTUP_TIMEOUT_SECONDS) as served:
            yield served.url
    except ServerDidNotStart as exc:
        pytest.fail(str(exc), pytrace=False)


# ---------------------------------------------------------------- requests to the server


def frame_to_json(frame: pd.DataFrame, orient: str) -> Any:
    """The frame as plain JSON values (no numpy scalars), the way any HTTP client sends them."""
    return json.loads(frame.to_json(orient=orient, index=False))


def json_body(frame: pd.DataFrame, form: str) -> dict[str, Any]:
    """One of MLflow's JSON request forms for ``frame``."""
    if form == "dataframe_split":
        return {"dataframe_split": frame_to_json(frame, "split")}
    if form == "dataframe_records":
        return {"dataframe_records": frame_to_json(frame, "records")}
    if form == "instances":
        return {"instances": frame_to_json(frame, "records")}
    if form == "inputs_records":
        return {"inputs": frame_to_json(frame, "records")}
    if form == "inputs_columns":
        records = frame_to_json(frame, "records")
        return {"inputs": {c: [row[c] for row in records] for c in frame.columns}}
    raise ValueError(form)


def invoke(base_url: str, frame: pd.DataFrame, form: str = "dataframe_split",
           timeout: float = REQUEST_TIMEOUT_SECONDS) -> requests.Response:
    """POST ``frame`` to /invocations in ``form`` (a JSON form, or "csv")."""
    if form == "csv":
        return post(base_url, frame.to_csv(index=False).encode(), "text/csv", timeout=timeout)
    return post(base_url, json_body(frame, form), timeout=timeout)


def predictions(response: requests.Response) -> list[float]:
    """The appetences of a 200 response, failing with the body otherwise."""
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    body = response.json()
    assert set(body) == {"predictions"}, body
    rows = body["predictions"]
    assert all(set(row) == {"appetence"} for row in rows), rows[:5]
    return [row["appetence"] for row in rows]


def score(base_url: str, frame: pd.DataFrame, form: str = "dataframe_split") -> list[float]:
    return predictions(invoke(base_url, frame, form))


def error_message(response: requests.Response, status: int) -> str:
    """The message of an error response with ``status``: JSON with an error code and a message,
    nothing else (no stack trace, no echo of the request)."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:2000]}"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error_code", "message"}, body
    assert isinstance(body["error_code"], str) and isinstance(body["message"], str), body
    assert "Traceback" not in body["message"], body
    return body["message"]


def with_date(frame: pd.DataFrame, date: str) -> pd.DataFrame:
    return frame.assign(date=date)


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def indicators_pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database holding the real socio_eco, shared by the session."""
    with throwaway_pg_database(with_indicators=True) as url:
        yield url


@pytest.fixture(scope="session")
def pg_server(indicators_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server most tests share: indicators from PostgreSQL, default settings."""
    workdir = tmp_path_factory.mktemp("pg_server")
    with running_server({"CHAOS_DATABASE_URL": indicators_pg_url}, workdir, workdir / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy((PG_HOST, PG_PORT))
    proxy.start()
    yield proxy
    proxy.stop()
