"""Hostile request bodies against the real server (property-based, with Hypothesis).

A few real rows are mutated every way a careless or hostile caller could: cells replaced by
values of any JSON type (NaN and infinities as Python writes them, huge and negative numbers,
unicode and very long strings, nested lists and objects), dates far in the past or the future
or malformed, columns dropped, duplicated or added, the top-level form changed; then fully
random JSON, random bytes and random Content-Types. Whatever comes in:

- the answer is 200, 400, 413 or 415: never a 5xx, never a dropped connection;
- an error answer is exactly ``{"error_code", "message"}`` as application/json, with no stack
  trace and none of the values sent (every generated string carries a "ZQX" marker);
- a 200 answer to rows gives one appetence per row, each the model's own (loaded in process);
- the server's log holds none of the values sent, and no stack trace.

CHAOS_FUZZ_EXAMPLES sets the examples per property (300 by default).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import request_rows
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from support import http
from support.logs import flushed, once_logged
from support.raw_http import announce_body

from chaos_pyfunc.config import CONFIG_FILE_VAR, ENV_VARS
from chaos_pyfunc.contract import schema
from chaos_pyfunc.contract.answers import ERROR_CODES
from chaos_pyfunc.contract.request_body import INPUT_KEYS

from .conftest import MODEL_DIR, frame_to_json, predictions, running_server

pytestmark = pytest.mark.e2e

MAX_BODY_BYTES = 1024 * 1024
MAX_ROWS = 50
EXAMPLES = int(os.environ.get("CHAOS_FUZZ_EXAMPLES", 300))
TOLERANCE = 1e-9
MARKER = "ZQX"
ALLOWED_STATUSES = {200, 400, 413, 415}
COLUMNS = list(schema.INPUT_COLUMNS)
# Our own words: a value equal to one of them may be named in a message without being echoed.
VOCABULARY = " ".join([*COLUMNS, *(v for values in schema.CATEGORIES.values() for v in values),
                       *INPUT_KEYS, "columns", "data", "index", "params", "predictions", "appetence",
                       # the answer's own words: a key sent that is a piece of them is no echo
                       "error_code", "message", *ERROR_CODES.values()])

FUZZ = settings(deadline=None, database=None, derandomize=True, max_examples=EXAMPLES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example, HealthCheck.filter_too_much])


# ---------------------------------------------------------------- the server and the model


@dataclass(frozen=True)
class Server:
    url: str
    log: Path
    session: requests.Session


@pytest.fixture(scope="module")
def server(module_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("fuzz")
    env = {"CHAOS_DATABASE_URL": module_pg_url, "CHAOS_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
           "CHAOS_MAX_ROWS": str(MAX_ROWS)}
    with running_server(env, workdir, workdir / "server.log") as url, requests.Session() as session:
        yield Server(url, workdir / "server.log", session)


@pytest.fixture(scope="module")
def model(module_pg_url: str) -> Iterator[mlflow.pyfunc.PyFuncModel]:
    """The model loaded in this process, on the server's database."""
    with pytest.MonkeyPatch.context() as patch:
        for var in (*ENV_VARS.values(), CONFIG_FILE_VAR):
            patch.delenv(var, raising=False)
        patch.setenv("CHAOS_DATABASE_URL", module_pg_url)
        patch.setattr(sys, "path", list(sys.path))  # load_model prepends model/code
        yield mlflow.pyfunc.load_model(str(MODEL_DIR))


@pytest.fixture(scope="module")
def base_rows(customers: pd.DataFrame) -> list[dict[str, Any]]:
    """Real rows as plain JSON values: what the mutations start from."""
    return frame_to_json(request_rows(customers, 40, seed=13), "records")


# ---------------------------------------------------------------- bodies, written by hand


class Pairs(list):  # type: ignore[type-arg]
    """A JSON object as (key, value) pairs: a key may come twice, as JSON text allows."""


class Raw(str):
    """A JSON token written as is (a number json.dumps would not write)."""

    __slots__ = ()


def render(value: Any, ascii: bool = True) -> str:
    """JSON text; NaN and infinities as Python writes them, Pairs with their duplicate keys.

    Without ``ascii``, characters past ASCII are written as themselves, not escaped: the body
    then tests UTF-8 decoding (a lone surrogate becomes bytes that are not UTF-8 at all).
    """
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        value = Pairs(value.items())
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=ascii)}:{render(v, ascii)}"
                              for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v, ascii) for v in value) + "]"
    return json.dumps(value, allow_nan=True, ensure_ascii=ascii)


def strings_in(value: Any) -> Iterator[str]:
    """Every string of a body (keys too), and huge integers as their digits."""
    if isinstance(value, Raw):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool):
        return
    elif isinstance(value, int) and abs(value) >= 10**12:
        yield str(value)
    elif isinstance(value, Pairs):
        for key, item in value:
            yield key
            yield from strings_in(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


@dataclass
class Request:
    body: bytes
    content_type: str | None
    form: str = "other"  # dataframe_split / dataframe_records when the rows can be checked
    secrets: set[str] = field(default_factory=set)  # what must never come back


# ---------------------------------------------------------------- strategies: values


markers = st.integers(0, 10**6).map(lambda i: f"{MARKER}{i:06d}")
odd_characters = st.sampled_from(["\ud800", "\udfff", "\x00", "\u202e", "\ufeff", "\U0001f600", "\u00e9",
                                  "\n", "\r", '"', "\\", "\t", ",", "'", "{", "\u0660", "\uff11"])
characters = st.one_of(st.characters(), odd_characters)
short_texts = st.text(characters, max_size=20)
marked_texts = st.tuples(short_texts, markers, short_texts).map("".join)
long_texts = st.builds(lambda m, unit, n: m + unit * n, markers,
                       st.sampled_from(["a", "\u00e9", "\U0001f600", "\ud800", "x y,", '"', "\\"]),
                       st.integers(10_000, 110_000))
texts = st.one_of(marked_texts, marked_texts, long_texts)

big_integers = st.sampled_from([10**30, -(10**30), 2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 10**19,
                                -(10**19), 10**300, -1, 0, 131, 10**9 + 1, -(10**9) - 1, 100_001, 10_001])
integers = st.one_of(st.integers(), st.integers(-(10**40), 10**40), big_integers)
floats = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0,
                                                 35.5, 41.0, 1e19, -1e300, 0.1]))
raw_numbers = st.sampled_from(["1e400", "-1e400", "1E2", "4.1e1", "-0", "0.000", "1" + "0" * 5000,
                               "-" + "9" * 5000, "1e-400", "2.5e+1"]).map(Raw)
dates = st.one_of(
    st.dates().map(date.isoformat),
    st.dates(min_value=date(2008, 1, 1), max_value=date(2011, 6, 30)).map(date.isoformat),
    st.datetimes().map(datetime.isoformat),
    st.sampled_from(["0000-00-00", "0001-01-01", "9999-12-31", "-001-01-01", "+10000-01-01", "10000-01-01",
                     "2010-02-30", "2009-13-01", "2009-00-10", "2009-05-32", "2009-5-1", "20090515",
                     "2009/05/15", "15/05/2009", "2009-05-15T10:00:00", "2009-05-15 ", " 2009-05-15",
                     "2009-05-15\n", "\u0662\u0660\u0660\u0669-\u0660\u0665-\u0661\u0665",
                     "\uff12\uff10\uff10\uff19-\uff10\uff15-\uff11\uff15", "2009-05", "", "NaT", "nan",
                     "1677-09-21", "1677-09-22", "2262-04-11", "2262-04-12", "1970-01-01", "2008-05-01",
                     "2010-11-30", "2011-02-28", "2011-03-01", "1900-02-29", "2000-02-29"]),
)
categories = st.sampled_from([v for values in schema.CATEGORIES.values() for v in values])
scalars = st.one_of(st.none(), st.booleans(), integers, floats, texts, categories)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_texts | markers, inner,
                                                                         max_size=3),
    max_leaves=6)
hostile_values = st.one_of(scalars, raw_numbers, dates, json_values)


def valid_value(column: str) -> st.SearchStrategy[Any]:
    """Another value the column accepts, in one of the ways JSON may write it."""
    if column == schema.DATE:
        return st.dates(min_value=date(2008, 5, 1), max_value=date(2010, 11, 30)).map(date.isoformat)
    if column in schema.INTEGERS:
        rule = schema.INTEGERS[column]
        whole = st.integers(rule.low, rule.high)
        return st.one_of(whole, whole.map(float), whole.map(lambda i: Raw(f"{i}.0")), whole.map(str))
    return st.sampled_from(schema.CATEGORIES[column])


# ---------------------------------------------------------------- strategies: tables and bodies


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]


@st.composite
def tables(draw: st.DrawFn, base: list[dict[str, Any]]) -> Table:
    """A few real rows, then a few mutations of them."""
    picks = draw(st.lists(st.integers(0, len(base) - 1), max_size=6))
    table = Table(list(COLUMNS), [[base[i][c] for c in COLUMNS] for i in picks])
    kinds = st.sampled_from(["valid", "valid", "valid", "cell", "cell", "date", "drop", "duplicate", "add",
                             "add", "shuffle", "many_rows", "ragged"])
    for kind in draw(st.lists(kinds, max_size=4)):
        mutate(draw, table, kind)
    return table


def mutate(draw: st.DrawFn, table: Table, kind: str) -> None:
    columns, rows = table.columns, table.rows
    if kind == "shuffle":
        table.columns, table.rows = shuffled(draw, columns, rows)
    elif kind == "drop" and columns:
        at = draw(st.integers(0, len(columns) - 1))
        del columns[at]
        for row in rows:
            del row[at:at + 1]
    elif kind == "duplicate" and columns:
        at = draw(st.integers(0, len(columns) - 1))
        same = draw(st.booleans())
        columns.append(columns[at])
        values = some_values(draw, len(rows))
        for row, value in zip(rows, values, strict=True):
            row.append(row[at] if same and at < len(row) else value)
    elif kind == "add":
        columns.append(draw(st.one_of(markers, marked_texts, st.sampled_from(["subscription",
                                                                              "duration_contact", ""]))))
        for row, value in zip(rows, some_values(draw, len(rows)), strict=True):
            row.append(value)
    elif kind == "many_rows" and rows:
        table.rows = [list(rows[i % len(rows)]) for i in range(draw(st.integers(MAX_ROWS - 2, 2 * MAX_ROWS)))]
    elif kind == "ragged" and rows:
        row = rows[draw(st.integers(0, len(rows) - 1))]
        if row and draw(st.booleans()):
            row.pop()
        else:
            row.append(draw(hostile_values))
    elif rows and columns:
        i, j = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(columns) - 1))
        if j < len(rows[i]):
            column = columns[j]
            if kind == "valid" and column in COLUMNS:
                rows[i][j] = draw(valid_value(column))
            elif kind == "date":
                rows[i][j] = draw(dates)
            else:
                rows[i][j] = draw(hostile_values)


def some_values(draw: st.DrawFn, n: int) -> list[Any]:
    """``n`` hostile values, a few distinct ones at most (many draws make Hypothesis give up)."""
    distinct = [draw(hostile_values) for _ in range(min(n, 4))]
    return [distinct[i % len(distinct)] for i in range(n)]


def shuffled(draw: st.DrawFn, columns: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    order = draw(st.permutations(range(len(columns))))
    return ([columns[k] for k in order],
            [[row[k] for k in order if k < len(row)] + row[len(columns):] for row in rows])


def records_of(table: Table) -> list[Pairs]:
    return [Pairs(zip(table.columns, row, strict=False)) for row in table.rows]


def columns_of(table: Table) -> Pairs:
    return Pairs((c, [row[j] for row in table.rows if j < len(row)]) for j, c in enumerate(table.columns))


def csv_of(table: Table) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([["" if v is None else render(v).strip('"') if not isinstance(v, str) else v
                       for v in row] for row in table.rows])
    return text.getvalue().encode("utf-8", "surrogatepass")


@st.composite
def row_requests(draw: st.DrawFn, base: list[dict[str, Any]]) -> Request:
    """Mutated real rows in one of the request forms, or in a form of their own."""
    table = draw(tables(base))
    form = draw(st.sampled_from(["dataframe_split", "dataframe_split", "dataframe_records",
                                 "dataframe_records", "instances", "inputs", "inputs_columns", "raw_list",
                                 "nested", "csv"]))
    if form == "csv":
        body = csv_of(table)
        return Request(body, draw(st.sampled_from(["text/csv", "text/csv; charset=utf-8"])), "csv",
                       set(strings_in([table.columns, table.rows])))
    document: Any
    if form == "dataframe_split":
        split: dict[str, Any] = {"columns": table.columns, "data": table.rows}
        if draw(st.integers(0, 9)) == 0:
            split["index"] = draw(st.one_of(json_values, st.just(list(range(len(table.rows))))))
        if draw(st.integers(0, 9)) == 0:
            split[draw(markers)] = draw(hostile_values)
        document = {"dataframe_split": split}
    elif form in ("dataframe_records", "instances", "inputs"):
        document = {form: records_of(table)}
    elif form == "inputs_columns":
        document = {draw(st.sampled_from(["inputs", "instances"])): columns_of(table)}
    elif form == "raw_list":
        document = records_of(table)
    else:
        inner = {"columns": table.columns, "data": table.rows}
        document = draw(st.sampled_from([
            {"dataframe_split": {"dataframe_split": inner}}, {"data": {"dataframe_split": inner}},
            {"dataframe_records": [records_of(table)]}, {"dataframe_split": [inner]},
            {"dataframe_records": {"dataframe_records": records_of(table)}},
        ]))
    if isinstance(document, dict) and draw(st.integers(0, 4)) == 0:
        document[draw(st.sampled_from(["params", "params", *INPUT_KEYS]) | markers)] = draw(hostile_values)
    rows_form = form in ("dataframe_split", "dataframe_records") and document.keys() == {form}
    secrets = set(strings_in(document))
    if rows_form and draw(st.integers(0, 9)) == 0:  # the key twice: the last one counts
        decoy = draw(hostile_values)
        secrets |= set(strings_in(decoy))
        document = Pairs([(form, decoy), *document.items()])
    text = render(document, ascii=draw(st.integers(0, 4)) > 0)
    text = draw(st.sampled_from([""] * 8 + [" \n\t", "\ufeff"])) + text + draw(
        st.sampled_from([""] * 8 + [" \r\n", "x", "}", "\x00", ","]))
    encoding = draw(st.sampled_from(["utf-8"] * 8 + ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"]))
    content_type = draw(st.sampled_from(["application/json", "application/json", "application/json",
                                         "application/json; charset=utf-8",
                                         "application/json;charset=UTF-8"]))
    return Request(text.encode(encoding, "surrogatepass"), content_type,
                   form if rows_form else "other", secrets)


random_json = st.recursive(
    st.one_of(st.none(), st.booleans(), integers, floats, short_texts, marked_texts),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.one_of(st.sampled_from([*INPUT_KEYS, "params", "columns", "data", "index", *COLUMNS]),
                  short_texts, markers), inner, max_size=4),
    max_leaves=25)
header_texts = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
content_types = st.one_of(
    st.sampled_from(["application/json"] * 3 + ["text/csv"]),
    st.sampled_from(["application/json"] * 3 + ["text/csv"]),
    st.sampled_from([None, "", "application/json; charset=latin-1",
                     "application/json; charset=utf-16", "APPLICATION/JSON", "Text/CSV", "text/plain",
                     "application/xml", "application/x-www-form-urlencoded",
                     "multipart/form-data; boundary=x",
                     "application/json; foo=bar", "application/json;", "text/csv; header=present",
                     "application/vnd.apache.parquet", "*/*", "application/json, text/csv"]),
    st.tuples(header_texts, markers, header_texts).map("".join),
)


@st.composite
def random_requests(draw: st.DrawFn) -> Request:
    """Fully random JSON or bytes, under any Content-Type."""
    kind = draw(st.sampled_from(["json", "json", "bytes", "marked_bytes"]))
    if kind == "json":
        document = draw(random_json)
        body = render(document).encode("utf-8", "surrogatepass")
        secrets = set(strings_in(document))
    elif kind == "bytes":
        body, secrets = draw(st.binary(max_size=2000)), set()
    else:
        marker = draw(markers)
        body = draw(st.binary(max_size=300)) + marker.encode() + draw(st.binary(max_size=300))
        secrets = {marker}
    content_type = draw(content_types)
    if content_type is not None and MARKER in content_type:
        secrets.add(content_type)
    return Request(body, content_type, "other", secrets)


# ---------------------------------------------------------------- the properties


def post(server: Server, request: Request) -> requests.Response:
    try:
        return http.post(server.url, request.body, request.content_type, session=server.session)
    except requests.RequestException as exc:
        pytest.fail(f"no answer ({type(exc).__name__}) to a {len(request.body)}-byte {request.form} body "
                    f"under Content-Type {request.content_type!r}")


def echoed(request: Request, response: requests.Response) -> list[str]:
    """The values sent that come back in the answer (as they are, or as JSON escapes them)."""
    text = response.text + " " + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    try:
        decoded = json.dumps(response.json(), ensure_ascii=False)
    except ValueError:
        decoded = ""
    found = []
    for value in request.secrets:
        secret = MARKER in value or (len(value) >= 8 and value not in VOCABULARY)
        if secret and (value in text or value in decoded):
            found.append(value if len(value) < 60 else value[:60] + "...")
    if (at := (text + decoded).find(MARKER)) >= 0:
        found.append((text + decoded)[at:at + 12])
    return sorted(set(found))


def expected_appetence(model: mlflow.pyfunc.PyFuncModel, request: Request) -> np.ndarray:
    """What the model loaded in process gives for the request's rows."""
    document = json.loads(request.body)
    if request.form == "dataframe_split":
        split = document["dataframe_split"]
        frame = pd.DataFrame(data=split["data"], columns=split["columns"], index=split.get("index"))
    else:
        frame = pd.DataFrame(data=document["dataframe_records"])
    if frame.empty:
        return np.empty(0)
    rows = schema.as_signature_types(frame[COLUMNS].reset_index(drop=True))
    return model.predict(rows)[schema.OUTPUT_COLUMN].to_numpy(dtype=float)


def check(server: Server, model: mlflow.pyfunc.PyFuncModel, request: Request) -> None:
    response = post(server, request)
    status = response.status_code
    if currently_in_test_context():
        event(f"{request.form} {status}")  # pytest --hypothesis-show-statistics
    assert status in ALLOWED_STATUSES, f"{status}: {response.text[:500]}"
    assert "Traceback" not in response.text and "stack_trace" not in response.text, response.text[:500]
    leaked = echoed(request, response)
    assert not leaked, f"{status} answer repeats values sent: {leaked}"
    if len(request.body) > MAX_BODY_BYTES:
        assert status == 413, f"{len(request.body)} bytes: {status}"
    if status != 200:
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"error_code", "message"}, body
        assert isinstance(body["error_code"], str) and isinstance(body["message"], str), body
        assert body["message"], body
        return
    got = predictions(response)
    assert all(isinstance(p, float) and math.isfinite(p) and 0.0 <= p <= 1.0 for p in got), got
    if request.form in ("dataframe_split", "dataframe_records"):
        expected = expected_appetence(model, request)
        assert len(got) == len(expected) <= MAX_ROWS
        difference = np.max(np.abs(np.asarray(got) - expected), initial=0.0)
        assert difference < TOLERANCE, f"largest difference from the model in process: {difference}"


@FUZZ
@given(data=st.data())
def test_mutated_rows(server: Server, model: mlflow.pyfunc.PyFuncModel, base_rows: list[dict[str, Any]],
                      data: st.DataObject) -> None:
    check(server, model, data.draw(row_requests(base_rows), label="request"))


@FUZZ
@given(request=random_requests())
def test_random_bodies(server: Server, model: mlflow.pyfunc.PyFuncModel, request: Request) -> None:
    check(server, model, request)


# ---------------------------------------------------------------- limits


def assert_refused_early(response: requests.Response, message: str) -> None:
    assert response.status_code == 413, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": message}
    assert len(message) < 80


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: Server) -> None:
    body = b'{"dataframe_split": "' + b"ZQX" * (8 * MAX_BODY_BYTES) + b'"}'  # 24 MiB
    response = server.session.post(f"{server.url}/invocations", data=body,
                                   headers={"Content-Type": "application/json"}, timeout=30)
    assert_refused_early(response, f"body larger than {MAX_BODY_BYTES} bytes; send fewer rows per request")
    assert response.headers["connection"] == "close"


def test_a_body_announced_over_the_limit_is_refused_without_waiting_for_it(server: Server) -> None:
    """The body is announced and never sent: only a server that refuses before reading answers."""
    answer = announce_body(server.url, "/invocations", {"Content-Type": "application/json",
                                                        "Content-Length": str(8 * MAX_BODY_BYTES)})
    assert answer.status == 413
    assert json.loads(answer.body)["message"].startswith("body larger than")


def test_a_streamed_body_over_the_limit_is_refused(server: Server) -> None:
    chunks = (b"ZQX" * 100_000 for _ in range(20))  # chunked, no Content-Length: 6 MB
    response = server.session.post(f"{server.url}/invocations", data=chunks,
                                   headers={"Content-Type": "text/csv"}, timeout=30)
    assert_refused_early(response, f"body larger than {MAX_BODY_BYTES} bytes; send fewer rows per request")


@pytest.mark.parametrize("form", ["dataframe_split", "dataframe_records", "instances", "csv"])
def test_more_rows_than_the_limit_are_refused(server: Server, base_rows: list[dict[str, Any]],
                                              form: str) -> None:
    records = [base_rows[i % len(base_rows)] for i in range(MAX_ROWS + 1)]
    frame = pd.DataFrame(records)
    if form == "csv":
        body, content_type = frame.to_csv(index=False).encode(), "text/csv"
    else:
        orient = "split" if form == "dataframe_split" else "records"
        body = json.dumps({form: frame_to_json(frame, orient)}).encode()
        content_type = "application/json"
    response = server.session.post(f"{server.url}/invocations", data=body,
                                   headers={"Content-Type": content_type}, timeout=30)
    assert_refused_early(response, f"{MAX_ROWS + 1} rows: at most {MAX_ROWS} per request")


def test_the_row_limit_itself_is_scored(server: Server, model: mlflow.pyfunc.PyFuncModel,
                                        base_rows: list[dict[str, Any]]) -> None:
    records = [base_rows[i % len(base_rows)] for i in range(MAX_ROWS)]
    request = Request(json.dumps({"dataframe_records": records}).encode(), "application/json",
                      "dataframe_records")
    check(server, model, request)  # MAX_ROWS appetences, the model's


# ---------------------------------------------------------------- afterwards


def test_the_server_still_serves_afterwards(server: Server, model: mlflow.pyfunc.PyFuncModel,
                                            base_rows: list[dict[str, Any]]) -> None:
    assert server.session.get(f"{server.url}/ping", timeout=5).status_code == 200
    frame = pd.DataFrame(base_rows)
    request = Request(json.dumps({"dataframe_split": frame_to_json(frame, "split")}).encode(),
                      "application/json", "dataframe_split")
    check(server, model, request)


def test_the_log_holds_no_value_sent_and_no_stack_trace(server: Server,
                                                        base_rows: list[dict[str, Any]]) -> None:
    # The access lines the fuzzing left, waited for; then a flush: every request answered is in.
    once_logged(server.log, '"path": "/invocations"', count=2 * EXAMPLES + 1)
    log = flushed(server.log, server.url)
    assert log.count('"path": "/invocations"') > 2 * EXAMPLES, "the fuzzing did not reach the server"
    real = {v for row in base_rows for v in row.values()
            if isinstance(v, str) and len(v) >= 8 and v not in VOCABULARY}  # the dates
    assert real
    for leak in (MARKER, "Traceback", "ERROR", *sorted(real)):
        at = log.find(leak)
        assert at < 0, f"{leak!r} in the server log: ...{log[max(at - 300, 0):at + 300]}..."
