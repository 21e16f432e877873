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


def encode(columns: Sequence[Column], counts: np.ndarray) -> bytes:
    """The COPY ... FROM STDIN WITH (FORMAT binary) stream of ``len(counts)`` rows: a scalar
    column has a value per row, an array column ``counts[row]`` values for each row (at least
    one), in row order."""
    rows = len(counts)
    bounds = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    per_column: list[list[tuple[memoryview, ...]]] = []  # each row's pieces of bytes
    for kind, *arguments in columns:
        build, element = KINDS[kind]
        values = build(*arguments)
        view = values.data.data  # a memoryview of the array
        if element is None:
            ends = values.offsets
            per_column.append([(view[ends[i]:ends[i + 1]],) for i in range(rows)])
            continue
        starts, ends = values.offsets[bounds[:-1]], values.offsets[bounds[1:]]
        headers = np.empty((rows, 6), dtype=">i4")  # the field's length, then the array's header:
        headers[:] = (0, 1, 0, ELEMENT_TYPES[element], 0, 1)  # one dimension, no NULL, lower bound 1
        headers[:, 0] = 20 + ends - starts
        headers[:, 4] = counts
        head = headers.view(np.uint8).reshape(-1).data
        per_column.append([(head[24 * i:24 * i + 24], view[starts[i]:ends[i]]) for i in range(rows)])
    count = len(columns).to_bytes(2, "big")
    pieces: list[bytes | memoryview] = [SIGNATURE]
    for i in range(rows):
        pieces.append(count)
        for column in per_column:
            pieces.extend(column[i])
    pieces.append(TRAILER)
    return b"".join(pieces)
