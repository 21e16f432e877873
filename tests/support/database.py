"""PostgreSQL databases made and dropped through a superuser URL: the tests' throwaway ones and
the benchmarks' fresh ones holding socio_eco."""

from __future__ import annotations

from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

import chaos_pyfunc.db
from chaos_pyfunc.config import Settings
from chaos_pyfunc.db import SEED_INDICATORS, load_csv, make_engine

# The public months the package embeds: the shared socio_eco.csv byte for byte (tests/test_db.py).
SEED_CSV = Path(chaos_pyfunc.db.__file__).with_name(SEED_INDICATORS)


def admin(admin_url: str) -> psycopg2.extensions.connection:
    """An autocommit connection through ``admin_url`` (a superuser's); psycopg2's error if the
    server is unreachable."""
    url = make_url(admin_url)
    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username,
                            password=url.password, dbname=url.database, connect_timeout=3)
    conn.autocommit = True
    return conn


def create_database(admin_url: str, name: str) -> str:
    """Database ``name``, dropped first if it was there, empty; its SQLAlchemy URL."""
    conn = admin(admin_url)
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    conn = admin(admin_url)
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    conn.close()


def fresh_database(admin_url: str, name: str, socio_eco_csv: Path = SEED_CSV) -> str:
    """Database ``name``, made anew with ``socio_eco_csv`` loaded; its URL."""
    url = create_database(admin_url, name)
    engine = make_engine(Settings(database_url=url))
    load_csv(engine, "socio_eco", socio_eco_csv)
    engine.dispose()
    return url
