"""Our binary COPY (pg_copy.encode, sent by psycopg2) against the maintained alternatives: psycopg
3's binary ``copy`` (``write_row``) and ADBC's PostgreSQL driver (``adbc_ingest`` of an Arrow
table built from the arrays).

The same rows the prediction log writes: the 38,429 customers scored, one predictions row per
request with the customers as arrays, in requests of 1000 rows and of 1 row. Each implementation
writes them into the partitioned ``predictions`` table of a fresh database, in turn, several
rounds; the medians of the whole write (encode and send) are printed and written to
bench/copy_compare.json.

Not in the locks (a measurement, not a dependency): pip install "psycopg[binary]==3.3.9"
adbc-driver-postgresql==1.13.0

Usage: python -m bench.copy_compare [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2

from bench.compare import ADMIN_URL, DATA
from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import make_engine
from chaos_pyfunc.predlog import pg_copy, prediction_table
from chaos_pyfunc.predlog.prediction_log import Rows, Scored
from tests.support.database import fresh_database

VERSION = "7"


def requests(size: int) -> list[Scored]:
    customers = pd.read_csv(DATA / "customers.csv")
    batch = schema.fast_batch(schema.as_signature_types(customers[list(schema.INPUT_COLUMNS)]))
    if batch is None:
        raise RuntimeError("the customers must be valid")
    appetence = np.random.default_rng(0).random(len(customers))
    now = time.time()
    taken = []
    for start in range(0, len(customers), size):
        part = slice(start, start + size)
        sub = schema.Batch(months=batch.months[part], days=batch.days[part],
                           codes={c: v[part] for c, v in batch.codes.items()},
                           integers={c: v[part] for c, v in batch.integers.items()})
        taken.append(Scored(sub, appetence[part], f"req-{start}", now, None))
    return taken


def ours(url: str, rows: Rows) -> None:
    stream = pg_copy.encode(rows.columns(VERSION), rows.counts)
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.copy_expert(prediction_table.COPY, io.BytesIO(stream), size=len(stream))
    finally:
        conn.close()


def _python_rows(rows: Rows) -> list[list[object]]:
    """The rows as psycopg 3 and Arrow take them: Python values and lists, per request."""
    bounds = np.concatenate([[0], np.cumsum(rows.counts)])
    dates = (np.datetime64("1970-01-01") + rows.days.astype("timedelta64[D]")).astype(dt.date)
    at = [dt.datetime.fromtimestamp(t, dt.UTC) for t in rows.scored_at]
    text = {c: np.array(schema.CATEGORIES[c], dtype=object)[rows.codes[c]] for c in schema.CATEGORIES}
    out = []
    for i, request_id in enumerate(rows.request_ids):
        a, b = bounds[i], bounds[i + 1]
        by_row = {schema.DATE: list(dates[a:b]),
                  **{c: rows.integers[c][a:b].tolist() for c in schema.INTEGERS},
                  **{c: text[c][a:b].tolist() for c in schema.CATEGORIES},
                  schema.OUTPUT_COLUMN: rows.appetence[a:b].tolist(), schema.CONTACT_ID: [None] * int(b - a)}
        out.append([request_id, at[i], VERSION, int(rows.counts[i]),
                    *(by_row[name] for name in prediction_table.ROW_COLUMNS)])
    return out


def _types() -> list[str]:
    kinds = {schema.DATE: "date[]", **dict.fromkeys(schema.INTEGERS, "int8[]"),
             **dict.fromkeys(schema.CATEGORIES, "text[]"), schema.OUTPUT_COLUMN: "float8[]",
             schema.CONTACT_ID: "text[]"}
    return ["text", "timestamptz", "text", "int4", *(kinds[name] for name in prediction_table.ROW_COLUMNS)]


def psycopg3(url: str, rows: Rows) -> None:
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(prediction_table.COPY) as copy:
        copy.set_types(_types())
        for row in _python_rows(rows):
            copy.write_row(row)


def arrow_table(rows: Rows) -> object:
    """The rows as an Arrow table built from their arrays (offsets and values, no Python value)."""
    import pyarrow as pa

    offsets = pa.array(np.concatenate([[0], np.cumsum(rows.counts)]).astype(np.int32))

    def listed(values: object) -> object:
        return pa.ListArray.from_arrays(offsets, values)

    def categories(column: str) -> object:
        return pa.DictionaryArray.from_arrays(rows.codes[column].astype(np.int32),
                                              list(schema.CATEGORIES[column])).cast(pa.string())

    by_row = {schema.DATE: listed(pa.array(rows.days, type=pa.int32()).cast(pa.date32())),
              **{c: listed(pa.array(rows.integers[c])) for c in schema.INTEGERS},
              **{c: listed(categories(c)) for c in schema.CATEGORIES},
              schema.OUTPUT_COLUMN: listed(pa.array(rows.appetence)),
              schema.CONTACT_ID: listed(pa.nulls(len(rows), pa.string()))}
    at = pa.array(np.round(rows.scored_at * 1e6).astype(np.int64)).cast(pa.timestamp("us", tz="UTC"))
    counts = pa.array(rows.counts, type=pa.int32())
    return pa.table([pa.array(rows.request_ids), at, pa.array([VERSION] * len(rows.counts)), counts,
                     *(by_row[n] for n in prediction_table.ROW_COLUMNS)],
                    names=list(prediction_table.WRITTEN))


def adbc(url: str, rows: Rows) -> None:
    import adbc_driver_postgresql.dbapi

    table = arrow_table(rows)
    with adbc_driver_postgresql.dbapi.connect(url) as conn, conn.cursor() as cur:
        cur.adbc_ingest("predictions", table, mode="append")
        conn.commit()


def run(rounds: int) -> dict[str, object]:
    """The medians by implementation and request size, and the rows each size writes."""
    url = fresh_database(ADMIN_URL, "chaos_copy_compare").replace("postgresql+psycopg2", "postgresql")
    engine = make_engine(Settings(database_url=url.replace("postgresql://", "postgresql+psycopg2://")))
    prediction_table.create(engine)
    prediction_table.add_partitions(engine, [dt.datetime.now(dt.UTC).date()])
    found: dict[str, dict[str, float]] = {}
    written: dict[str, int] = {}
    for size in (1000, 1):
        rows = Rows.of(requests(size))
        written[f"requests_of_{size}"] = len(rows.counts)
        for name, write in (("ours", ours), ("psycopg3", psycopg3), ("adbc", adbc)):
            times = []
            try:
                for _ in range(rounds):
                    started = time.perf_counter()
                    write(url, rows)
                    times.append(time.perf_counter() - started)
            except Exception as exc:
                print(f"{name}, requests of {size}: failed: {type(exc).__name__}: {str(exc)[:300]}")
                continue
            found.setdefault(f"requests_of_{size}", {})[name] = statistics.median(times) * 1e3
            print(f"requests of {size} rows ({len(rows.counts):,} rows written, {len(rows):,} customers): "
                  f"{name} {statistics.median(times) * 1e3:.0f} ms")
    engine.dispose()
    return {"median_ms": found, "rows_written": written, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/copy_compare.json"))
    args = parser.parse_args()
    args.out.write_text(json.dumps(run(args.rounds), indent=1) + "\n")


if __name__ == "__main__":
    main()
