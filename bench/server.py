"""Start the real server (`chaos serve`, the image's command) for the soak and outage runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def chaos_server(env: Mapping[str, str], workdir: Path, startup_seconds: float = 60) -> Iterator[Served]:
    """`chaos serve` on a free port with ``env`` on top of a CHAOS_*-free environment; stopped
    with SIGTERM (gracefully) on exit."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
    full_env.update(env)
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "chaos"), "serve", "--model", str(REPO / "model"), "--port", str(port)],
            cwd=workdir, env=full_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()[-4000:]}")
            with suppress(requests.RequestException):
                if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield Served(url, process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
