"""The binary COPY encoder, byte for byte against the format PostgreSQL documents, and read back
by the real server."""

from __future__ import annotations

import io
import struct
from datetime import date

import numpy as np
import psycopg2

from chaos_pyfunc.predlog import pg_copy


def field(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def array(oid: int, elements: list[bytes]) -> bytes:
    return field(struct.pack(">iiiii", 1, 0, oid, len(elements), 1) + b"".join(field(e) for e in elements))


def test_rows_of_scalars_and_arrays_are_laid_out_as_postgresql_documents() -> None:
    stream = pg_copy.encode([
        ("text", np.array([1, 0]), ["a", "bc"]),
        ("text", np.array([0, 0]), [None]),
        ("int4", np.array([2, 1])),
        ("int8[]", np.array([7, -2, 5])),
        ("text[]", np.array([1, 0, 1], dtype=np.uint8), ["no", "yes"]),
        ("float8[]", np.array([0.5, 1.25, -0.0])),
    ], counts=np.array([2, 1]))
    first = (struct.pack(">h", 6) + field(b"bc") + struct.pack(">i", -1) + field(struct.pack(">i", 2))
             + array(20, [struct.pack(">q", 7), struct.pack(">q", -2)]) + array(25, [b"yes", b"no"])
             + array(701, [struct.pack(">d", 0.5), struct.pack(">d", 1.25)]))
    second = (struct.pack(">h", 6) + field(b"a") + struct.pack(">i", -1) + field(struct.pack(">i", 1))
              + array(20, [struct.pack(">q", 5)]) + array(25, [b"yes"])
              + array(701, [struct.pack(">d", -0.0)]))
    assert stream == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + first + second + b"\xff\xff"


def test_no_rows() -> None:
    assert pg_copy.encode([("int4", np.array([], dtype=np.int32))], np.array([], dtype=np.int32)) \
        == pg_copy.SIGNATURE + pg_copy.TRAILER


def test_the_server_reads_what_was_encoded(pg_url: str) -> None:
    days = np.array(["2008-05-13", "2010-11-30", "1999-12-31"], dtype="datetime64[D]").astype(np.int64)
    stream = pg_copy.encode([
        ("timestamptz", np.array([946_684_800.0, 1_700_000_000.5])),
        ("text", np.array([1, 0]), ["été", None]),
        ("date[]", days),
        ("int8[]", np.array([-(10**9), 0, 2**40])),
        ("float8[]", np.array([0.1, 1e-300, 1.0])),
        ("text[]", np.array([2, 0, 1]), ["a", "bé", "c"]),
    ], counts=np.array([1, 2]))
    conn = psycopg2.connect(pg_url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE t "
                        "(at timestamptz, s text, d date[], n bigint[], x float8[], c text[])")
            cur.copy_expert("COPY t FROM STDIN WITH (FORMAT binary)", io.BytesIO(stream))
            cur.execute("SELECT extract(epoch FROM at)::numeric, s, d, n, x, c FROM t")
            got = [(float(at), *rest) for at, *rest in cur.fetchall()]
    finally:
        conn.close()
    assert got == [
        (946_684_800.0, None, [date(2008, 5, 13)], [-(10**9)], [0.1], ["c"]),
        (1_700_000_000.5, "été", [date(2010, 11, 30), date(1999, 12, 31)], [0, 2**40], [1e-300, 1.0],
         ["a", "bé"]),
    ]


def test_small_and_big_pieces_are_joined_alike_and_read_back(pg_url: str) -> None:
    """Rows of a customer or a few (small pieces: gathered by NumPy) and of many (big pieces:
    joined as slices) give the same stream either way; request ids by the hundred take the
    Python path of texts(); the server reads back every value."""
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 4, size=300).astype(np.int32)
    ends = np.cumsum(counts)
    ids = [f"request-{i}-é" for i in range(300)]
    numbers = rng.integers(-(10**6), 10**6, size=int(ends[-1]))
    codes = rng.integers(0, 3, size=int(ends[-1]))
    columns = [("text", np.arange(300), ids), ("int4", counts), ("int8[]", numbers),
               ("text[]", codes, ["a", None, "bé"])]
    pieces = pg_copy._pieces(columns, counts)
    assert pg_copy._gathered(pieces, 300) == pg_copy._joined(pieces, 300)
    conn = psycopg2.connect(pg_url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE t (id text, n int, x bigint[], c text[])")
            stream = io.BytesIO(pg_copy.encode(columns, counts))
            cur.copy_expert("COPY t FROM STDIN WITH (FORMAT binary)", stream)
            cur.execute("SELECT id, n, x, c FROM t")
            got = {row[0]: row[1:] for row in cur.fetchall()}
    finally:
        conn.close()
    choices = ["a", None, "bé"]
    assert got == {ids[i]: (int(counts[i]), numbers[ends[i] - counts[i]:ends[i]].tolist(),
                            [choices[c] for c in codes[ends[i] - counts[i]:ends[i]]]) for i in range(300)}
