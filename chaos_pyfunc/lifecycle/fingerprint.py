"""What a model was trained on, in a few figures: rows, first and latest date, a content hash per
table, and a hash per month.

Recorded as tags on each training run, so ``chaos retrain`` can tell whether the tables changed
since the version an alias points at, and the gate whether the months a version learned from
are still what they were (a month appended is the life of the tables; a month rewritten is a
correction or a corruption, which no model can tell apart). The hash is of the content, not of
how it was read: the same contacts give the same fingerprint from a CSV file or from the table,
in any row order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import INDICATORS

CUSTOMER_FIELDS = (schema.DATE, *schema.CUSTOMER_COLUMNS, schema.LABEL)
INDICATOR_FIELDS = ("date", *INDICATORS)
TAG_PREFIX = "data"


MONTH_HASH_CHARS = 16  # per month: enough to tell a change, short enough for a run's tag


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    latest: str  # the latest date, YYYY-MM-DD ("" for an empty table)
    sha256: str
    earliest: str = ""  # the first date
    months: tuple[tuple[str, str], ...] = ()  # (YYYY-MM, hash of that month's rows), in order

    def describe(self) -> str:
        return f"{self.rows} rows up to {self.latest or 'nothing'}, sha256 {self.sha256[:12]}"

    def same_content(self, other: TableFingerprint) -> bool:
        return (self.rows, self.latest, self.sha256) == (other.rows, other.latest, other.sha256)


def of_table(frame: pd.DataFrame, fields: tuple[str, ...]) -> TableFingerprint:
    """The fingerprint of ``frame``'s ``fields``: dates as YYYY-MM-DD, numbers at full precision,
    rows sorted, so neither the source nor the order of the rows changes it."""
    canonical = frame.loc[:, list(fields)].copy()
    canonical["date"] = pd.to_datetime(canonical["date"]).dt.strftime("%Y-%m-%d")
    lines = canonical.astype(str).apply("\x1f".join, axis=1) if len(canonical) else pd.Series([], dtype=str)
    order = lines.sort_values()
    months = tuple((month, hashlib.sha256(group.str.cat(sep="\n").encode()).hexdigest()[:MONTH_HASH_CHARS])
                   for month, group in order.groupby(canonical["date"].str[:7].loc[order.index], sort=True))
    latest = canonical["date"].max() if len(canonical) else ""
    earliest = canonical["date"].min() if len(canonical) else ""
    content = hashlib.sha256(order.str.cat(sep="\n").encode()).hexdigest()
    return TableFingerprint(len(canonical), latest, content, earliest, months)


def rewritten(before: TableFingerprint, now: TableFingerprint) -> list[str]:
    """The months ``before`` holds whose rows are not the same now (changed or gone)."""
    current = dict(now.months)
    return [month for month, digest in before.months if current.get(month) != digest]


def of_training_data(customers: pd.DataFrame, indicators: pd.DataFrame) -> dict[str, TableFingerprint]:
    """Both tables a model learns from: the labelled contacts and the monthly indicators."""
    numbers = indicators.astype(dict.fromkeys(INDICATORS, "float64"))
    numbers[list(INDICATORS)] = numbers[list(INDICATORS)].map(repr)  # every bit of each float
    return {"customers": of_table(customers, CUSTOMER_FIELDS),
            "socio_eco": of_table(numbers, INDICATOR_FIELDS)}


def months_text(print_: TableFingerprint) -> str:
    """The month hashes as a run's or a version's tag holds them: 2008-05:ab12…,2008-06:…"""
    return ",".join(f"{month}:{digest}" for month, digest in print_.months)


def months_of(text: str) -> tuple[tuple[str, str], ...]:
    pairs = [pair.split(":", 1) for pair in text.split(",") if pair]
    return tuple((month, digest) for month, digest in pairs)


def as_tags(fingerprints: Mapping[str, TableFingerprint]) -> dict[str, str]:
    tags = {f"{TAG_PREFIX}.{table}.{field}": str(getattr(print_, field))
            for table, print_ in fingerprints.items() for field in ("rows", "latest", "sha256", "earliest")}
    tags |= {f"{TAG_PREFIX}.{table}.months": months_text(print_) for table, print_ in fingerprints.items()}
    return tags


def from_tags(tags: Mapping[str, str]) -> dict[str, TableFingerprint] | None:
    """The fingerprints recorded on a run; None if the run recorded none."""
    try:
        return {table: TableFingerprint(
                    int(tags[f"{TAG_PREFIX}.{table}.rows"]), tags[f"{TAG_PREFIX}.{table}.latest"],
                    tags[f"{TAG_PREFIX}.{table}.sha256"], tags.get(f"{TAG_PREFIX}.{table}.earliest", ""),
                    months_of(tags.get(f"{TAG_PREFIX}.{table}.months", "")))
                for table in ("customers", "socio_eco")}
    except (KeyError, ValueError):
        return None


def key(fingerprints: Mapping[str, TableFingerprint]) -> str:
    """One short key for both tables' contents: what a refusal is remembered by."""
    joined = "".join(fingerprints[table].sha256 for table in sorted(fingerprints))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def changes(before: Mapping[str, TableFingerprint] | None,
            now: Mapping[str, TableFingerprint]) -> list[str]:
    """What differs, table by table, in words; empty if nothing does."""
    if before is None:
        return ["no fingerprint was recorded for the current version"]
    return [f"{table}: {before[table].describe()} then, {now[table].describe()} now"
            for table in now if table not in before or not before[table].same_content(now[table])]
