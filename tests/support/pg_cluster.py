"""A private PostgreSQL instance that a test or benchmark may stop and start at will.

The machine's own server is shared by every test, so outages are played on a cluster of our own:
initdb in a scratch directory, listening on 127.0.0.1:<port>, trust authentication, superuser
``root``. As root, the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2


def _bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])
    on_path = shutil.which(name)
    if on_path is None:
        raise FileNotFoundError(f"{name} not found: install PostgreSQL's server package")
    return on_path


class PgCluster:
    def __init__(self, port: int) -> None:
        # Its own directory straight under /tmp: the postgres user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.root.chmod(0o755)
        self.port = port
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.url = f"postgresql+psycopg2://root@127.0.0.1:{port}/postgres"

    def _run(self, *command: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=timeout,
                              cwd=self.root, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {done.stderr[-2000:]}")

    def init(self) -> PgCluster:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "root", "--auth=trust",
                  "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> float:
        """Start the server; returns the monotonic time at which it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_bin("pg_ctl"), "start", "-w", "-D", str(self.data), "-l", str(self.log),
                  "-o", options)
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=self.port, user="root", dbname="postgres",
                                 connect_timeout=2).close()
                return time.monotonic()
            except psycopg2.OperationalError:
                time.sleep(0.05)

    def stop(self) -> float:
        """Stop the server, disconnecting every client; returns when it is down."""
        self._run(_bin("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data))
        return time.monotonic()

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_bin("pg_ctl"), "stop", "-w", "-m", "immediate", "-D", str(self.data))
        shutil.rmtree(self.root, ignore_errors=True)
