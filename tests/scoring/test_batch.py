"""Batch scoring through the committed model: CSV files, PostgreSQL tables, Spark."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, engine_with_indicators, request_rows, throwaway_pg_database
from sqlalchemy import Engine

from chaos_pyfunc.cli import main
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import load_csv
from chaos_pyfunc.scoring.batch import BatchError, progress_bar, score_csv, score_spark, score_table

MODEL = str(REPO / "model")


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    """A PostgreSQL database with the real socio_eco; the served model reads it (module-wide)."""
    with throwaway_pg_database(with_indicators=True) as url:
        patch = pytest.MonkeyPatch()
        patch.setenv("CHAOS_DATABASE_URL", url)
        patch.delenv("CHAOS_CONFIG", raising=False)
        engine = engine_with_indicators(url)
        yield engine
        engine.dispose()
        patch.undo()


@pytest.fixture(scope="module")
def pyfunc(pg_engine: Engine) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(MODEL)


def expected(pyfunc: mlflow.pyfunc.PyFuncModel, rows: pd.DataFrame) -> np.ndarray:
    return pyfunc.predict(schema.as_signature_types(rows[list(schema.INPUT_COLUMNS)]))["appetence"].to_numpy()


def test_a_csv_is_scored_chunk_by_chunk_into_a_complete_file(pyfunc, customers: pd.DataFrame,
                                                             tmp_path: Path) -> None:
    rows = customers.sample(1_003, random_state=1)
    rows.to_csv(tmp_path / "in.csv", index=False)
    shown = io.StringIO()
    report = score_csv(MODEL, tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=100, stream=shown)
    assert report.rows == 1_003 and report.rows_per_second > 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == [*rows.columns, "appetence"]  # every input column is kept, in order
    assert np.max(np.abs(out["appetence"].to_numpy() - expected(pyfunc, rows))) < 1e-12
    assert "1003/1003" in shown.getvalue() and "100%" in shown.getvalue()  # tqdm's bar, at the end
    assert not (tmp_path / "out.csv.partial").exists()


def test_a_bad_row_stops_the_run_naming_it_and_writes_nothing(pg_engine: Engine, customers: pd.DataFrame,
                                                              tmp_path: Path) -> None:
    rows = request_rows(customers, 250, seed=2)
    rows.loc[230, "job_type"] = "astronaut"
    rows.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(BatchError, match=r"rows 200 to 249 .*job_type: must be one of .* row 30"):
        score_csv(MODEL, tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=100, stream=None)
    assert list(tmp_path.iterdir()) == [tmp_path / "in.csv"]


def test_a_table_is_scored_into_another_in_postgres(pyfunc, pg_engine: Engine, customers: pd.DataFrame,
                                                    tmp_path: Path) -> None:
    sample = customers.sample(700, random_state=3)
    sample.to_csv(tmp_path / "customers.csv", index=False)
    load_csv(pg_engine, "customers", tmp_path / "customers.csv")
    report = score_table(MODEL, pg_engine, "customers", "scores", chunk_rows=128, stream=None)
    assert report.rows == 700
    scored = pd.read_sql_table("scores", pg_engine).sort_values("id")
    assert len(scored) == 700
    requests = scored.assign(date=scored["date"].dt.strftime("%Y-%m-%d"))
    assert np.max(np.abs(scored["appetence"].to_numpy() - expected(pyfunc, requests))) < 1e-12


def test_the_command_line_scores_a_file(pg_engine: Engine, customers: pd.DataFrame, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    customers.head(60).to_csv(tmp_path / "in.csv", index=False)
    assert main(["score", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
                 "--model", MODEL]) == 0
    assert "scored 60 rows" in capsys.readouterr().out
    assert main(["score", "--input", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "x.csv"),
                 "--model", MODEL]) == 2
    load_csv(pg_engine, "customers", tmp_path / "in.csv")
    assert main(["score", "--table", "customers", "--output", "cli_scores", "--model", MODEL]) == 0
    assert "scored 60 rows" in capsys.readouterr().out
    assert len(pd.read_sql_table("cli_scores", pg_engine)) == 60


def test_the_progress_bar_counts_rows() -> None:
    shown = io.StringIO()
    progress = progress_bar(200, shown)
    progress.update(50)
    progress.refresh()
    assert " 25%" in shown.getvalue() and "50/200" in shown.getvalue()
    progress.close()
    silent = progress_bar(200, None)
    silent.update(200)
    silent.close()


@pytest.mark.spark
def test_spark_udf_gives_the_pyfunc_scores(pyfunc, customers: pd.DataFrame,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from pyspark.sql import SparkSession

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # the workers need this venv's packages
    rows = request_rows(customers, 40, seed=4)
    spark = (SparkSession.builder.master("local[2]").appName("chaos-test")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
             .getOrCreate())
    try:
        scored = score_spark(spark.createDataFrame(rows), MODEL).toPandas()
        # A CSV read with inferSchema gives a date column of Spark's date type: scored the same.
        dated = spark.createDataFrame(rows.assign(date=pd.to_datetime(rows["date"]).dt.date))
        from_dates = score_spark(dated, MODEL).toPandas()
    finally:
        spark.stop()
    assert list(scored.columns) == [*schema.INPUT_COLUMNS, "appetence"]
    assert np.max(np.abs(scored["appetence"].to_numpy() - expected(pyfunc, rows))) < 1e-12
    assert np.max(np.abs(from_dates["appetence"].to_numpy() - expected(pyfunc, rows))) < 1e-12
