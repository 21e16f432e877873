"""What a model was trained on, in a few figures: rows, latest date and a content hash per table.

Recorded as tags on each training run, so ``chaos retrain`` can tell whether the tables changed
since the version an alias points at. The hash is of the content, not of how it was read: the
same contacts give the same fingerprint from a CSV file or from the table, in any row order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from chaos_pyfunc import schema
from chaos_pyfunc.db import INDICATORS

CUSTOMER_FIELDS = (schema.DATE, *schema.CUSTOMER_COLUMNS, schema.LABEL)
INDICATOR_FIELDS = ("date", *INDICATORS)
TAG_PREFIX = "data"


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    latest: str  # the latest date, YYYY-MM-DD ("" for an empty table)
    sha256: str

    def describe(self) -> str:
        return f"{self.rows} rows up to {self.latest or 'nothing'}, sha256 {self.sha256[:12]}"


def of_table(frame: pd.DataFrame, fields: tuple[str, ...]) -> TableFingerprint:
    """The fingerprint of ``frame``'s ``fields``: dates as YYYY-MM-DD, numbers at full precision,
    rows sorted, so neither the source nor the order of the rows changes it."""
    canonical = frame.loc[:, list(fields)].copy()
    canonical["date"] = pd.to_datetime(canonical["date"]).dt.strftime("%Y-%m-%d")
    text = canonical.astype(str).apply("\x1f".join, axis=1).sort_values().str.cat(sep="\n")
    latest = canonical["date"].max() if len(canonical) else ""
    return TableFingerprint(len(canonical), latest, hashlib.sha256(text.encode()).hexdigest())


def of_training_data(customers: pd.DataFrame, indicators: pd.DataFrame) -> dict[str, TableFingerprint]:
    """Both tables a model learns from: the labelled contacts and the monthly indicators."""
    numbers = indicators.astype(dict.fromkeys(INDICATORS, "float64"))
    numbers[list(INDICATORS)] = numbers[list(INDICATORS)].map(repr)  # every bit of each float
    return {"customers": of_table(customers, CUSTOMER_FIELDS),
            "socio_eco": of_table(numbers, INDICATOR_FIELDS)}


def as_tags(fingerprints: Mapping[str, TableFingerprint]) -> dict[str, str]:
    return {f"{TAG_PREFIX}.{table}.{field}": str(getattr(print_, field))
            for table, print_ in fingerprints.items() for field in ("rows", "latest", "sha256")}


def from_tags(tags: Mapping[str, str]) -> dict[str, TableFingerprint] | None:
    """The fingerprints recorded on a run; None if the run recorded none."""
    try:
        return {table: TableFingerprint(int(tags[f"{TAG_PREFIX}.{table}.rows"]),
                                        tags[f"{TAG_PREFIX}.{table}.latest"],
                                        tags[f"{TAG_PREFIX}.{table}.sha256"])
                for table in ("customers", "socio_eco")}
    except (KeyError, ValueError):
        return None


def changes(before: Mapping[str, TableFingerprint] | None,
            now: Mapping[str, TableFingerprint]) -> list[str]:
    """What differs, table by table, in words; empty if nothing does."""
    if before is None:
        return ["no fingerprint was recorded for the current version"]
    return [f"{table}: {before[table].describe()} then, {now[table].describe()} now"
            for table in now if before.get(table) != now[table]]
