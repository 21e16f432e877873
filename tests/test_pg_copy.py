"""The binary COPY encoder, byte for byte against the format PostgreSQL documents, and read back
by the real server."""

from __future__ import annotations

import io
import struct

import numpy as np
import psycopg2
import pytest

from chaos_pyfunc import pg_copy


def field(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def test_rows_are_laid_out_as_postgresql_documents() -> None:
    stream = pg_copy.encode([
        pg_copy.fixed(np.array([7, -2], dtype=">i8")),
        pg_copy.choices(np.array([1, 0]), ["no", "yes"]),
        pg_copy.choices(np.array([0, 0]), [None]),
        pg_copy.fixed(np.array([0.5, 1.25], dtype=">f8")),
    ])
    rows = [struct.pack(">h", 4) + field(struct.pack(">q", 7)) + field(b"yes") + struct.pack(">i", -1)
            + field(struct.pack(">d", 0.5)),
            struct.pack(">h", 4) + field(struct.pack(">q", -2)) + field(b"no") + struct.pack(">i", -1)
            + field(struct.pack(">d", 1.25))]
    assert stream == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"".join(rows) + b"\xff\xff"


def test_fixed_width_columns_only() -> None:
    stream = pg_copy.encode([pg_copy.fixed(np.array([1], dtype=">i8"))])
    assert stream == pg_copy.SIGNATURE + struct.pack(">h", 1) + field(struct.pack(">q", 1)) + b"\xff\xff"


def test_iso_dates() -> None:
    dates = pg_copy.iso_dates(np.array([2008, 10, 2010]), np.array([5, 12, 1]), np.array([1, 31, 9]))
    assert dates.tolist() == [b"2008-05-01", b"0010-12-31", b"2010-01-09"]


@pytest.mark.data
def test_the_server_reads_what_was_encoded(pg_url: str) -> None:
    stamps = np.array([946_684_800.0, 1_291_161_600.123456, 1_700_000_000.5])
    stream = pg_copy.encode([
        pg_copy.timestamps(stamps),
        pg_copy.fixed(pg_copy.iso_dates(np.array([2008, 2009, 2010]), np.array([5, 2, 11]),
                                        np.array([13, 28, 30]))),
        pg_copy.fixed(np.array([-(10**9), 0, 2**40], dtype=">i8")),
        pg_copy.fixed(np.array([0.1, 1e-300, 1.0], dtype=">f8")),
        pg_copy.choices(np.array([2, 0, 1]), ["été", "a", None]),
    ])
    conn = psycopg2.connect(pg_url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE t (at timestamptz, d varchar(10), n bigint, x float8, s text)")
            cur.copy_expert("COPY t FROM STDIN WITH (FORMAT binary)", io.BytesIO(stream))
            cur.execute("SELECT extract(epoch FROM at)::numeric, d, n, x, s FROM t")
            got = cur.fetchall()
    finally:
        conn.close()
    assert [(float(a), d, n, x, s) for a, d, n, x, s in got] == [
        (946_684_800.0, "2008-05-13", -(10**9), 0.1, None),
        (1_291_161_600.123456, "2009-02-28", 0, 1e-300, "été"),
        (1_700_000_000.5, "2010-11-30", 2**40, 1.0, "a")]
