"""Shared fixtures: the real reference data, throwaway PostgreSQL databases, SQLite files.

PostgreSQL tests never skip: when the server is unreachable they fail loudly, saying how
to start it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psycopg2
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from support.database import SEED_CSV, admin, create_database, drop_database
from support.server import REPO

from chaos_pyfunc.config import Settings
from chaos_pyfunc.db import load_csv, make_engine

DATA = Path(os.environ.get("CHAOS_DATA_DIR", REPO.parent / "shared" / "data"))
CUSTOMERS_CSV = DATA / "customers.csv"
SHARED_SOCIO_ECO_CSV = DATA / "socio_eco.csv"
# The indicator tests load the copy the package embeds (the embedded default's seed): it is the
# shared socio_eco.csv byte for byte (test_db checks), and it is there wherever the package is,
# inside the image too, where CI runs the tests that need no customer data.
SOCIO_ECO_CSV = SEED_CSV
# A superuser URL on the real server; each test database is created and dropped through it.
PG_ADMIN_URL = os.environ.get("CHAOS_TEST_PG_URL", "postgresql+psycopg2://root@127.0.0.1:5432/postgres")


def _reachable() -> None:
    """Fail, saying how to start it, when the real server is not there."""
    try:
        admin(PG_ADMIN_URL).close()
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is unreachable at {make_url(PG_ADMIN_URL).render_as_string(hide_password=True)}: "
            f"{exc}. Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )


def create_pg_database() -> str:
    """A new empty database on the real server; returns its SQLAlchemy URL."""
    _reachable()
    return create_database(PG_ADMIN_URL, f"chaos_test_{uuid.uuid4().hex[:12]}")


def drop_pg_database(url: str) -> None:
    drop_database(PG_ADMIN_URL, url)


@contextmanager
def throwaway_pg_database(with_indicators: bool = False) -> Iterator[str]:
    """A new database on the real server (optionally with the real socio_eco), then dropped."""
    url = create_pg_database()
    try:
        if with_indicators:
            engine_with_indicators(url).dispose()
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An empty throwaway PostgreSQL database, dropped afterwards."""
    with throwaway_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """A PostgreSQL database with the real socio_eco that one module may change at will."""
    with throwaway_pg_database(with_indicators=True) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chaos.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on the embedded SQLite default and on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chaos.db'}"
        return
    with throwaway_pg_database() as url:
        yield url


def engine_with_indicators(url: str) -> Engine:
    """An engine on ``url`` with the schema created and the real socio_eco loaded."""
    engine = make_engine(Settings(database_url=url))
    load_csv(engine, "socio_eco", SOCIO_ECO_CSV)
    return engine


@pytest.fixture
def indicators_engine(any_url: str) -> Iterator[Engine]:
    engine = engine_with_indicators(any_url)
    yield engine
    engine.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read the labelled customers carry the `data` marker, like the modules that say so.

    The longest files run first (the images' builds, then training): `make test` hands whole files
    to two workers (pytest-xdist, --dist loadfile), and one started last would run on alone."""
    for item in items:
        if "customers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)
    items.sort(key=lambda item: (item.get_closest_marker("container") is None,
                                 item.get_closest_marker("training") is None))


@pytest.fixture(scope="session")
def customers() -> pd.DataFrame:
    """The real labelled contacts, as a caller would send them (plus label and duration)."""
    if not CUSTOMERS_CSV.exists():
        pytest.fail(f"{CUSTOMERS_CSV} is missing: the shared data goes in ../shared/data "
                    "(or set CHAOS_DATA_DIR)", pytrace=False)
    return pd.read_csv(CUSTOMERS_CSV)


def request_rows(customers: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` real rows with only the request columns."""
    from chaos_pyfunc.contract.schema import INPUT_COLUMNS

    return customers.sample(n=n, random_state=seed).reset_index(drop=True)[list(INPUT_COLUMNS)]
