"""Start a server in a subprocess and wait for its /ping: `chaos serve` (the image's command) or
any other, for the benchmarks and the end-to-end tests alike."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "model"
VENV_BIN = Path(sys.executable).parent
# The logs of the servers launch() started that have exited since: complete (support.logs).
EXITED: set[Path] = set()


class ServerDidNotStart(RuntimeError):
    """The server exited, or never answered /ping; the message ends with its log's tail."""


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chaos_command(model: Path = MODEL_DIR) -> Callable[[int], list[str]]:
    return lambda port: [str(VENV_BIN / "chaos"), "serve", "--model", str(model), "--port", str(port)]


@dataclass(frozen=True)
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def _log_tail(log: Path, chars: int = 6000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "<no log>"


@contextmanager
def launch(command: Callable[[int], list[str]], env: Mapping[str, str], cwd: Path, log: Path,
           startup_seconds: float = 60, ready_path: str = "/ping",
           https_ca: Path | None = None) -> Iterator[Served]:
    """``command(port)`` on a free port with exactly ``env``; yields once GET ``ready_path`` is 200
    (over HTTPS, checked against the certificate ``https_ca``, if given).

    On exit its whole process group gets SIGTERM (a graceful stop: `mlflow models serve` and
    the uvicorn it starts, or `chaos serve` alone), then SIGKILL if it lingers.
    """
    port = free_port()
    url = f"{'https' if https_ca else 'http'}://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(command(port), cwd=cwd, env=dict(env), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                raise ServerDidNotStart(f"the server exited with code {process.returncode} before "
                                        f"answering {ready_path}; its log:\n{_log_tail(log)}")
            with suppress(requests.RequestException):
                if requests.get(f"{url}{ready_path}", timeout=2,
                                verify=str(https_ca) if https_ca else True).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise ServerDidNotStart(f"the server did not answer {ready_path} within "
                                        f"{startup_seconds:.0f} s; its log:\n{_log_tail(log)}")
            time.sleep(0.05)
        yield Served(url, process, log)
    finally:
        _stop(process)
        EXITED.add(log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def chaos_server(env: Mapping[str, str], workdir: Path, startup_seconds: float = 60) -> Iterator[Served]:
    """`chaos serve` on model/, with ``env`` on top of a CHAOS_*-free environment; its log is
    ``workdir``/server.log."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
    full_env.update(env)
    with launch(chaos_command(), full_env, workdir, workdir / "server.log", startup_seconds) as served:
        yield served
