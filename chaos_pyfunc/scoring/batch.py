"""Batch scoring: a whole CSV file or table through the served pyfunc, chunk by chunk.

Memory stays flat whatever the size: one chunk is read, scored and written at a time. The
output is complete or absent: a file is written beside its target and renamed at the end, a
table is written in one transaction. A chunk with bad rows stops the run, naming the rows.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel  # by name: mypy sees mlflow.pyfunc as a lazy loader
from sqlalchemy import Engine, text
from tqdm import tqdm

from chaos_pyfunc.contract import schema

if TYPE_CHECKING:  # PySpark is optional: only score_spark needs it
    import pyspark.sql

DEFAULT_CHUNK_ROWS = 50_000


class BatchError(RuntimeError):
    """The run stopped; nothing was written."""


@dataclass(frozen=True)
class BatchReport:
    rows: int
    seconds: float  # reading, scoring and writing; the model's loading is not counted
    peak_rss_mb: float
    output: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (f"scored {self.rows:,} rows in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s, "
                f"read, scored and written), peak memory {self.peak_rss_mb:.0f} MB, into {self.output}")


def progress_bar(total: int | None, stream: TextIO | None) -> tqdm:
    """tqdm's bar on ``stream`` (none when None): rows done of ``total``, percent, rows per second."""
    return tqdm(total=total or None, file=stream, disable=stream is None, unit=" rows",
                dynamic_ncols=True, mininterval=0.5)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def reason_columns(answer: pd.DataFrame, k: int) -> dict[str, pd.Series]:
    """The answer's reasons as columns: ``reason_1_feature``, ``reason_1_effect``, … to ``k``
    (a row with fewer reasons: empty cells), and the baseline they add up from."""
    columns: dict[str, pd.Series] = {}
    for rank in range(k):
        found = [row[rank] if rank < len(row) else None for row in answer[schema.REASONS]]
        columns[f"reason_{rank + 1}_feature"] = pd.Series([r and r["feature"] for r in found])
        columns[f"reason_{rank + 1}_effect"] = pd.Series([r and r["effect"] for r in found], dtype=float)
    columns[schema.BASELINE] = answer[schema.BASELINE].reset_index(drop=True)
    return columns


def _score_chunks(model: PyFuncModel, chunks: Iterator[pd.DataFrame],
                  write: Callable[[pd.DataFrame, bool], None], progress: tqdm, reasons_k: int = 0) -> int:
    """Score every chunk, write it with its appetence column (and its reasons' columns, with
    ``reasons_k``); return the number of rows."""
    done = 0
    for chunk in chunks:
        rows = schema.as_signature_types(chunk.reset_index(drop=True))
        if pd.api.types.is_datetime64_any_dtype(rows[schema.DATE]):  # a DATE column of a table
            rows[schema.DATE] = rows[schema.DATE].dt.strftime("%Y-%m-%d")
        try:
            params = {schema.REASONS: reasons_k} if reasons_k else None
            answer = cast(pd.DataFrame, model.predict(rows[list(schema.INPUT_COLUMNS)], params=params))
            scores = answer[schema.OUTPUT_COLUMN].to_numpy()
            extra = reason_columns(answer, reasons_k) if reasons_k else {}
        except (MlflowException, KeyError) as exc:
            message = exc.message if isinstance(exc, MlflowException) else f"missing column {exc}"
            raise BatchError(f"rows {done} to {done + len(chunk) - 1} (numbered from 0 within them "
                             f"below): {message}") from None
        write(chunk.assign(**{schema.OUTPUT_COLUMN: scores}, **{k: v.to_numpy() for k, v in extra.items()}),
              done == 0)
        done += len(chunk)
        progress.update(len(chunk))
    progress.close()
    return done


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def score_csv(model_uri: str, source: Path, target: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS,
              stream: TextIO | None = sys.stderr, reasons_k: int = 0) -> BatchReport:
    """Score a customers CSV into ``target``: the same columns plus ``appetence`` (and, with
    ``reasons_k``, each row's reasons: reason_1_feature, reason_1_effect, …, baseline)."""
    model = mlflow.pyfunc.load_model(model_uri)
    started = time.perf_counter()
    partial = target.with_name(target.name + ".partial")
    text_columns: dict[Hashable, type[str]] = dict.fromkeys([schema.DATE, *schema.CATEGORIES], str)

    def write(frame: pd.DataFrame, first: bool) -> None:
        frame.to_csv(partial, mode="w" if first else "a", header=first, index=False)

    try:
        with pd.read_csv(source, chunksize=chunk_rows, dtype=text_columns) as chunks:
            rows = _score_chunks(model, chunks, write, progress_bar(max(_count_lines(source) - 1, 0), stream),
                                 reasons_k)
        if rows == 0:
            raise BatchError(f"{source} holds no rows")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return BatchReport(rows, time.perf_counter() - started, _peak_rss_mb(), str(target))


def score_table(model_uri: str, engine: Engine, source: str, target: str,
                chunk_rows: int = DEFAULT_CHUNK_ROWS, stream: TextIO | None = sys.stderr,
                reasons_k: int = 0) -> BatchReport:
    """Score table ``source`` into table ``target`` (replaced): its columns plus ``appetence``."""
    model = mlflow.pyfunc.load_model(model_uri)
    started = time.perf_counter()
    quoted = engine.dialect.identifier_preparer.quote
    with engine.connect() as count_conn:
        total: int = count_conn.execute(text(f"SELECT count(*) FROM {quoted(source)}")).scalar_one()  # noqa: S608
    # A server-side cursor on PostgreSQL: rows arrive chunk by chunk, never all at once.
    with engine.connect().execution_options(stream_results=True) as reader, engine.begin() as writer:
        chunks = pd.read_sql_query(text(f"SELECT * FROM {quoted(source)}"), reader, chunksize=chunk_rows)  # noqa: S608

        def write(frame: pd.DataFrame, first: bool) -> None:
            frame.to_sql(target, writer, if_exists="replace" if first else "append", index=False)

        rows = _score_chunks(model, chunks, write, progress_bar(total, stream), reasons_k)
    return BatchReport(rows, time.perf_counter() - started, _peak_rss_mb(), f"table {target}")


def score_spark(frame: pyspark.sql.DataFrame, model_uri: str) -> pyspark.sql.DataFrame:
    """``frame`` plus an ``appetence`` column, scored by the same pyfunc in Spark's Python workers
    (without reasons: a Spark UDF returns one value per row here).

    For customer bases beyond one machine. The workers read the indicators from the database the
    driver's environment names (CHAOS_DATABASE_URL or CHAOS_CONFIG), so every executor must reach it.
    """
    from pyspark.sql import functions

    udf = mlflow.pyfunc.spark_udf(frame.sparkSession, model_uri, result_type="double", env_manager="local")
    # Integer columns go as they are: long (or int) is what the signature takes; a fractional
    # double is refused by MLflow's schema check, never truncated by a cast here.
    columns = [functions.col(c) for c in schema.INPUT_COLUMNS]
    if frame.schema[schema.DATE].dataType.typeName() in ("date", "timestamp"):  # e.g. CSV with inferSchema
        columns[0] = functions.date_format(schema.DATE, "yyyy-MM-dd").alias(schema.DATE)
    return frame.withColumn(schema.OUTPUT_COLUMN, udf(functions.struct(*columns)))
