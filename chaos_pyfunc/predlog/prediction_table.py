"""Where the prediction log keeps what was scored, in PostgreSQL: the ``predictions`` table,
one row per request, and the ``prediction_rows`` view, one row per customer scored.

A request's customers are kept as arrays, a column each (their features and appetences, in
the order sent), beside the request's id, time, model version and number of rows: PostgreSQL
then stores and indexes one row per request, with the arrays compressed (lz4 where the server
has it). Measured here (2026-12-04, 38,000 customers in 1000-row requests): written with COPY
in 39 ms and 33 bytes a customer, against 170 ms and about 200 bytes for a row per customer,
whose work took a tenth of the 1000-row throughput of a server on the same machine. The view
unnests the arrays: queries (the drift report's) read it as a plain table of rows scored.

Other databases have no arrays: the prediction log needs PostgreSQL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    column,
    inspect,
    table,
    text,
)
from sqlalchemy.exc import DBAPIError

from chaos_pyfunc.contract import schema

log = logging.getLogger(__name__)

# What each customer scored has: what was sent, the appetence answered, and the client's contact
# id (NULL when it sent none), which chaos monitor joins to the outcome.
ROW_COLUMNS = (*schema.INPUT_COLUMNS, schema.OUTPUT_COLUMN, schema.CONTACT_ID)


class LayoutError(RuntimeError):
    """The database cannot hold the prediction log as this version writes it."""


def _array_of(name: str) -> ARRAY:
    if name == schema.DATE:
        return ARRAY(Date)
    if name == schema.OUTPUT_COLUMN:
        return ARRAY(Float)
    if name == schema.CONTACT_ID:  # text, as COPY writes it; the gateway holds it to 64 characters
        return ARRAY(Text)
    return ARRAY(BigInteger if name in schema.INTEGERS else Text)


metadata = MetaData()
# Partitioned by day of scored_at (UTC): retention drops whole days, a statement of milliseconds
# whatever the volume, where a DELETE of the expired rows took longer than any timeout and left
# the table growing. The primary key must hold the partition key.
predictions = Table(
    "predictions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("scored_at", DateTime(timezone=True), primary_key=True, index=True),
    Column("model_version", String(32)),
    Column("rows", Integer, nullable=False),
    *(Column(name, _array_of(name), nullable=False) for name in ROW_COLUMNS),
    postgresql_partition_by="RANGE (scored_at)",
)

# The view, for reading: one row per customer scored, ``position`` its place in its request.
prediction_rows = table(
    "prediction_rows",
    *(column(name) for name in ("id", "position", "request_id", "scored_at", "model_version", *ROW_COLUMNS)),
)


def _quoted(names: tuple[str, ...], prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{name}"' for name in names)


# The view's query: the schema's own column names only.
_UNNESTED = (f"predictions AS p CROSS JOIN LATERAL unnest({_quoted(ROW_COLUMNS, 'p.')}) "
             f"WITH ORDINALITY AS r({_quoted(ROW_COLUMNS)}, position)")
_FIELDS = f"p.id, r.position, p.request_id, p.scored_at, p.model_version, {_quoted(ROW_COLUMNS, 'r.')}"
VIEW = f"CREATE VIEW prediction_rows AS SELECT {_FIELDS} FROM {_UNNESTED}"  # noqa: S608
# The columns COPY writes, in order; ``id`` is the table's own.
WRITTEN = ("request_id", "scored_at", "model_version", "rows", *ROW_COLUMNS)
COPY = f"COPY predictions ({_quoted(WRITTEN)}) FROM STDIN WITH (FORMAT binary)"
PARTITION_PREFIX = "predictions_"
# A new day's partition is attached a day ahead; attaching or detaching waits at most this long
# for its lock, instead of queueing behind a long read (the drift report's) with the writes behind it.
LOCK_TIMEOUT_MS = 1000


def _lock(conn: Connection) -> None:
    """One pod at a time changes the table's layout (pods start, purge and roll over together)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('chaos.predictions'))"))


def create(engine: Engine) -> None:
    """The table and its view, if they do not exist yet (once, whatever the pods starting at
    once: under a lock of the database's); LayoutError if the database cannot hold them.
    Raises SQLAlchemy's OperationalError when the database cannot be reached."""
    if engine.dialect.name != "postgresql":
        raise LayoutError(f"the prediction log needs PostgreSQL (arrays), not {engine.dialect.name}: "
                          "set prediction_log_url, or turn prediction_log off")
    with engine.begin() as conn:
        _lock(conn)
        kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('predictions')")
                            ).scalar_one_or_none()
        if kind is not None:
            found = {c["name"] for c in inspect(conn).get_columns("predictions")}
            if kind != "p" or found != set(predictions.c.keys()):
                raise LayoutError("the predictions table has another layout than this version writes "
                                  "(a row per request, the customers as arrays, a partition per day): "
                                  "rename or drop it (docs/operations.md, the prediction log)")
            return
        metadata.create_all(conn)
        compress = ", ".join(f'ALTER COLUMN "{name}" SET COMPRESSION lz4' for name in ROW_COLUMNS)
        try:
            with conn.begin_nested():
                conn.execute(text(f"ALTER TABLE predictions {compress}"))
        except DBAPIError:  # a server built without lz4: its default compression, pglz
            log.warning("this PostgreSQL has no lz4: the prediction log's arrays are compressed with pglz")
        conn.execute(text(VIEW))


PERIOD_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_period(text: str) -> timedelta:
    """A period of the log back from now, as the reports take it: 7d, 24h, 90m."""
    match = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if match is None:
        raise ValueError(f"--since must read like 7d, 24h or 90m, not {text!r}")
    return timedelta(**{PERIOD_UNITS[match.group(2)]: int(match.group(1))})


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, UTC)
    return start, start + timedelta(days=1)


def _children(conn: Connection, detaching: bool = False) -> list[str]:
    """The partitions' names: all, or those whose detach was cut short."""
    found: Iterable[Any] = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'predictions'::regclass AND (i.inhdetachpending OR NOT :detaching)"
    ).bindparams(detaching=detaching)).scalars()
    return [str(name) for name in found]


def partitions(conn: Connection) -> dict[date, str]:
    """The day of each partition attached to the table, by its name."""
    return {datetime.strptime(name.removeprefix(PARTITION_PREFIX), "%Y%m%d").date(): name
            for name in _children(conn) if re.fullmatch(rf"{PARTITION_PREFIX}\d{{8}}", name)}


def add_partitions(engine: Engine, days: list[date]) -> list[str]:
    """A partition for each of ``days`` that has none: created apart, then attached, which locks
    the table only against other layout changes (SHARE UPDATE EXCLUSIVE), not reads or writes."""
    added: list[str] = []
    with engine.begin() as conn:
        _lock(conn)
        conn.execute(text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
        present = partitions(conn)
        for day in sorted(set(days) - set(present)):
            name, (start, end) = partition_name(day), _bounds(day)
            conn.execute(text(f"CREATE TABLE {name} (LIKE predictions INCLUDING DEFAULTS "
                              "INCLUDING CONSTRAINTS INCLUDING COMPRESSION)"))
            # The bounds as a constraint first: ATTACH then need not scan the table to check them.
            conn.execute(text(f"ALTER TABLE {name} ADD CONSTRAINT {name}_day CHECK "
                              "(scored_at IS NOT NULL AND scored_at >= :start AND scored_at < :end)"
                              ).bindparams(start=start, end=end))
            conn.execute(text(f"ALTER TABLE predictions ATTACH PARTITION {name} "
                              "FOR VALUES FROM (:start) TO (:end)").bindparams(start=start, end=end))
            added.append(name)
    return added


def drop_partitions_before(engine: Engine, cutoff: datetime) -> tuple[int, list[str]]:
    """Drop every partition whose whole day is before ``cutoff``: (customers they held, names).

    Each is detached CONCURRENTLY (PostgreSQL 14+), which never blocks the writes, then dropped on
    its own. A detach cut short (its statement timed out waiting for a long read) is finished at
    the next purge."""
    removed, names = 0, []
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")  # DETACH CONCURRENTLY: no transaction
        pending = _children(conn, detaching=True)
        expired = [name for day, name in sorted(partitions(conn).items())
                   if _bounds(day)[1] <= cutoff and name not in pending]
        for name in [*pending, *expired]:
            removed += conn.execute(text(f"SELECT coalesce(sum(rows), 0) FROM {name}")).scalar_one()  # noqa: S608
            how = "FINALIZE" if name in pending else "CONCURRENTLY"
            conn.execute(text(f"ALTER TABLE predictions DETACH PARTITION {name} {how}"))
            conn.execute(text(f"DROP TABLE {name}"))
            names.append(name)
    return removed, names
