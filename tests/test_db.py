import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import CUSTOMERS_CSV, SHARED_SOCIO_ECO_CSV, SOCIO_ECO_CSV
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError
from support.rows import contract_rows

from chaos_pyfunc.config import EMBEDDED_DATABASE_PATH, Settings
from chaos_pyfunc.db import (
    DataError,
    customers,
    init_schema,
    load_csv,
    make_engine,
    read_customers,
    seed_embedded,
    socio_eco,
)


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_init_creates_both_tables(any_url: str) -> None:
    engine = make_engine(Settings(database_url=any_url))
    init_schema(engine)
    init_schema(engine)  # twice is harmless
    assert {"socio_eco", "customers"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_loading_indicators_twice_changes_nothing(any_url: str) -> None:
    engine = make_engine(Settings(database_url=any_url))
    assert load_csv(engine, "socio_eco", SOCIO_ECO_CSV) == 26
    assert load_csv(engine, "socio_eco", SOCIO_ECO_CSV) == 26
    assert count(engine, socio_eco) == 26
    engine.dispose()


def test_reloading_indicators_updates_a_corrected_month(any_url: str, tmp_path: Path) -> None:
    engine = make_engine(Settings(database_url=any_url))
    load_csv(engine, "socio_eco", SOCIO_ECO_CSV)
    corrected = pd.read_csv(SOCIO_ECO_CSV).tail(1).assign(euribor_3m=1.5)
    corrected = pd.concat([corrected, corrected.assign(date="2010-12-31", euribor_3m=1.6)])
    corrected.to_csv(tmp_path / "corrected.csv", index=False)
    load_csv(engine, "socio_eco", tmp_path / "corrected.csv")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT euribor_3m FROM socio_eco WHERE date >= '2010-11-30' ORDER BY date"))
        assert [r[0] for r in rows] == [1.5, 1.6]
    assert count(engine, socio_eco) == 27
    engine.dispose()


@pytest.mark.data
def test_the_embedded_seed_is_the_shared_socio_eco() -> None:
    assert SOCIO_ECO_CSV.read_bytes() == SHARED_SOCIO_ECO_CSV.read_bytes()


@pytest.mark.data
def test_loading_customers_twice_keeps_one_copy(any_url: str) -> None:
    engine = make_engine(Settings(database_url=any_url))
    assert load_csv(engine, "customers", CUSTOMERS_CSV) == 38429
    load_csv(engine, "customers", CUSTOMERS_CSV)
    assert count(engine, customers) == 38429
    read_back = read_customers(engine)
    original = pd.read_csv(CUSTOMERS_CSV)
    assert sorted(read_back.columns) == sorted([*original.columns, "contact_id"])
    assert read_back["contact_id"].isna().all()  # the shared CSV has no contact ids: optional
    pd.testing.assert_frame_equal(read_back[original.columns], original, check_dtype=False)
    engine.dispose()


def test_contact_ids_are_loaded_and_a_table_without_the_column_gets_it(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(Settings(database_url=pg_url))
    init_schema(engine)
    with engine.begin() as conn:  # a customers table made by an earlier version
        conn.execute(text("ALTER TABLE customers DROP COLUMN contact_id"))
    rows = contract_rows(3, seed=3).assign(duration_contact=100, subscription=["yes", "no", "no"],
                                           contact_id=["0042", None, "b-7"])
    rows.to_csv(tmp_path / "c.csv", index=False)
    assert load_csv(engine, "customers", tmp_path / "c.csv") == 3
    assert read_customers(engine)["contact_id"].tolist() == ["0042", None, "b-7"]  # text, as sent
    engine.dispose()


@pytest.mark.parametrize(
    ("table", "content", "message"),
    [
        ("socio_eco", "date,euribor_3m\n2010-01-31,1\n", "missing column"),
        ("socio_eco", "date,employment_variation_rate,idx_consumer_price,idx_consumer_confidence,"
                      "euribor_3m,nb_employee\n2010-01-15,1,2,3,4,5\n",
         r"must be month ends, line\(s\) \[2\]"),
        ("socio_eco", "date,employment_variation_rate,idx_consumer_price,idx_consumer_confidence,"
                      "euribor_3m,nb_employee\n2010-01-31,1,,3,4,5\n", "empty indicator"),
        ("socio_eco", "date,employment_variation_rate,idx_consumer_price,idx_consumer_confidence,"
                      "euribor_3m,nb_employee\nJan 2010,1,2,3,4,5\n", "unreadable date"),
        ("customers", "date\n2010-01-31\n", "missing column"),
        ("nowhere", "date\n", "unknown table"),
    ],
)
def test_bad_files_are_refused(
    sqlite_url: str, tmp_path: Path, table: str, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    engine = make_engine(Settings(database_url=sqlite_url))
    with pytest.raises(DataError, match=message):
        load_csv(engine, table, path)
    engine.dispose()


@pytest.mark.data
def test_a_bad_label_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    pd.read_csv(CUSTOMERS_CSV).head(3).assign(subscription="maybe").to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(DataError, match="subscription must be yes or no"):
        load_csv(make_engine(Settings(database_url=sqlite_url)), "customers", tmp_path / "c.csv")


def test_postgres_engine_has_timeouts_and_pre_ping(pg_url: str) -> None:
    engine = make_engine(Settings(database_url=pg_url, statement_timeout_ms=1234))
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "1234ms"
        assert conn.execute(text("SELECT current_setting('application_name')")).scalar_one() == "chaos"
        client = conn.connection.dbapi_connection.get_dsn_parameters()
        assert client["tcp_user_timeout"] == str(1234 + 3000)
        assert client["keepalives"] == "1"
    assert engine.pool._pre_ping
    engine.dispose()


def test_a_slow_statement_is_cancelled_by_the_statement_timeout(pg_url: str) -> None:
    for read_only in (False, True):
        engine = make_engine(Settings(database_url=pg_url, statement_timeout_ms=200), read_only=read_only)
        started = time.monotonic()
        with engine.connect() as conn, pytest.raises(DBAPIError, match="statement timeout"):
            conn.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 2
        assert engine.pool._pre_ping  # the serving engine too: dead pooled connections are replaced
        engine.dispose()


def test_the_serving_engine_reads_in_autocommit_and_cannot_write(pg_url: str) -> None:
    init_schema(make_engine(Settings(database_url=pg_url)))
    engine = make_engine(Settings(database_url=pg_url), read_only=True)
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit  # no BEGIN / ROLLBACK round trips
        assert conn.execute(text("SHOW default_transaction_read_only")).scalar_one() == "on"
        with pytest.raises(DBAPIError, match="read-only transaction"):
            conn.execute(text("DELETE FROM socio_eco"))
    engine.dispose()


def test_seed_embedded_creates_the_default_database_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert seed_embedded(settings) is True
    assert seed_embedded(settings) is False
    engine = make_engine(settings)
    assert count(engine, socio_eco) == 26
    engine.dispose()
    assert (tmp_path / EMBEDDED_DATABASE_PATH).exists()
    assert not list((tmp_path / "var").glob("*.tmp"))


def test_seed_embedded_leaves_other_databases_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert seed_embedded(Settings(database_url=f"sqlite:///{tmp_path / 'other.db'}")) is False
    assert not (tmp_path / "var").exists()
