"""Columns of NumPy arrays to PostgreSQL's binary COPY format, in a few array operations per
column: no Python work per value, only per row written.

A row written holds scalar fields (one value each) and array fields (``counts[row]`` values
each): the prediction log writes one row per request, its customers' features as arrays. The
format: a header, then per row the number of fields (int16) and each field as its length
(int32, -1 for NULL) and its bytes; an array field's bytes are its header (dimensions, flags,
element type, length, lower bound) then each element as a field. All big-endian; -1 (int16)
ends the stream. https://www.postgresql.org/docs/current/sql-copy.html#SQL-COPY-BINARY-FORMAT

Each column's values are first laid end to end, each with its length in front; a row's field
is then a slice of that buffer (after an array's header), so the rows are joined from slices.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # the signature, no flags, no header extension
TRAILER = b"\xff\xff"
NULL = -1
# PostgreSQL's timestamps count microseconds, and its dates days, from 2000-01-01 (UTC).
EPOCH_2000 = 946_684_800
DAYS_1970_TO_2000 = 10_957
ELEMENT_TYPES = {"int8": 20, "float8": 701, "date": 1082, "text": 25}  # pg_type oids


@dataclass(frozen=True, eq=False)
class Values:
    """Values laid end to end, each as a field (its length, then its bytes): value ``i`` is
    ``data[offsets[i]:offsets[i + 1]]``."""

    data: np.ndarray     # uint8
    offsets: np.ndarray  # int64, one more than the values


def _be(value: int, dtype: str) -> np.ndarray:
    return np.frombuffer(np.array(value, dtype=dtype).tobytes(), dtype=np.uint8)


def fixed(values: np.ndarray) -> Values:
    """Fixed-width values already in their wire form: '>i8' for bigint, '>f8' for double
    precision, '>i4' for integer or date (days since 2000)."""
    n, width = len(values), values.dtype.itemsize
    matrix = np.empty((n, 4 + width), dtype=np.uint8)
    matrix[:, :4] = _be(width, ">i4")
    matrix[:, 4:] = np.ascontiguousarray(values).view(np.uint8).reshape(n, width)
    return Values(matrix.reshape(-1), np.arange(n + 1, dtype=np.int64) * (4 + width))


def texts(codes: np.ndarray, choices: Sequence[str | None]) -> Values:
    """Text values ``choices[code]`` (None: NULL): categories, or a request's id over its rows."""
    encoded = [None if t is None else t.encode() for t in choices]
    if len(encoded) > 64:  # many distinct values (the requests' ids): a field each, in Python
        fields = [_be(NULL, ">i4").tobytes() if e is None else len(e).to_bytes(4, "big") + e for e in encoded]
        picked = [fields[code] for code in codes.tolist()]
        offsets = np.zeros(len(picked) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, picked), dtype=np.int64, count=len(picked)), out=offsets[1:])
        return Values(np.frombuffer(b"".join(picked), dtype=np.uint8), offsets)
    width = 4 + max((len(e) for e in encoded if e is not None), default=0)
    table = np.zeros((len(encoded), width), dtype=np.uint8)
    sizes = np.empty(len(encoded), dtype=np.int64)
    for i, value in enumerate(encoded):
        table[i, :4] = _be(NULL if value is None else len(value), ">i4")
        sizes[i] = 4 + len(value or b"")
        table[i, 4:sizes[i]] = np.frombuffer(value or b"", dtype=np.uint8)
    real = np.arange(width) < sizes[:, None]
    offsets = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(sizes[codes], out=offsets[1:])
    return Values(table[codes][real[codes]], offsets)


def timestamps(unix_seconds: np.ndarray) -> Values:
    """timestamptz values from seconds since 1970 (UTC)."""
    return fixed(np.round((unix_seconds - EPOCH_2000) * 1e6).astype(">i8"))


def dates(days_since_1970: np.ndarray) -> Values:
    """date values from days since 1970-01-01."""
    return fixed((days_since_1970 - DAYS_1970_TO_2000).astype(">i4"))


# A column as handed to another process: its kind, then the arguments of its builder.
Column = tuple[Any, ...]
KINDS: dict[str, tuple[Callable[..., Values], str | None]] = {  # builder, array element type
    "text": (texts, None),
    "int4": (lambda values: fixed(values.astype(">i4")), None),
    "timestamptz": (timestamps, None),
    "int8[]": (lambda values: fixed(values.astype(">i8")), "int8"),
    "float8[]": (lambda values: fixed(values.astype(">f8")), "float8"),
    "date[]": (dates, "date"),
    "text[]": (texts, "text"),
}


# A piece of every row: its bytes are ``buffer[start[row]:stop[row]]``.
Pieces = tuple[np.ndarray, np.ndarray, np.ndarray]
# Below this many bytes a piece on average, the stream is gathered by one index per byte; above,
# joined from a slice per piece (measured: about 16 ns a byte against 0.9 µs a piece).
GATHER_BELOW_BYTES = 56
GATHER_CHUNK_BYTES = 8 << 20  # the byte index, 8 bytes a byte, is built this much at a time


def encode(columns: Sequence[Column], counts: np.ndarray) -> bytes:
    """The COPY ... FROM STDIN WITH (FORMAT binary) stream of ``len(counts)`` rows: a scalar
    column has a value per row, an array column ``counts[row]`` values for each row (at least
    one), in row order.

    Each row is a list of pieces (its field count, each field, an array's header before its
    elements), each a slice of a column's buffer. Many small pieces (requests of a customer or
    a few: 38,429 rows of one customer, 3.6 s joined as Python objects) are gathered with NumPy
    (0.36 s); a few big ones (requests of 1000 customers) are joined as slices."""
    rows = len(counts)
    pieces = _pieces(columns, counts)
    size = sum(int((stop - start).sum()) for _, start, stop in pieces)
    if rows and size < GATHER_BELOW_BYTES * rows * len(pieces):
        body = _gathered(pieces, rows)
    else:
        body = _joined(pieces, rows)
    return SIGNATURE + body + TRAILER


def _pieces(columns: Sequence[Column], counts: np.ndarray) -> list[Pieces]:
    rows = len(counts)
    bounds = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    field_count = np.frombuffer(len(columns).to_bytes(2, "big"), dtype=np.uint8)
    found: list[Pieces] = [(field_count, np.zeros(rows, dtype=np.int64), np.full(rows, 2, dtype=np.int64))]
    for kind, *arguments in columns:
        build, element = KINDS[kind]
        values = build(*arguments)
        if element is None:
            found.append((values.data, values.offsets[:-1], values.offsets[1:]))
            continue
        starts, ends = values.offsets[bounds[:-1]], values.offsets[bounds[1:]]
        headers = np.empty((rows, 6), dtype=">i4")  # the field's length, then the array's header:
        headers[:] = (0, 1, 0, ELEMENT_TYPES[element], 0, 1)  # one dimension, no NULL, lower bound 1
        headers[:, 0] = 20 + ends - starts
        headers[:, 4] = counts
        at = 24 * np.arange(rows, dtype=np.int64)
        found += [(headers.view(np.uint8).reshape(-1), at, at + 24), (values.data, starts, ends)]
    return found


def _joined(pieces: list[Pieces], rows: int) -> bytes:
    """A slice per piece, joined. The slices are a few Python objects per piece, none of them
    cyclic: the garbage collector is paused meanwhile (it took three quarters of the time)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        # Python ints: slicing by NumPy integers costs more.
        per_piece = [[view[a:b] for a, b in zip(start.tolist(), stop.tolist(), strict=True)]
                     for view, start, stop in ((buffer.data, start, stop) for buffer, start, stop in pieces)]
        return b"".join(piece[i] for i in range(rows) for piece in per_piece)
    finally:
        if paused:
            gc.enable()


def _gathered(pieces: list[Pieces], rows: int) -> bytes:
    """Every buffer laid end to end, and the stream taken from it by one index per byte."""
    bases = np.cumsum([0, *(len(buffer) for buffer, _, _ in pieces[:-1])])
    buffer = np.concatenate([buffer for buffer, _, _ in pieces])
    start = np.stack([base + s for base, (_, s, _) in zip(bases, pieces, strict=True)], axis=1)
    size = np.stack([stop - s for _, s, stop in pieces], axis=1)  # (rows, pieces of a row)
    ends = np.cumsum(size.sum(axis=1))
    out: list[bytes] = []
    row = 0
    while row < rows:
        stop = max(int(np.searchsorted(ends, ends[row] - size[row].sum() + GATHER_CHUNK_BYTES, "right")),
                   row + 1)
        first, length = start[row:stop].reshape(-1), size[row:stop].reshape(-1)
        shift = np.repeat(first - (np.cumsum(length) - length), length)
        out.append(buffer[shift + np.arange(len(shift))].tobytes())
        row = stop
    return b"".join(out)
