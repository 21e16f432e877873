"""The HTTP front of the scoring server: MLflow's scoring app, wrapped in a thin ASGI layer.

MLflow's app speaks the scoring protocol. What it does not do, this layer does:

- a body over ``max_body_bytes`` is refused with 413 before it is read whole, and a request of
  more than ``max_rows`` rows with 413 before MLflow parses it; malformed JSON gets a 400
  naming the field;
- past ``max_in_flight`` requests being handled, new ones get 503 at once (load shedding), and
  none waits longer than ``request_timeout_seconds`` (504);
- every error answer is rewritten to ``{"error_code", "message"}`` with a message of ours:
  MLflow's own repeat the input rows (customer data) and carry stack traces;
- one access log line per request, with no body, query string or values in it, and MLflow's
  warnings stripped of what they quote of a request;
- ``/openapi.json`` describes the real API (FastAPI's default one knows nothing of the body),
  and FastAPI's ``/docs`` and ``/redoc`` pages are not served.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from chaos_pyfunc import schema
from chaos_pyfunc.auth import KeyRing
from chaos_pyfunc.config import Settings

log = logging.getLogger("chaos.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INPUT_COLUMN_SET = frozenset(schema.INPUT_COLUMNS)
INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
HIDDEN_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
OPEN_PATHS = frozenset({"/ping", "/health"})  # the probes: no API key
UNAUTHENTICATED = ("a valid API key is required: send the header Authorization: Bearer <key>")
# Bodies bigger than this are parsed off the event loop, so /ping keeps answering meanwhile.
PARSE_IN_THREAD_BYTES = 256 * 1024
ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "ENDPOINT_NOT_FOUND", 405: "BAD_REQUEST",
               413: "REQUEST_LIMIT_EXCEEDED", 415: "BAD_REQUEST", 500: "INTERNAL_ERROR",
               503: "TEMPORARILY_UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
COLUMNS_HINT = "columns and types: GET /openapi.json"
CONTENT_TYPE_MESSAGE = "Content-Type must be application/json or text/csv, in UTF-8"


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_rows: int
    max_in_flight: int
    request_timeout_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_rows, settings.max_in_flight,
                   settings.request_timeout_seconds)


class Refusal(Exception):
    """An answer decided before MLflow sees the request."""

    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code or ERROR_CODES.get(status, "BAD_REQUEST")


def error_body(error_code: str, message: str) -> bytes:
    return json.dumps({"error_code": error_code, "message": message}).encode()


# ------------------------------------------------------------------ reading a request body


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
    index = split.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise Refusal(400, "dataframe_split.index: expected a list of one label per row, or no index")
    width = len(columns)
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


def parse_json_body(body: bytes) -> tuple[Any, int]:
    """The parsed body and its row count; Refusal (400) naming the field when it is malformed."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refusal(400, "body: not valid JSON (UTF-8)") from None
    if not isinstance(document, dict):
        raise Refusal(400, "body: expected a JSON object with one field dataframe_split or "
                           "dataframe_records")
    given = [k for k in INPUT_KEYS if k in document]
    if len(given) != 1 or len(document) > 1 + ("params" in document):
        raise Refusal(400, "body: expected exactly one of the input fields "
                           f"{', '.join(INPUT_KEYS)} (and nothing else but params); "
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
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
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


def _column_values(document: Any) -> dict[str, list[Any]] | None:
    """Each input column's values, whatever the request form; None for a shape MLflow decides."""
    if not isinstance(document, dict):
        return None
    if isinstance(split := document.get("dataframe_split"), dict):
        columns, data = split.get("columns"), split.get("data")
        if not isinstance(columns, list) or not isinstance(data, list):
            return None
        rows = [row for row in data if isinstance(row, list) and len(row) == len(columns)]
        where = {c: columns.index(c) for c in schema.INPUT_COLUMNS if c in columns}
        return {c: [row[i] for row in rows] for c, i in where.items()}
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
        elif not set(map(type, values)) <= STRING_TYPES:
            bad = [type(v) not in STRING_TYPES for v in values]
            problems.append(f"{column}: expected a string at {schema.at_rows(bad)}")
    return "; ".join(problems) or None


def _integer_problems(column: str, values: list[Any]) -> list[str]:
    """An integer column's values that MLflow's cast to the signature's long would truncate
    (35.5), fail on (null, "35") or wrap; validate() judges the ranges of the others."""
    if all(type(v) is int for v in values) and min(values, default=0) >= INT64_MIN \
            and max(values, default=0) <= INT64_MAX:
        return []  # the common case
    problems = []
    bad = [not _whole(v) for v in values]
    if any(bad):
        problems.append(f"{column}: expected an integer at {schema.at_rows(bad)}")
    rule = schema.INTEGERS[column]  # worded as validate() words it
    huge = [not b and not INT64_MIN <= v <= INT64_MAX for v, b in zip(values, bad, strict=True)]
    if any(huge):
        problems.append(f"{column}: must be {rule.describe()} ({rule.meaning}) at "
                        f"{schema.at_rows(huge)}")
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


# ------------------------------------------------------------------ rewriting MLflow's errors


def safe_error(status: int, body: bytes) -> tuple[int, bytes]:
    """MLflow's error answer as one of ours: its status, never its message.

    ``safe_message`` is the model's own message (model.refusal). Any other 4xx gets a generic
    message: what the request itself could tell (fields, JSON types) parse_json_body has
    already checked before MLflow saw it.
    """
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("safe_message"), str):
        code = answer.get("error_code")
        return status, error_body(code if isinstance(code, str) else ERROR_CODES.get(status, "BAD_REQUEST"),
                                  answer["safe_message"])
    if status == 415:
        return 415, error_body("BAD_REQUEST", CONTENT_TYPE_MESSAGE)
    if status == 404:
        return 404, error_body("ENDPOINT_NOT_FOUND", "no such endpoint: POST /invocations, /appetence, "
                                                     "GET /ping, /health, /version, /model, /openapi.json")
    if status == 405:
        return 405, error_body("BAD_REQUEST", "method not allowed: POST /invocations, /appetence, "
                                              "GET /ping, /health, /version, /model, /openapi.json")
    if status == 504:
        return 504, error_body("DEADLINE_EXCEEDED", "the request took too long; retry later")
    if status >= 500:
        return 500, error_body("INTERNAL_ERROR", "internal error while scoring; it is logged, "
                                                 "retry later or report it")
    return status, error_body(ERROR_CODES.get(status, "BAD_REQUEST"),
                              f"the rows do not match the model's input ({COLUMNS_HINT})")


# ------------------------------------------------------------------ the ASGI application


class QuotesFilter(logging.Filter):
    """MLflow's warnings that quote a request (the names of its extra columns, of its params:
    a caller's names may be its data) keep their gist and lose the quote."""

    GISTS = (("Found extra inputs", "Found extra inputs in the model input that are not defined in "
                                    "the model signature; they are ignored"),
             ("`params` can only be specified", "`params` ignored: the model signature defines none"))

    def filter(self, record: logging.LogRecord) -> bool:
        for start, gist in self.GISTS:
            if str(record.msg).startswith(start):
                record.msg, record.args = gist, ()
        return True


def quiet_mlflow_quotes() -> None:
    quoting = logging.getLogger("mlflow.models.utils")
    if not any(isinstance(f, QuotesFilter) for f in quoting.filters):
        quoting.addFilter(QuotesFilter())


class Gateway:
    """MLflow's scoring app behind limits, load shedding, timeouts and safe error answers."""

    def __init__(self, app: ASGIApp, limits: Limits, openapi: dict[str, Any],
                 model: dict[str, str | None] | None = None, keys: KeyRing | None = None) -> None:
        quiet_mlflow_quotes()
        self.app = app
        self.limits = limits
        self.keys = keys  # None: every client is let in (the embedded default)
        self.in_flight = 0
        self._openapi = json.dumps(openapi).encode()
        # Which model answers (serve.ServedModel): GET /model, and X-Model-Version on every answer.
        self._model = json.dumps(model or {}).encode()
        version = (model or {}).get("version")
        self._version_header = [(b"x-model-version", str(version).encode())] if version else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        status, rows, client = 0, None, None

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *self._version_header]}
            await send(message)

        try:
            if self.keys is not None and path not in OPEN_PATHS:
                client = self.keys.identify(header(scope, b"authorization"))
                if client is None:  # the body, if any, is not read: the connection closes
                    await respond(sent, 401, error_body("UNAUTHENTICATED", UNAUTHENTICATED),
                                  close=method not in ("GET", "HEAD"),
                                  extra=[(b"www-authenticate", b'Bearer realm="chaos"')])
                    return
            if path == "/invocations" and method == "POST":
                rows = await self._invocations(scope, receive, sent)
            elif path == "/appetence" and method == "POST":
                rows = await self._invocations(scope, receive, sent, single=True)
            elif path == "/appetence":
                await respond(sent, 405, canned(405), extra=[(b"allow", b"POST")])
            elif path == "/openapi.json" and method == "GET":
                await respond(sent, 200, self._openapi)
            elif path == "/model":
                if method == "GET":
                    await respond(sent, 200, self._model)
                else:
                    await respond(sent, 405, canned(405), extra=[(b"allow", b"GET")])
            elif path in HIDDEN_PATHS:
                await respond(sent, 404, canned(404))
            elif path == "/version" and method == "GET":  # MLflow labels its plain text JSON
                await self._answer(sent, scope, (await self._run(scope, receive)).as_text())
            else:
                await self._answer(sent, scope, await self._run(scope, receive))
        finally:
            log.info("%s %s %s%s%s %.1f ms", method, path, status or "-",
                     "" if rows is None else f" rows={rows}", "" if client is None else f" key={client}",
                     (time.perf_counter() - started) * 1e3)

    async def _invocations(self, scope: Scope, receive: Receive, send: Send,
                           single: bool = False) -> int | None:
        """POST /invocations; with ``single``, POST /appetence: one flat customer object, taken
        through the very same path as a one-row dataframe_records request."""
        limits = self.limits
        if self.in_flight >= limits.max_in_flight:
            await respond(send, 503, error_body("TEMPORARILY_UNAVAILABLE",
                                                "the server is busy; retry in a second"),
                          retry_after=True)
            return None
        self.in_flight += 1
        inner: asyncio.Future[Captured] | None = None
        try:
            body = await read_body(scope, receive, limits.max_body_bytes)
            content_type = media_type(scope)
            if single:
                if content_type != "application/json":
                    raise Refusal(415, "Content-Type must be application/json, in UTF-8")
                body = one_customer_as_records(body)
                scope = {**scope, "path": "/invocations", "raw_path": b"/invocations"}
            rows = await count_rows(body, content_type)
            if rows is not None and rows > limits.max_rows:
                raise Refusal(413, f"{rows} rows: at most {limits.max_rows} per request")
            if rows == 0 and content_type == "application/json":
                await respond(send, 200, b'{"predictions": []}')
                return 0
            inner = asyncio.ensure_future(self._run(scope, replaying(body, receive)))
            # MLflow predicts in a worker thread, which a timeout cannot stop: the wait is
            # abandoned, not the work, and the slot is freed only when the work is done.
            captured = await asyncio.wait_for(asyncio.shield(inner), limits.request_timeout_seconds)
            await self._answer(send, scope, captured.as_single() if single else captured)
            return rows
        except Refusal as refusal:
            await respond(send, refusal.status, error_body(refusal.error_code, refusal.message),
                          close=refusal.status == 413)
            return None
        except TimeoutError:
            await respond(send, 504, canned(504), retry_after=True)
            return None
        finally:
            if inner is not None and not inner.done():
                inner.add_done_callback(self._release_late)
            else:
                self.in_flight -= 1

    def _release_late(self, inner: asyncio.Future[Captured]) -> None:
        self.in_flight -= 1
        if not inner.cancelled() and inner.exception() is not None:
            log.error("an abandoned request failed: %s", type(inner.exception()).__name__)

    async def _run(self, scope: Scope, receive: Receive) -> Captured:
        """MLflow's app on this request, its answer kept in memory (answers are small)."""
        captured = Captured()
        try:
            await self.app(scope, receive, captured)
        except Exception as exc:  # answered 500 below, as ours; its text may quote the request
            log.error("MLflow's app failed: %s\n%s", type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)))
            captured.status = 500
        return captured

    async def _answer(self, send: Send, scope: Scope, captured: Captured) -> None:
        """Pass a success through; rewrite an error to a safe answer."""
        status, content = captured.status, b"".join(captured.chunks)
        if status >= 400:
            if status >= 500:
                log.warning("%s %s: MLflow answered %d (%s)", scope["method"], scope["path"],
                            status, _error_code(content))
            status, content = safe_error(status, content)
            allow = [(k, v) for k, v in captured.headers if k.lower() == b"allow"]  # with a 405
            await respond(send, status, content, retry_after=status in (503, 504), extra=allow)
            return
        headers = [(k, v) for k, v in captured.headers if k.lower() != b"content-length"]
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})


class Captured:
    """An ASGI ``send`` that keeps the response instead of sending it."""

    def __init__(self) -> None:
        self.status = 500  # if the app sends nothing at all
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    def as_single(self) -> Captured:
        """A successful one-row answer as /appetence gives it: ``{"appetence": 0.82}``."""
        if self.status == 200:
            (row,) = json.loads(b"".join(self.chunks))["predictions"]
            self.chunks = [json.dumps({schema.OUTPUT_COLUMN: row[schema.OUTPUT_COLUMN]}).encode()]
        return self

    def as_text(self) -> Captured:
        """The same answer as plain text."""
        self.headers = [(k, v) for k, v in self.headers if k.lower() != b"content-type"]
        self.headers.append((b"content-type", b"text/plain; charset=utf-8"))
        return self


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then whatever the client sends next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def canned(status: int) -> bytes:
    """The answer of a status that needs no explanation from the request."""
    return safe_error(status, b"")[1]


def _error_code(content: bytes) -> str:
    """The error code of an MLflow error answer, for the log: never its message."""
    try:
        code = json.loads(content).get("error_code")
    except (ValueError, AttributeError):
        return "no code"
    return code if isinstance(code, str) else "no code"


def media_type(scope: Scope) -> str:
    """The request's Content-Type without its parameters, lower case."""
    return header(scope, b"content-type").split(";")[0].strip().lower()


def header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing (413) as soon as it is known to exceed ``limit``."""
    declared = header(scope, b"content-length")
    too_big = Refusal(413, f"body larger than {limit} bytes; send fewer rows per request")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refusal(400, "the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def count_rows(body: bytes, content_type: str) -> int:
    """The request's row count; 415 for a body that is neither JSON nor CSV.

    Nothing else reaches MLflow: it fails (500) on a request without a Content-Type, and would
    take Parquet, whose rows nobody counts.
    """
    if content_type == "application/json":
        if len(body) > PARSE_IN_THREAD_BYTES:
            return (await asyncio.to_thread(parse_json_body, body))[1]
        return parse_json_body(body)[1]
    if content_type == "text/csv":
        rows = csv_rows(body)
        problems = (await asyncio.to_thread(diagnose_csv, body) if len(body) > PARSE_IN_THREAD_BYTES
                    else diagnose_csv(body))
        if problems:
            raise Refusal(400, problems)
        return rows
    raise Refusal(415, CONTENT_TYPE_MESSAGE)


async def respond(send: Send, status: int, content: bytes, retry_after: bool = False,
                  close: bool = False, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    headers += extra or []
    if retry_after:
        headers.append((b"retry-after", b"1"))
    if close:  # the rest of a refused body is not read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
