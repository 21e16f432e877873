"""End-to-end fixtures: the real `mlflow models serve` in a subprocess, real PostgreSQL, a real
TCP proxy that can cut the database away from the server.

Nothing is mocked. Servers are slow to start (several seconds), so the server on the shared
PostgreSQL database lives for the whole session; the tests that need special settings start
their own, one per module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from conftest import throwaway_pg_database

from chaos_pyfunc.config import ENV_VARS

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "model"
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 30.0
PG_HOST, PG_PORT = "127.0.0.1", 5432


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def _log_tail(log_path: Path, chars: int = 6000) -> str:
    try:
        return log_path.read_text(errors="replace")[-chars:]
    except OSError:
        return "<no log>"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server's whole process group (mlflow, then the uvicorn it exec'd)."""
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def serve_command(port: int) -> list[str]:
    return [
        str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(MODEL_DIR), "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port),
    ]


@contextmanager
def running_server(env: Mapping[str, str | None], cwd: Path, log_path: Path) -> Iterator[str]:
    """Start `mlflow models serve` on a free port; yield its base URL once GET /ping is 200."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            serve_command(port), cwd=cwd, env=server_env(env), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with code {proc.returncode} before answering /ping; "
                            f"its log:\n{_log_tail(log_path)}", pytrace=False)
            with suppress(requests.RequestException):
                if requests.get(f"{base_url}/ping", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /ping within {STARTUP_TIMEOUT_SECONDS:.0f} s; "
                            f"its log:\n{_log_tail(log_path)}", pytrace=False)
            time.sleep(0.25)
        yield base_url
    finally:
        _stop(proc)


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
        return requests.post(f"{base_url}/invocations", data=frame.to_csv(index=False).encode(),
                             headers={"Content-Type": "text/csv"}, timeout=timeout)
    return requests.post(f"{base_url}/invocations", json=json_body(frame, form), timeout=timeout)


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
    """The message of an error response with ``status``; never a stack trace."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:2000]}"
    assert "Traceback" not in response.text, response.text[:2000]
    body = response.json()
    assert isinstance(body.get("message"), str), body
    assert "stack_trace" not in body, body
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


# ---------------------------------------------------------------- a TCP proxy that can fail


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``, with real sockets, until switched off.

    ``stop()`` closes the listener and every live connection, so the port refuses connections
    (as a database that went down); ``start()`` listens on the same port again. Started with
    ``blackhole=True`` it accepts connections and never answers (as a database host that hangs).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._blackhole = False

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self, blackhole: bool = False) -> None:
        assert self._listener is None, "the proxy is already listening"
        self._blackhole = blackhole
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._stopping.clear()
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Close the listener and all connections; returns once the port refuses connections."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        listener.close()
        with self._lock:
            live, self._sockets = self._sockets, set()
        for sock in live:
            self._close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._blackhole:
                with self._lock:
                    self._sockets.add(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._close(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._stopping.is_set():
                    self._close(client)
                    self._close(upstream)
                    return
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with self._lock:
                    self._sockets.discard(sock)
                self._close(sock)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            sock.close()


@pytest.fixture(scope="module")
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy((PG_HOST, PG_PORT))
    proxy.start()
    yield proxy
    proxy.stop()
