"""The prediction log's writes to PostgreSQL, in a process of their own.

Encoding tens of thousands of rows a second and waiting for the database took the serving
process' interpreter from the requests: with the binary COPY encoded in a thread, the
1000-row throughput fell by 12% (make bench, 2026-12-04). The serving process now hands each
batch over as a few compact arrays, pickled through a pipe (a memory copy); this process
encodes them (pg_copy.py), runs the COPY, and answers with the rows written or why it failed.

It imports NumPy, psycopg2 and pg_copy only: tens of MB, a fraction of a second to start. It
runs at a lower priority (nice 10): on a busy machine the requests come first, and its work
waits in the queue instead. It ignores SIGTERM and SIGINT (tini signals the whole process
group; the serving process decides when the log is done) and ends when its input closes, after
the last batch.

Run by ``CopyProcess``: ``python -m chaos_pyfunc.predlog.copy_worker``.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, cast

import numpy as np
import psycopg2

from chaos_pyfunc.predlog import pg_copy

EXIT_SECONDS = 10.0
NICENESS = 10  # added to the serving process' own


class CopyFailed(Exception):
    """A batch was not written: the database refused or could not be reached, or the process
    ended. The message names the error's type only (its text may quote the rows)."""


@dataclass(frozen=True)
class Target:
    """Where and how to write: a libpq URI (with the password: it goes through the pipe, never
    through the command line or the environment), libpq's parameters, the COPY statement."""

    dsn: str
    connect_args: dict[str, Any]
    statement: str


class CopyProcess:
    """The serving process' end: starts the worker, restarts it if it died, one batch at a time."""

    ENDED = "the COPY process ended"

    def __init__(self, target: Target) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen([sys.executable, "-m", __name__],  # noqa: S603 - our own module
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self._send(self._process, self._target)
        return self._process

    @staticmethod
    def _send(process: subprocess.Popen[bytes], message: object) -> None:
        pipe = cast(IO[bytes], process.stdin)  # PIPE: never None
        pickle.dump(message, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        pipe.flush()

    def write(self, columns: list[pg_copy.Column], counts: np.ndarray) -> int:
        """Write the rows of ``columns`` (pg_copy.encode's form); the rows written, or CopyFailed."""
        with self._lock:
            try:
                process = self._started()
                self._send(process, (columns, counts))
                outcome, detail = pickle.load(cast(IO[bytes], process.stdout))  # noqa: S301 - our own child
            except (OSError, EOFError, pickle.UnpicklingError):
                self._end()
                raise CopyFailed(self.ENDED) from None
        if outcome != "written":
            raise CopyFailed(detail)
        return int(detail)

    def _end(self, timeout: float = EXIT_SECONDS) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the worker's signal to finish
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self, timeout: float = EXIT_SECONDS) -> None:
        """End the worker once it has finished its batch, waiting at most ``timeout`` seconds (a
        batch still being written past it is abandoned: the worker is killed)."""
        started = time.monotonic()
        if self._lock.acquire(timeout=timeout):
            try:
                self._end(max(0.0, timeout - (time.monotonic() - started)))
            finally:
                self._lock.release()
        elif self._process is not None:
            self._process.kill()


def _copy(connection: Any, statement: str, columns: list[pg_copy.Column], counts: np.ndarray) -> int:
    stream = pg_copy.encode(columns, counts)
    with connection, connection.cursor() as cursor:  # one transaction: all the rows or none
        # One read of the whole stream: psycopg2 sends it in one piece.
        cursor.copy_expert(statement, io.BytesIO(stream), size=len(stream))
    return len(counts)


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """Read the target, then batches, until the input ends; answer each batch."""
    target: Target = pickle.load(source)  # noqa: S301 - from the serving process
    connection = None
    while True:
        try:
            columns, counts = pickle.load(source)  # noqa: S301 - from the serving process
        except EOFError:
            break
        try:
            if connection is None:
                connection = psycopg2.connect(target.dsn, **target.connect_args)
            answer: tuple[str, object] = ("written", _copy(connection, target.statement, columns, counts))
        except Exception as exc:  # the serving process logs it and keeps the rows to retry
            answer = ("failed", type(exc).__name__)
            if connection is not None:
                connection.close()
                connection = None
        pickle.dump(answer, sink)
        sink.flush()
    if connection is not None:
        connection.close()


if __name__ == "__main__":
    os.nice(NICENESS)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)
