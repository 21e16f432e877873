"""The COPY process against the real PostgreSQL: it writes what it is handed, says why it could
not, outlives the signals tini sends the whole process group, and ends when its input closes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import psycopg2
import pytest

from chaos_pyfunc.config import Settings
from chaos_pyfunc.db import pg_connect_args
from chaos_pyfunc.predlog.copy_worker import NICENESS, CopyFailed, CopyProcess, Target


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


@pytest.fixture
def table(pg_url: str) -> str:
    conn = psycopg2.connect(libpq(pg_url))
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (n integer, s text)")
    conn.close()
    return pg_url


def rows_in(url: str) -> list[tuple[int, str]]:
    conn = psycopg2.connect(libpq(url))
    with conn.cursor() as cur:
        cur.execute("SELECT n, s FROM t")
        found = cur.fetchall()
    conn.close()
    return found


def copier(url: str, statement: str = "COPY t (n, s) FROM STDIN WITH (FORMAT binary)") -> CopyProcess:
    return CopyProcess(Target(libpq(url), pg_connect_args(Settings(database_url=url)), statement))


def columns(n: int) -> tuple[list[tuple], np.ndarray]:
    """``n`` rows of scalars: pg_copy.encode's columns and counts."""
    return [("int4", np.arange(n)), ("text", np.arange(n) % 2, ["even", "odd"])], np.ones(n, dtype=np.int32)


def test_it_writes_the_rows_and_survives_the_group_s_sigterm(table: str) -> None:
    process = copier(table)
    assert process.write(*columns(3)) == 3
    assert process._process is not None
    stat = Path(f"/proc/{process._process.pid}/stat").read_text()
    niceness = int(stat.rsplit(")", 1)[1].split()[16])
    assert niceness == os.nice(0) + NICENESS  # behind the requests for the CPU
    os.kill(process._process.pid, signal.SIGTERM)  # what tini -g sends the whole group
    os.kill(process._process.pid, signal.SIGINT)
    assert process.write(*columns(2)) == 2
    child = process._process
    process.close()  # the input closes: it exits, cleanly
    assert child.returncode == 0
    assert sorted(rows_in(table)) == [(0, "even"), (0, "even"), (1, "odd"), (1, "odd"), (2, "even")]


def test_a_refused_batch_names_the_error_type_only_and_the_next_one_is_written(table: str) -> None:
    process = copier(table, "COPY missing_table (n, s) FROM STDIN WITH (FORMAT binary)")
    with pytest.raises(CopyFailed, match=r"^UndefinedTable$"):
        process.write(*columns(1))
    process.close()
    process = copier(table)
    assert process.write(*columns(1)) == 1
    process.close()
