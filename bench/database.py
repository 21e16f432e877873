"""A fresh PostgreSQL database holding socio_eco, for the benchmarks, the soak and the outage."""

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
    """An autocommit connection through ``admin_url`` (a superuser's)."""
    url = make_url(admin_url)
    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username,
                            password=url.password, dbname=url.database, connect_timeout=3)
    conn.autocommit = True
    return conn


def fresh_database(admin_url: str, name: str, socio_eco_csv: Path = SEED_CSV) -> str:
    """Database ``name``, dropped if it was there, created with ``socio_eco_csv`` loaded; its URL."""
    conn = admin(admin_url)
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(Settings(database_url=url))
    load_csv(engine, "socio_eco", socio_eco_csv)
    engine.dispose()
    return url
