"""What a request body must be before MLflow sees it: the JSON forms and CSV of the scoring
protocol, their rows counted, and the JSON types of the input contract (schema.py holds the
rules of the values). Every refusal names the field and the rows, never the values sent.

The optional ``contact_id`` of each row (schema.CONTACT_ID) is read here, checked, and handed to
the prediction log; MLflow ignores the column (it is not in the signature), and never sees a
malformed one.
"""

from __future__ import annotations

import array
import asyncio
import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from chaos_pyfunc.contract import schema
from chaos_pyfunc.contract.answers import COLUMNS_HINT, CONTENT_TYPE_MESSAGE, Refusal

INPUT_COLUMN_SET = frozenset(schema.INPUT_COLUMNS)
INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
FORMS = ", ".join(INPUT_KEYS)
# The first mistakes, each answered with the call that works (docs/api.md's error table quotes them).
NOT_AN_OBJECT = f"body: expected a JSON object with exactly one of the input fields {FORMS}"
A_JSON_STRING = ("body: the JSON document is a string, not an object (requests.post(url, json=df.to_json()) "
                 'encodes the DataFrame twice); send json={"dataframe_split": df.to_dict(orient="split")}')
ONE_CUSTOMER = ("body: a flat object of input columns is one customer: POST it to /appetence; "
                f"/invocations takes exactly one of the input fields {FORMS}")
# Bodies bigger than this are parsed off the event loop, so /ping keeps answering meanwhile.
PARSE_IN_THREAD_BYTES = 256 * 1024


def _columns_problem(columns: object, where: str) -> str | None:
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        return f"{where}: expected a list of column names"
    return schema.columns_problem(columns)


def _split_rows(split: object) -> int:
    if not isinstance(split, dict):
        raise Refusal(400, "dataframe_split: expected an object with columns and data")
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(data, list):
        raise Refusal(400, "dataframe_split.data: expected a list of rows")
    if problem := _columns_problem(columns, "dataframe_split.columns"):
        raise Refusal(400, problem)
    assert isinstance(columns, list)  # what _columns_problem found  # noqa: S101
    index = split.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise Refusal(400, "dataframe_split.index: expected a list of one label per row, or no index")
    width = len(columns)
    if set(map(type, data)) <= {list} and set(map(len, data)) <= {width}:
        return len(data)  # the common case, checked without a Python loop
    bad = [i for i, row in enumerate(data) if not isinstance(row, list) or len(row) != width]
    if bad:
        raise Refusal(400, f"dataframe_split.data: expected a list of {width} values (one per "
                           f"column) at {schema.at_rows(_mask(bad, len(data)))}")
    return len(data)


def _records_rows(records: object) -> int:
    if not isinstance(records, list):
        raise Refusal(400, "dataframe_records: expected a list of rows, each an object")
    bad = [i for i, r in enumerate(records)
           if not isinstance(r, dict) or not r.keys() >= INPUT_COLUMN_SET]
    if bad:
        first = records[bad[0]]
        missing = ([c for c in schema.INPUT_COLUMNS if c not in first]
                   if isinstance(first, dict) else list(schema.INPUT_COLUMNS))
        raise Refusal(400, f"dataframe_records: missing column(s) {', '.join(missing)} at "
                           f"{schema.at_rows(_mask(bad, len(records)))}")
    return len(records)


def _mask(positions: list[int], length: int) -> list[bool]:
    chosen = set(positions)
    return [i in chosen for i in range(length)]


def _other_rows(value: object) -> int:
    """``instances`` and ``inputs``: a list of rows, or an object of columns."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        return max((len(v) for v in value.values() if isinstance(v, list)), default=1)
    return 1


def loads(body: bytes) -> Any:
    """The JSON document, as MLflow's parser (the standard library's) reads it: orjson first, three
    times faster, and the standard library for what orjson refuses but it takes (NaN, Infinity,
    integers beyond 64 bits), so a value's own rule explains it, not a parse error."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def parse_json_body(body: bytes) -> tuple[Any, int]:
    """The parsed body and its row count; Refusal (400) naming the field when it is malformed."""
    try:
        document = loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refusal(400, "body: not valid JSON (UTF-8)") from None
    if not isinstance(document, dict):
        raise Refusal(400, A_JSON_STRING if isinstance(document, str) else NOT_AN_OBJECT)
    given = [k for k in INPUT_KEYS if k in document]
    if not given and document.keys() & INPUT_COLUMN_SET:
        raise Refusal(400, ONE_CUSTOMER)
    if len(given) != 1 or len(document) > 1 + ("params" in document):
        raise Refusal(400, f"body: expected exactly one of the input fields {FORMS} (and nothing else "
                           "but params); "
                           f"found {len(given)} input field(s) and "
                           f"{len(document) - len(given) - ('params' in document)} other(s)")
    key = given[0]
    if key == "dataframe_split":
        rows = _split_rows(document[key])
    elif key == "dataframe_records":
        rows = _records_rows(document[key])
    else:
        rows = _other_rows(document[key])
    if problems := diagnose(document):
        raise Refusal(400, problems)
    return document, rows


def one_customer_as_records(body: bytes) -> bytes:
    """POST /appetence's body, one JSON object of a customer's columns, as the one-row
    dataframe_records request it means: every rule and message of /invocations then applies."""
    try:
        document = loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Refusal(400, "body: not valid JSON (UTF-8)") from None
    if not isinstance(document, dict) or any(key in document for key in INPUT_KEYS):
        raise Refusal(400, "body: expected one JSON object of the customer's columns "
                           f"({COLUMNS_HINT}); several customers: POST /invocations")
    if problem := _columns_problem(list(document), "body"):
        raise Refusal(400, problem)
    return json.dumps({"dataframe_records": [document]}).encode()


def csv_rows(body: bytes) -> int:
    """An upper bound of a CSV body's rows (a quoted field may hold a line break), once its
    header is known to name every input column."""
    first_line = body.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header_row = next(csv.reader([first_line.decode("utf-8")]), [])
    except (UnicodeDecodeError, csv.Error):
        raise Refusal(400, "body: not a UTF-8 CSV with a header line") from None
    if problem := _columns_problem(header_row, "CSV header"):
        raise Refusal(400, problem)
    lines = body.count(b"\n") + (not body.endswith(b"\n"))
    return max(lines - 1, 0)


STRING_TYPES = frozenset({str, type(None)})  # a null is refused later, by the field's own rule
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NOT_A_ROW = object()


def _column_values(document: Any) -> dict[str, Sequence[Any]] | None:
    """Each input column's values, whatever the request form; None for a shape MLflow decides."""
    if not isinstance(document, dict):
        return None
    if isinstance(split := document.get("dataframe_split"), dict):
        columns, data = split.get("columns"), split.get("data")
        if not isinstance(columns, list) or not isinstance(data, list):
            return None
        rows = [row for row in data if isinstance(row, list) and len(row) == len(columns)]
        where = {c: columns.index(c) for c in schema.INPUT_COLUMNS if c in columns}
        by_column = list(zip(*rows, strict=True)) if rows else [()] * len(columns)  # transposed in C
        return {c: by_column[i] for c, i in where.items()}
    if isinstance(records := document.get("dataframe_records"), list):  # a non-object row: all wrong
        return {c: [r.get(c) if isinstance(r, dict) else NOT_A_ROW for r in records]
                for c in schema.INPUT_COLUMNS}
    records = next((document[k] for k in ("instances", "inputs") if k in document), None)
    if isinstance(records, list) and all(isinstance(r, dict) for r in records):
        return {c: [r.get(c) for r in records] for c in schema.INPUT_COLUMNS}
    if isinstance(records, dict):  # inputs as columns
        return {c: v for c in schema.INPUT_COLUMNS if isinstance(v := records.get(c), list)}
    return None


def diagnose(document: Any) -> str | None:
    """Which fields hold values of the wrong JSON type, by row; None if none do: an integer
    column given anything but a whole number (a string, a boolean, null, 35.5), a text column
    given a number, a list or an object.

    Checked before MLflow sees the request, whose casts would otherwise score ``true`` as 1,
    truncate 35.5 to 35, or refuse with a message quoting the rows. Only field names and row
    numbers, never the values.
    """
    columns = _column_values(document)
    if columns is None:
        return None
    problems = []
    for column, values in columns.items():
        if column in schema.INTEGERS:
            problems += _integer_problems(column, values)
        elif not _all_strings(values) and not set(map(type, values)) <= STRING_TYPES:
            bad = [type(v) not in STRING_TYPES for v in values]
            problems.append(f"{column}: expected a string at {schema.at_rows(bad)}")
    return "; ".join(problems) or None


def _all_strings(values: Sequence[Any]) -> bool:
    """True when every value is a string: one C loop (join refuses anything else), four times
    cheaper than collecting the types."""
    try:
        "".join(values)
    except TypeError:
        return False
    return True


def _plain_int64s(values: Sequence[Any]) -> bool:
    """True when every value is an int (not a bool) within 64 bits: the common case."""
    try:
        array.array("q", values)  # refuses floats, strings, None; OverflowError past 64 bits
    except (TypeError, OverflowError):
        return False
    return set(map(type, values)) <= {int}


def _integer_problems(column: str, values: Sequence[Any]) -> list[str]:
    """An integer column's values that MLflow's cast to the signature's long would truncate
    (35.5), fail on (null, "35") or wrap; validate() judges the ranges of the others."""
    if _plain_int64s(values):
        return []
    problems = []
    bad = [not _whole(v) for v in values]
    if any(bad):
        problems.append(schema.not_an_integer(column, bad))
    huge = [not b and not INT64_MIN <= v <= INT64_MAX for v, b in zip(values, bad, strict=True)]
    if any(huge):
        problems.append(schema.out_of_range(column, huge))
    return problems


CSV_INTEGER = re.compile(r"[+-]?\d+(?:\.0*)?")  # 35 or 35.0, as pandas reads an int64


def diagnose_csv(body: bytes) -> str | None:
    """diagnose() for a CSV body's integer columns, which MLflow reads as int64: a value that is
    not a whole number (35.5, "x", empty) would fail its read without naming the field."""
    try:
        frame = pd.read_csv(io.BytesIO(body), usecols=list(schema.INTEGERS), dtype=str,
                            keep_default_na=False)
    except (ValueError, pd.errors.ParserError):
        return None  # not a readable CSV: MLflow says so, and the gateway rewrites its message
    problems = []
    for column in schema.INTEGERS:
        texts = frame[column].str.strip()
        problems += _integer_problems(column, [int(t.split(".")[0]) if CSV_INTEGER.fullmatch(t) else None
                                              for t in texts])
    return "; ".join(problems) or None


def _whole(value: object) -> bool:
    """A JSON number without a fraction: 35 or 35.0, not 35.5, true, "35" or null."""
    return type(value) is int or (type(value) is float and value.is_integer())


@dataclass(frozen=True)
class Parsed:
    """A request body checked: its rows, and the contact id of each, when it sends them."""

    rows: int
    contact_ids: list[str | None] | None = None
    reasons: int = 0  # the reason codes asked for with each appetence (params.reasons)


def contact_ids(document: Any, rows: int) -> list[str | None] | None:
    """The rows' contact ids in a JSON form (already checked), or None when it sends none.
    Refusal (400) for an id that is not a string of at most CONTACT_ID_MAX_CHARS characters (or
    null), naming the rows only."""
    name = schema.CONTACT_ID
    ids: list[Any] | None = None
    if isinstance(split := document.get("dataframe_split"), dict):
        if name in split["columns"]:
            at = split["columns"].index(name)
            ids = [row[at] for row in split["data"]]
    else:
        records = document[next(k for k in INPUT_KEYS if k in document)]
        if isinstance(records, list) and any(isinstance(r, dict) and name in r for r in records):
            ids = [r.get(name) if isinstance(r, dict) else None for r in records]
        elif isinstance(records, dict) and name in records:
            ids = records[name] if isinstance(records[name], list) else [records[name]]
    return None if ids is None else checked_ids(ids, rows)


def checked_ids(ids: list[Any], rows: int) -> list[str | None]:
    bad = [not (v is None or (isinstance(v, str) and len(v) <= schema.CONTACT_ID_MAX_CHARS)) for v in ids]
    if any(bad) or len(ids) != rows:
        where = schema.at_rows(bad) if any(bad) else f"{len(ids)} ids for {rows} rows"
        raise Refusal(400, f"{schema.CONTACT_ID}: expected a string of at most {schema.CONTACT_ID_MAX_CHARS} "
                           f"characters (or null), one per row, at {where}")
    return ids


def csv_contact_ids(body: bytes, rows: int) -> list[str | None] | None:
    """The contact_id column of a CSV body, if its header has one (empty: null)."""
    header = body.split(b"\n", 1)[0]
    if schema.CONTACT_ID.encode() not in header:
        return None
    try:
        column = pd.read_csv(io.BytesIO(body), usecols=[schema.CONTACT_ID], dtype=str,
                             keep_default_na=False)[schema.CONTACT_ID]
    except (ValueError, pd.errors.ParserError):
        return None  # not a readable CSV: MLflow says so
    return checked_ids([value or None for value in column], len(column))


def asked(value: Any, field: str, text: bool = False) -> int:
    """How many reasons a request asks for: ``value`` as sent (its params' ``reasons``, a JSON
    number; or, ``text``, /appetence's query); Refusal (400) naming ``field`` for anything but a
    whole number from 1 to MAX_REASONS."""
    if text and isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if (count := schema.reasons_count(value)) is None:
        raise Refusal(400, f"{field}: expected a whole number from 1 to {schema.MAX_REASONS} (the "
                           "reason codes given with each appetence)")
    return count


def asked_in(document: Any) -> int:
    """The reasons a JSON request's params ask for; 0 when it asks for none."""
    params = document.get("params") if isinstance(document, dict) else None
    if params is None:
        return 0
    if not isinstance(params, dict) or params.keys() - {schema.REASONS}:
        # A misspelt parameter, ignored, would be a silent wrong answer; the key is not repeated.
        raise Refusal(400, "params: expected an object whose only parameter is reasons, such as "
                           "{\"reasons\": 3}")
    return asked(params[schema.REASONS], f"params.{schema.REASONS}") if schema.REASONS in params else 0


def _parse(body: bytes) -> Parsed:
    document, rows = parse_json_body(body)
    return Parsed(rows, contact_ids(document, rows), asked_in(document))


def _parse_csv(body: bytes) -> Parsed:
    if problems := diagnose_csv(body):
        raise Refusal(400, problems)
    rows = csv_rows(body)
    return Parsed(rows, csv_contact_ids(body, rows))


async def count_rows(body: bytes, content_type: str) -> Parsed:
    """The request's rows (and contact ids); 415 for a body that is neither JSON nor CSV.

    Nothing else reaches MLflow: it fails (500) on a request without a Content-Type, and would
    take Parquet, whose rows nobody counts.
    """
    if content_type == "application/json":
        parse = _parse
    elif content_type == "text/csv":
        csv_rows(body)  # the header first: its message before any value's
        parse = _parse_csv
    else:
        raise Refusal(415, CONTENT_TYPE_MESSAGE)
    if len(body) > PARSE_IN_THREAD_BYTES:
        return await asyncio.to_thread(parse, body)
    return parse(body)
