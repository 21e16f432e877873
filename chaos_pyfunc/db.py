"""Database access: the engine factory, the two tables and idempotent CSV loaders.

Works on any SQLAlchemy URL; PostgreSQL in production, an embedded SQLite file by default.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, cast

import pandas as pd
from sqlalchemy import (
    Column,
    Date,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chaos_pyfunc.config import EMBEDDED_DATABASE_PATH, Settings
from chaos_pyfunc.contract import schema

log = logging.getLogger(__name__)

INDICATORS = schema.INDICATORS  # the socio_eco table's columns

metadata = MetaData()

socio_eco = Table(
    "socio_eco",
    metadata,
    Column("date", Date, primary_key=True, comment="last day of the month"),
    *(Column(name, Float, nullable=False) for name in INDICATORS),
)

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("date", Date, nullable=False, index=True),
    *(
        Column(name, Integer if name in schema.INTEGERS else String(32), nullable=False)
        for name in schema.CUSTOMER_COLUMNS
    ),
    Column("duration_contact", Integer, nullable=False),
    Column(schema.LABEL, String(3), nullable=False),
    # The bank's id of the contact, when it has one: the outcome chaos monitor joins to the
    # prediction log's rows sent with the same id. Optional in a CSV.
    Column(schema.CONTACT_ID, String(schema.CONTACT_ID_MAX_CHARS), nullable=True, index=True),
)
OPTIONAL_COLUMNS = frozenset({schema.CONTACT_ID})

TABLES = {"socio_eco": socio_eco, "customers": customers}

# The 26 public months of indicators, shipped so the embedded database needs no download.
SEED_INDICATORS = "seed_indicators.csv"


class DataError(ValueError):
    """A CSV file does not hold what its table needs."""


def make_engine(settings: Settings, read_only: bool = False) -> Engine:
    """A pooled engine that fails fast when the database is away and heals when it is back.

    At most ``2 * pool_size`` connections; each is pinged before use (a database restart
    leaves dead ones in the pool) and replaced after ``pool_recycle_seconds``. ``read_only``
    (serving): autocommit, so a read is the statement alone, and PostgreSQL refuses any write.
    """
    url = settings.url
    connect_args: dict[str, object] = {}
    if url.get_backend_name() == "postgresql":
        connect_args = pg_connect_args(settings, read_only)
    elif url.get_backend_name() == "sqlite":
        connect_args = {"timeout": settings.connect_timeout_seconds}
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_timeout=settings.connect_timeout_seconds,
        pool_recycle=settings.pool_recycle_seconds,
        connect_args=connect_args,
        isolation_level="AUTOCOMMIT" if read_only else None,
    )


def pg_connect_args(settings: Settings, read_only: bool = False) -> dict[str, object]:
    """libpq's connection parameters beyond the URL: every PostgreSQL connection of ours."""
    options = f"-c statement_timeout={settings.statement_timeout_ms}"
    if read_only:
        options += " -c default_transaction_read_only=on"
    return {
        "connect_timeout": settings.connect_timeout_seconds,
        "options": options,
        "application_name": "chaos",
        # A database that vanishes mid-query (network cut, failover) errors out instead of
        # holding the request: unacknowledged data and silent peers are given up on.
        "tcp_user_timeout": settings.statement_timeout_ms + 1000 * settings.connect_timeout_seconds,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


def init_schema(engine: Engine) -> None:
    """Create the tables that do not exist yet, and the optional columns a table made by an
    earlier version lacks (customers.contact_id); nothing else is changed."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        present = {c["name"] for c in inspect(conn).get_columns("customers")}
        for name in sorted(OPTIONAL_COLUMNS - present):
            column = customers.c[name]
            conn.execute(text(f"ALTER TABLE customers ADD COLUMN {name} "
                              f"{column.type.compile(dialect=engine.dialect)}"))


def _read_csv(path: Path | str, table: Table) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={c: str for c in OPTIONAL_COLUMNS})
    wanted = [c.name for c in table.columns if c.name != "id" and (c.name in frame.columns
                                                                    or c.name not in OPTIONAL_COLUMNS)]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    frame = frame[wanted].copy()
    for name in OPTIONAL_COLUMNS & set(wanted):  # an empty cell: no value (NULL), not the text "nan"
        frame[name] = [None if pd.isna(value) else value for value in frame[name]]
    dates = pd.to_datetime(frame["date"], format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        raise DataError(f"{path}: unreadable date at line(s) {list(dates.index[dates.isna()][:5] + 2)}")
    frame["date"] = dates.dt.date
    return frame


def read_indicators_csv(path: Path | str) -> pd.DataFrame:
    frame = _read_csv(path, socio_eco)
    month_end = pd.to_datetime(frame["date"]) + pd.offsets.MonthEnd(0)
    off = month_end.dt.date != frame["date"]
    if off.any():
        lines = list(frame.index[off][:5] + 2)
        raise DataError(f"{path}: socio_eco dates must be month ends, line(s) {lines}")
    if frame[list(INDICATORS)].isna().any().any():
        raise DataError(f"{path}: empty indicator values")
    return frame


def read_customers_csv(path: Path | str) -> pd.DataFrame:
    frame = _read_csv(path, customers)
    if not frame[schema.LABEL].isin(("yes", "no")).all():
        raise DataError(f"{path}: {schema.LABEL} must be yes or no")
    return frame


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as SQLAlchemy takes many: one dict per row, by column name (pandas types its
    keys as any hashable; ours are the columns' names)."""
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def load_indicators(engine: Engine, frame: pd.DataFrame) -> int:
    """Upsert months by date: loading the same file twice changes nothing."""
    records = records_of(frame)
    dialect_insert = {"postgresql": pg_insert, "sqlite": sqlite_insert}.get(engine.dialect.name)
    with engine.begin() as conn:
        if dialect_insert is None:  # other databases: replace month by month
            conn.execute(delete(socio_eco).where(socio_eco.c.date.in_(frame["date"].tolist())))
            conn.execute(insert(socio_eco), records)
        else:
            stmt: Any = dialect_insert(socio_eco)  # PostgreSQL's or SQLite's Insert, alike here
            stmt = stmt.on_conflict_do_update(
                index_elements=[socio_eco.c.date],
                set_={name: stmt.excluded[name] for name in INDICATORS},
            )
            conn.execute(stmt, records)
    return len(records)


def load_customers(engine: Engine, frame: pd.DataFrame) -> int:
    """Replace the whole table: contacts have no natural key, so a reload must not duplicate."""
    with engine.begin() as conn:
        conn.execute(delete(customers))
        if len(frame):  # no parameters at all would insert one row of defaults
            conn.execute(insert(customers), records_of(frame))
    return len(frame)


def load_csv(engine: Engine, table: str, path: Path | str) -> int:
    """Create the schema if needed and load ``path`` into ``table``; returns the row count."""
    init_schema(engine)
    if table == "socio_eco":
        return load_indicators(engine, read_indicators_csv(path))
    if table == "customers":
        return load_customers(engine, read_customers_csv(path))
    raise DataError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")


def read_customers(engine: Engine) -> pd.DataFrame:
    """All labelled contacts, in the order they were loaded."""
    with engine.connect() as conn:
        frame = pd.read_sql(select(customers).order_by(customers.c.id), conn).drop(columns="id")
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
    return frame


def seed_embedded(settings: Settings) -> bool:
    """Create and seed the embedded SQLite database if it does not exist; True if it did now.

    Seeds a temporary file and renames it into place, so workers starting together never
    see a half-made database.
    """
    target = EMBEDDED_DATABASE_PATH
    if not settings.is_embedded_default or target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    engine = make_engine(settings.replaced(database_url=f"sqlite:///{scratch}"))
    try:
        count = load_csv(engine, "socio_eco", Path(__file__).with_name(SEED_INDICATORS))
    finally:
        engine.dispose()
    os.replace(scratch, target)
    log.info("seeded the embedded database %s with %d months", target, count)
    return True
