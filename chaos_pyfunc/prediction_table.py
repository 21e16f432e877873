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

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
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

from chaos_pyfunc import schema

log = logging.getLogger(__name__)

# What each customer scored has: what was sent, then the appetence answered.
ROW_COLUMNS = (*schema.INPUT_COLUMNS, schema.OUTPUT_COLUMN)


class LayoutError(RuntimeError):
    """The database cannot hold the prediction log as this version writes it."""


def _array_of(name: str) -> ARRAY:
    if name == schema.DATE:
        return ARRAY(Date)
    if name == schema.OUTPUT_COLUMN:
        return ARRAY(Float)
    return ARRAY(BigInteger if name in schema.INTEGERS else Text)


metadata = MetaData()
predictions = Table(
    "predictions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("scored_at", DateTime(timezone=True), nullable=False, index=True),
    Column("model_version", String(32)),
    Column("rows", Integer, nullable=False),
    *(Column(name, _array_of(name), nullable=False) for name in ROW_COLUMNS),
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


def create(engine: Engine) -> None:
    """The table and its view, if they do not exist yet (once, whatever the pods starting at
    once: under a lock of the database's); LayoutError if the database cannot hold them."""
    if engine.dialect.name != "postgresql":
        raise LayoutError(f"the prediction log needs PostgreSQL (arrays), not {engine.dialect.name}: "
                          "set prediction_log_url, or turn prediction_log off")
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('chaos.predictions'))"))
        if inspect(conn).has_table("predictions"):
            found = {c["name"] for c in inspect(conn).get_columns("predictions")}
            if found != set(predictions.c.keys()):
                raise LayoutError("the predictions table has another layout than this version writes "
                                  "(a row per request, the customers as arrays): rename or drop it "
                                  "(docs/operations.md, the prediction log)")
            return
        metadata.create_all(conn)
        compress = ", ".join(f'ALTER COLUMN "{name}" SET COMPRESSION lz4' for name in ROW_COLUMNS)
        try:
            with conn.begin_nested():
                conn.execute(text(f"ALTER TABLE predictions {compress}"))
        except DBAPIError:  # a server built without lz4: its default compression, pglz
            log.warning("this PostgreSQL has no lz4: the prediction log's arrays are compressed with pglz")
        conn.execute(text(VIEW))
