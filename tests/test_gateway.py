"""The gateway's pure functions (gateway.py), without a server: how a body is read, counted and
refused, how MLflow's error answers are rewritten. Every refusal names fields and rows, never the
values sent (the tests plant marker strings in them and look for them in the messages)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from chaos_pyfunc import schema
from chaos_pyfunc.auth import KeyRing, create
from chaos_pyfunc.gateway import (
    ERROR_CODES,
    UNAUTHENTICATED,
    Gateway,
    Limits,
    Refusal,
    csv_rows,
    diagnose,
    diagnose_csv,
    error_body,
    one_customer_as_records,
    parse_json_body,
    read_body,
    safe_error,
)

VALUE = "ZQX0424242 Dupont"  # a customer value: it must never come back in a message
COLUMNS = list(schema.INPUT_COLUMNS)


def valid_row() -> dict[str, Any]:
    return {"date": "2009-05-15", "age": 41, "job_type": "technician", "status": "married",
            "education": "secondary", "has_default": "no", "balance": 1234, "has_housing_loan": "yes",
            "has_perso_loan": "no", "contact": "cellular", "nb_contact": 2, "nb_day_last_contact": -1,
            "nb_contact_last_campaign": 0, "result_last_campaign": "unknown"}


def records(n: int, **at_row_1: Any) -> list[dict[str, Any]]:
    rows = [valid_row() for _ in range(n)]
    if n > 1:
        rows[1].update(at_row_1)
    return rows


def split(n: int) -> dict[str, Any]:
    return {"columns": COLUMNS, "data": [[row[c] for c in COLUMNS] for row in records(n)]}


def dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


def refusal_of(call: Callable[[], Any]) -> Refusal:
    with pytest.raises(Refusal) as caught:
        call()
    assert VALUE not in caught.value.message
    return caught.value


# ------------------------------------------------------------------ parse_json_body


@pytest.mark.parametrize("n", [0, 1, 7])
def test_a_valid_split_body_is_parsed_and_counted(n: int) -> None:
    document, rows = parse_json_body(dumps({"dataframe_split": split(n)}))
    assert rows == n
    assert document == {"dataframe_split": split(n)}


def test_a_valid_records_body_is_counted_and_params_are_allowed() -> None:
    body = {"dataframe_records": records(3), "params": {"x": VALUE}}
    assert parse_json_body(dumps(body)) == (body, 3)


@pytest.mark.parametrize(
    ("value", "rows"),
    [(records(4), 4), ({"age": [1, 2, 3], "date": ["a"], "x": VALUE}, 3), ({"a": VALUE}, 1),
     (VALUE, 1), ([], 0)],
    ids=["list", "columns", "object_without_lists", "scalar", "empty"],
)
@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_instances_and_inputs_are_counted_and_left_to_mlflow(key: str, value: Any, rows: int) -> None:
    assert parse_json_body(dumps({key: value}))[1] == rows


@pytest.mark.parametrize(
    "body",
    [b'{"dataframe_records": [{"age": "ZQX0424242 Dupont"', b"\xff\xfe\x00ZQX0424242 Dupont", b"",
     b"[" * 100_000 + b"]" * 100_000, b'{"age": 1' + b"0" * 5000 + b"}", b"NaNZQX0424242 Dupont"],
    ids=["truncated", "not_utf8", "empty", "deeply_nested", "integer_too_long", "garbage"],
)
def test_malformed_json_is_a_400_naming_the_body(body: bytes) -> None:
    refused = refusal_of(lambda: parse_json_body(body))
    assert (refused.status, refused.error_code) == (400, "BAD_REQUEST")
    assert refused.message == "body: not valid JSON (UTF-8)"


@pytest.mark.parametrize("document", [[valid_row()], VALUE, 3.5, None, True],
                         ids=["list", "string", "number", "null", "bool"])
def test_a_body_that_is_not_an_object_is_refused(document: Any) -> None:
    refused = refusal_of(lambda: parse_json_body(dumps(document)))
    assert refused.status == 400
    assert refused.message.startswith("body: expected a JSON object with one field dataframe_split")


@pytest.mark.parametrize(
    ("document", "found"),
    [({"rows": [VALUE]}, "found 0 input field(s) and 1 other(s)"),
     ({}, "found 0 input field(s) and 0 other(s)"),
     ({"dataframe_split": split(1), "dataframe_records": records(1)},
      "found 2 input field(s) and 0 other(s)"),
     ({"dataframe_records": records(1), VALUE: 1}, "found 1 input field(s) and 1 other(s)"),
     ({"params": {}}, "found 0 input field(s) and 0 other(s)")],
    ids=["unknown_field", "empty_object", "two_forms", "extra_field", "params_alone"],
)
def test_exactly_one_input_field_is_required(document: dict[str, Any], found: str) -> None:
    refused = refusal_of(lambda: parse_json_body(dumps(document)))
    assert refused.status == 400
    assert "exactly one of the input fields dataframe_split, dataframe_records, instances, inputs" in (
        refused.message)
    assert refused.message.endswith(found)


INDEX_MESSAGE = "dataframe_split.index: expected a list of one label per row, or no index"


def test_a_split_index_of_one_label_per_row_is_accepted() -> None:
    body = {**split(3), "index": ["a", "b", "c"]}
    assert parse_json_body(dumps({"dataframe_split": body}))[1] == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [([VALUE], "dataframe_split: expected an object with columns and data"),
     ({"columns": COLUMNS}, "dataframe_split.data: expected a list of rows"),
     ({"columns": COLUMNS, "data": VALUE}, "dataframe_split.data: expected a list of rows"),
     ({"data": []}, "dataframe_split.columns: expected a list of column names"),
     ({"columns": [*COLUMNS, 3], "data": []}, "dataframe_split.columns: expected a list of column names"),
     ({"columns": [*COLUMNS[1:], VALUE], "data": []}, "missing column(s): date"),
     ({"columns": [*COLUMNS, "age", "age", "contact"], "data": []}, "duplicate column(s): age, contact"),
     ({"columns": COLUMNS, "data": [], "index": False}, INDEX_MESSAGE),
     ({"columns": COLUMNS, "data": [], "index": [0]}, INDEX_MESSAGE),
     ({"columns": COLUMNS, "data": [[VALUE] * len(COLUMNS)], "index": VALUE}, INDEX_MESSAGE)],
    ids=["not_an_object", "no_data", "data_not_a_list", "no_columns", "column_not_a_string",
         "missing_column", "duplicate_columns", "index_not_a_list", "index_too_long",
         "index_a_string"],
)
def test_a_malformed_split_is_refused_naming_the_field(value: Any, message: str) -> None:
    refused = refusal_of(lambda: parse_json_body(dumps({"dataframe_split": value})))
    assert (refused.status, refused.message) == (400, message)


def test_split_rows_of_the_wrong_width_are_named_by_position() -> None:
    body = split(9)
    body["data"][2] = body["data"][2][:-1]
    body["data"][5] = {"age": VALUE}
    body["data"][8] = [*body["data"][8], VALUE]
    refused = refusal_of(lambda: parse_json_body(dumps({"dataframe_split": body})))
    assert refused.message == ("dataframe_split.data: expected a list of 14 values (one per column) "
                               "at rows 2, 5, 8")


def test_split_with_many_bad_rows_lists_the_first_ones() -> None:
    body = {"columns": COLUMNS, "data": [[VALUE]] * 12}
    refused = refusal_of(lambda: parse_json_body(dumps({"dataframe_split": body})))
    assert refused.message.endswith("at rows 0, 1, 2, 3, 4 and 7 more")


@pytest.mark.parametrize("value", [{"age": [VALUE]}, VALUE, 3], ids=["object", "string", "number"])
def test_records_must_be_a_list(value: Any) -> None:
    refused = refusal_of(lambda: parse_json_body(dumps({"dataframe_records": value})))
    assert refused.message == "dataframe_records: expected a list of rows, each an object"


def test_records_missing_columns_name_them_and_the_rows() -> None:
    rows = records(6)
    del rows[1]["age"], rows[1]["contact"]
    rows[4] = [VALUE]
    del rows[5]["date"]
    refused = refusal_of(lambda: parse_json_body(dumps({"dataframe_records": rows})))
    assert (refused.status, refused.message) == (
        400, "dataframe_records: missing column(s) age, contact at rows 1, 4, 5")


def test_records_whose_first_bad_row_is_not_an_object_name_every_column() -> None:
    rows = records(3)
    rows[0] = VALUE
    refused = refusal_of(lambda: parse_json_body(dumps({"dataframe_records": rows})))
    assert refused.message == f"dataframe_records: missing column(s) {', '.join(COLUMNS)} at row 0"


def test_extra_columns_in_records_are_no_reason_to_refuse() -> None:
    rows = records(2, **{VALUE: VALUE, "subscription": "yes"})
    assert parse_json_body(dumps({"dataframe_records": rows}))[1] == 2


# ------------------------------------------------------------------ csv_rows


def csv_body(header: list[str], lines: int, end: bytes = b"\n", newline: bytes = b"\n") -> bytes:
    row = b",".join(b'"x"' for _ in header)
    return newline.join([",".join(header).encode(), *[row] * lines]) + (end if lines else b"")


@pytest.mark.parametrize("lines", [0, 1, 5])
@pytest.mark.parametrize("end", [b"\n", b""], ids=["newline_at_end", "no_newline_at_end"])
def test_csv_rows_are_counted(lines: int, end: bytes) -> None:
    assert csv_rows(csv_body(COLUMNS, lines, end)) == lines


def test_csv_with_crlf_and_quoted_header_and_extra_columns_is_counted() -> None:
    header = [f'"{c}"' for c in reversed(COLUMNS)] + ["subscription"]
    assert csv_rows(csv_body(header, 3, b"\r\n", b"\r\n")) == 3


def test_csv_header_only_is_zero_rows() -> None:
    assert csv_rows(",".join(COLUMNS).encode()) == 0


def test_a_line_break_inside_a_quoted_field_is_counted_as_a_row_at_most() -> None:
    body = ",".join(COLUMNS).encode() + b'\n"a\nb"' + b",x" * 13 + b"\n"
    assert csv_rows(body) == 2  # an upper bound: the row limit never lets more through


@pytest.mark.parametrize(
    ("header", "message"),
    [([*COLUMNS[:-1], VALUE], "missing column(s): result_last_campaign"),
     ([*COLUMNS, "balance"], "duplicate column(s): balance"),
     ([VALUE], f"missing column(s): {', '.join(COLUMNS)}")],
    ids=["missing", "duplicate", "no_known_column"],
)
def test_a_csv_header_without_the_columns_is_refused(header: list[str], message: str) -> None:
    refused = refusal_of(lambda: csv_rows(csv_body(header, 2)))
    assert (refused.status, refused.message) == (400, message)


def test_an_empty_csv_names_every_missing_column() -> None:
    assert refusal_of(lambda: csv_rows(b"")).message == f"missing column(s): {', '.join(COLUMNS)}"


def test_a_csv_header_that_is_not_utf8_is_refused() -> None:
    refused = refusal_of(lambda: csv_rows(b"\xff\xfeZQX0424242 Dupont\nage\n"))
    assert (refused.status, refused.message) == (400, "body: not a UTF-8 CSV with a header line")


# ------------------------------------------------------------------ diagnose


def test_diagnose_names_wrong_types_by_field_and_row() -> None:
    rows = records(4, age=VALUE, job_type=7, balance=True)
    rows[3]["age"] = [VALUE]
    message = diagnose({"dataframe_records": rows})
    assert message == ("age: expected an integer at rows 1, 3; job_type: expected a string at row 1; "
                       "balance: expected an integer at row 1")


def test_diagnose_reads_the_split_form_too() -> None:
    body = split(3)
    body["data"][2][COLUMNS.index("education")] = {"x": VALUE}
    body["data"][0][COLUMNS.index("nb_contact")] = "2"
    message = diagnose({"dataframe_split": body})
    assert message == ("education: expected a string at row 2; nb_contact: expected an integer at "
                       "row 0")


def test_diagnose_leaves_values_of_the_right_type_to_the_fields_rules() -> None:
    """Whole numbers within 64 bits (35.0 too), null strings and bad dates are validate()'s to
    judge (range, category, format): the gateway checks JSON types only."""
    rows = records(3, age=35.0, job_type=None, balance=-(10**12), nb_contact=-5, date="not a date")
    assert diagnose({"dataframe_records": rows}) is None


def test_diagnose_csv_names_integer_columns_mlflow_could_not_read_as_int64() -> None:
    header = ",".join(COLUMNS)
    good = ",".join("41" if c in schema.INTEGERS else "x" for c in COLUMNS)
    rows = [good, good.replace("41", "41.0", 1), good.replace("41", "41.5", 1), good.replace("41", "", 1)]
    message = diagnose_csv("\n".join([header, *rows]).encode())
    first = next(c for c in COLUMNS if c in schema.INTEGERS)
    assert message == f"{first}: expected an integer at rows 2, 3"
    assert diagnose_csv("\n".join([header, good, good]).encode()) is None
    assert diagnose_csv(b"not,a\ncsv") is None  # unreadable: MLflow's to refuse


def test_diagnose_refuses_what_mlflow_would_truncate_or_could_not_cast() -> None:
    rows = records(4)
    rows[0]["age"], rows[1]["age"], rows[2]["age"], rows[3]["balance"] = 35.5, None, True, 10**30
    message = diagnose({"dataframe_records": rows})
    assert message == ("age: expected an integer at rows 0, 1, 2; balance: must be "
                       f"{schema.INTEGERS['balance'].describe()} ({schema.INTEGERS['balance'].meaning}) "
                       "at row 3")


def test_diagnose_takes_a_missing_field_as_null_and_a_non_object_row_as_wrong_everywhere() -> None:
    rows: list[Any] = records(3)
    rows[1] = VALUE
    del rows[2]["age"]
    message = diagnose({"dataframe_records": rows})
    assert message is not None
    assert "age: expected an integer at rows 1, 2" in message  # the missing age is a null
    assert message.count("at row 1;") + message.endswith("at row 1") == len(COLUMNS) - 1
    assert VALUE not in message


@pytest.mark.parametrize(
    "document",
    [None, VALUE, [valid_row()], {}, {"instances": [[VALUE]]},
     {"dataframe_records": []}, {"dataframe_split": {"columns": COLUMNS, "data": [VALUE]}},
     {"dataframe_split": VALUE}],
    ids=["null", "string", "list", "empty", "instances_not_objects", "no_records",
         "split_rows_not_lists", "split_not_an_object"],
)
def test_diagnose_has_nothing_to_say_about_other_bodies(document: Any) -> None:
    assert diagnose(document) is None


# ------------------------------------------------------------------ safe_error


def mlflow_error(message: str, error_code: str = "BAD_REQUEST", **extra: Any) -> bytes:
    """An error answer as MLflow writes it: its message repeats the input rows."""
    return dumps({"error_code": error_code, "message": message, **extra})


def answer(content: bytes) -> dict[str, Any]:
    body = json.loads(content)
    assert set(body) == {"error_code", "message"}
    assert VALUE not in body["message"]
    assert "Traceback" not in body["message"]
    return body


def test_the_models_own_safe_message_is_kept_with_its_code() -> None:
    body = mlflow_error(f"Failed to predict data '{VALUE}'. Error: age: must be 0..130 at row 1",
                        "INVALID_PARAMETER_VALUE", safe_message="age: must be 0..130 at row 1",
                        stack_trace=f"Traceback ... {VALUE}")
    status, content = safe_error(400, body)
    assert status == 400
    assert answer(content) == {"error_code": "INVALID_PARAMETER_VALUE",
                               "message": "age: must be 0..130 at row 1"}


def test_a_safe_message_without_a_string_code_gets_the_status_code() -> None:
    body = dumps({"error_code": 503, "safe_message": "socio_eco cannot be read; retry later"})
    status, content = safe_error(503, body)
    assert (status, answer(content)["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE")


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [(415, "BAD_REQUEST", "Content-Type must be application/json or text/csv, in UTF-8"),
     (404, "ENDPOINT_NOT_FOUND", "no such endpoint: POST /invocations, /appetence, GET /ping, /health, "
                                 "/version, /model, /openapi.json"),
     (405, "BAD_REQUEST", "method not allowed: POST /invocations, /appetence, GET /ping, /health, "
                          "/version, /model, /openapi.json"),
     (504, "DEADLINE_EXCEEDED", "the request took too long; retry later")],
)
def test_statuses_with_a_canned_answer(status: int, code: str, message: str) -> None:
    mlflow_text = f"This predictor only supports ... Got '{VALUE}'".encode()
    assert safe_error(status, mlflow_text) == (status, error_body(code, message))


@pytest.mark.parametrize("status", [500, 502, 503, 599])
def test_a_server_error_without_a_safe_message_is_a_plain_500(status: int) -> None:
    body = mlflow_error(f"boom on {VALUE}", "INTERNAL_ERROR", stack_trace=f"Traceback {VALUE}")
    got_status, content = safe_error(status, body)
    assert got_status == 500
    assert answer(content) == {"error_code": "INTERNAL_ERROR", "message": "internal error while scoring; "
                               "it is logged, retry later or report it"}


def test_a_4xx_that_cannot_be_explained_gets_the_generic_message() -> None:
    for body in (mlflow_error(VALUE), VALUE.encode(), b""):
        status, content = safe_error(400, body)
        assert status == 400
        assert answer(content) == {"error_code": "BAD_REQUEST", "message": "the rows do not match the "
                                   "model's input (columns and types: GET /openapi.json)"}


def test_a_safe_message_that_is_not_a_string_is_not_trusted() -> None:
    body = mlflow_error(VALUE, safe_message={"row": VALUE})
    status, content = safe_error(400, body)
    assert status == 400
    assert answer(content)["message"].startswith("the rows do not match the model's input")


# ------------------------------------------------------------------ error_body


def test_error_body_is_exactly_a_code_and_a_message() -> None:
    assert json.loads(error_body("BAD_REQUEST", 'a "quoted" \u00e9 message')) == {
        "error_code": "BAD_REQUEST", "message": 'a "quoted" \u00e9 message'}
    assert error_body("X", "y") == b'{"error_code": "X", "message": "y"}'


def test_every_status_has_an_error_code() -> None:
    assert set(ERROR_CODES) == {400, 401, 404, 405, 413, 415, 500, 503, 504}
    assert Refusal(413, "m").error_code == "REQUEST_LIMIT_EXCEEDED"
    assert Refusal(418, "m").error_code == "BAD_REQUEST"
    assert Refusal(400, "m", "OWN_CODE").error_code == "OWN_CODE"


# ------------------------------------------------------------------ read_body


class Client:
    """An ASGI ``receive`` giving ``chunks`` one message each, then the given last message."""

    def __init__(self, chunks: list[bytes], last: dict[str, Any] | None = None) -> None:
        self.messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                         for i, c in enumerate(chunks)]
        if last is not None:
            self.messages[-1]["more_body"] = True
            self.messages.append(last)
        self.received = 0

    async def __call__(self) -> dict[str, Any]:
        message = self.messages[self.received]
        self.received += 1
        return message


def scope(content_length: str | None = None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"Content-Length", content_length.encode()))
    return {"type": "http", "headers": headers}


def read(client: Client, limit: int, content_length: str | None = None) -> bytes:
    return asyncio.run(read_body(scope(content_length), client, limit))


@pytest.mark.parametrize("chunks", [[b""], [b"abc"], [b"ab", b"", b"cd", b"e"]])
def test_the_whole_body_is_read_chunk_by_chunk(chunks: list[bytes]) -> None:
    client = Client(chunks)
    assert read(client, 5) == b"".join(chunks)
    assert client.received == len(chunks)


def test_a_body_of_exactly_the_limit_is_read() -> None:
    assert read(Client([b"x" * 10]), 10, "10") == b"x" * 10


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    client = Client([b"x"])
    refused = refusal_of(lambda: read(client, 1024, "1025"))
    assert (refused.status, refused.error_code) == (413, "REQUEST_LIMIT_EXCEEDED")
    assert refused.message == "body larger than 1024 bytes; send fewer rows per request"
    assert client.received == 0


@pytest.mark.parametrize("declared", [None, "3", "not a number", "-1"])
def test_a_streamed_body_over_the_limit_is_refused_as_soon_as_it_passes_it(declared: str | None) -> None:
    client = Client([b"x" * 600, b"x" * 600, b"x" * 600, b"x" * 600])
    refused = refusal_of(lambda: read(client, 1024, declared))
    assert refused.status == 413
    assert client.received == 2


def test_a_client_gone_before_the_end_of_the_body_is_a_400() -> None:
    client = Client([b"x" * 10], last={"type": "http.disconnect"})
    refused = refusal_of(lambda: read(client, 1024))
    assert (refused.status, refused.message) == (400, "the client went away before sending the whole body")


# ------------------------------------------------------------------ the Gateway on a stand-in app


class App:
    """A stand-in for MLflow's app: answers ``status`` with ``headers``, or raises ``error``."""

    def __init__(self, status: int = 200, body: bytes = b'{"predictions": []}',
                 headers: list[tuple[bytes, bytes]] | None = None, error: Exception | None = None) -> None:
        self.status, self.body, self.error = status, body, error
        self.headers = headers or [(b"content-type", b"application/json")]
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        await receive()
        if self.error is not None:
            raise self.error
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def call(app: App, method: str, path: str, body: bytes = b"",
         content_type: bytes | None = b"application/json", keys: KeyRing | None = None,
         authorization: str | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    gateway = Gateway(app, Limits(max_body_bytes=4096, max_rows=10, max_in_flight=2,
                                  request_timeout_seconds=5.0), {"openapi": "3.1.0"}, keys=keys)
    headers = [] if content_type is None else [(b"content-type", content_type)]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(gateway(scope, Client([body]), send))
    start, *bodies = sent
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in bodies)


@pytest.mark.parametrize("content_type", [None, b"", b"application/vnd.apache.parquet", b"text/plain",
                                          b"ZQX0424242"])
def test_a_body_neither_json_nor_csv_is_a_415_before_mlflow(content_type: bytes | None) -> None:
    """MLflow fails (500) on a request without a Content-Type, and would take Parquet, whose
    rows nobody counts."""
    app = App()
    status, headers, content = call(app, "POST", "/invocations", b"PAR1" + VALUE.encode(), content_type)
    assert (status, headers[b"content-type"]) == (415, b"application/json")
    assert json.loads(content) == {"error_code": "BAD_REQUEST", "message": "Content-Type must be "
                                   "application/json or text/csv, in UTF-8"}
    assert app.calls == 0


def test_an_exception_out_of_mlflow_is_our_500_and_its_text_is_not_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    app = App(error=KeyError(VALUE))
    body = dumps({"dataframe_records": records(2)})
    status, headers, content = call(app, "POST", "/invocations", body)
    assert (status, headers[b"content-type"]) == (500, b"application/json")
    assert answer(content)["error_code"] == "INTERNAL_ERROR"
    assert "MLflow's app failed: KeyError" in caplog.text
    assert VALUE not in caplog.text


def test_a_405_keeps_mlflows_allow_header() -> None:
    app = App(405, b'{"detail":"Method Not Allowed"}', [(b"content-type", b"application/json"),
                                                         (b"allow", b"GET")])
    status, headers, content = call(app, "TRACE", "/ping")
    assert (status, headers[b"allow"]) == (405, b"GET")
    assert answer(content)["message"].startswith(
        "method not allowed: POST /invocations, /appetence, GET /ping")


def test_version_is_plain_text_as_it_is_written() -> None:
    app = App(200, b"3.17.2", [(b"content-type", b"application/json"), (b"content-length", b"6")])
    assert call(app, "GET", "/version") == (
        200, {b"content-type": b"text/plain; charset=utf-8", b"content-length": b"6"}, b"3.17.2")


def test_mlflow_warnings_lose_what_they_quote_of_a_request(caplog: pytest.LogCaptureFixture) -> None:
    call(App(), "GET", "/ping")  # the gateway installs the filter
    quoting = logging.getLogger("mlflow.models.utils")
    with caplog.at_level(logging.WARNING, logger="mlflow.models.utils"):
        quoting.warning("Found extra inputs in the model input that are not defined in the model "
                        f"signature: `{[VALUE]}`. These inputs will be ignored.")
        quoting.warning("`params` can only be specified at inference time if the model signature "
                        f"defines a params schema. Ignoring provided params: {[VALUE]}")
        quoting.warning("something else: %s", "kept as it is")
    assert [r.getMessage() for r in caplog.records] == [
        "Found extra inputs in the model input that are not defined in the model signature; they are "
        "ignored", "`params` ignored: the model signature defines none", "something else: kept as it is"]


@pytest.mark.parametrize("form", ["instances", "inputs_records", "inputs_columns"])
def test_diagnose_covers_every_json_form(form: str) -> None:
    rows = records(3, age=True)  # JSON true is no age: MLflow's cast would score it as 1
    if form == "inputs_columns":
        document: Any = {"inputs": {c: [r[c] for r in rows] for c in COLUMNS}}
    else:
        document = {form.split("_")[0]: rows}
    assert diagnose(document) == "age: expected an integer at row 1"


@pytest.mark.parametrize("value", [True, False, "41", [41], {"n": 41}])
def test_a_number_column_takes_json_numbers_only(value: object) -> None:
    body = json.dumps({"dataframe_records": records(2, age=value)}).encode()
    with pytest.raises(Refusal) as refused:
        parse_json_body(body)
    assert (refused.value.status, refused.value.message) == (400, "age: expected an integer at row 1")


# ------------------------------------------------------------------ API keys


@pytest.fixture
def keys(tmp_path) -> tuple[KeyRing, str]:
    path = tmp_path / "keys.yml"
    key = create(path, "acme")
    return KeyRing(path), key


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer chaos_0000000_x",
                                           "Basic dXNlcjpwYXNz", "chaos_12345678_" + "a" * 43])
def test_without_a_valid_key_every_path_but_the_probes_is_a_401(keys, authorization: str | None,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    ring, key = keys
    app = App()
    body = dumps({"dataframe_records": records(1)})
    status, headers, content = call(app, "POST", "/invocations", body, keys=ring, authorization=authorization)
    assert status == 401 and app.calls == 0
    assert headers[b"www-authenticate"] == b'Bearer realm="chaos"'
    assert headers[b"connection"] == b"close"  # the unread body is not left in the stream
    assert json.loads(content) == {"error_code": "UNAUTHENTICATED", "message": UNAUTHENTICATED}
    for path in ("/model", "/openapi.json", "/version"):
        assert call(App(), "GET", path, keys=ring, authorization=authorization)[0] == 401
    for path in ("/ping", "/health"):
        assert call(App(), "GET", path, keys=ring, authorization=authorization)[0] == 200
    assert key not in caplog.text


def test_a_valid_key_is_let_in_and_logged_by_its_id_only(keys, caplog: pytest.LogCaptureFixture) -> None:
    ring, key = keys
    caplog.set_level(logging.INFO, logger="chaos.access")
    status, _, _ = call(App(), "POST", "/invocations", dumps({"dataframe_records": records(1)}), keys=ring,
                        authorization=f"Bearer {key}")
    assert status == 200
    key_id = key.split("_")[1]
    assert f"key={key_id}" in caplog.text
    assert key not in caplog.text and key.split("_", 2)[2] not in caplog.text


# ------------------------------------------------------------------ POST /appetence


def test_one_customer_is_the_one_row_records_request_it_means() -> None:
    row = valid_row()
    assert json.loads(one_customer_as_records(dumps(row))) == {"dataframe_records": [row]}


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b'{"dataframe_records": []}', b"{"],
                         ids=["list", "string", "a_batch_form", "malformed"])
def test_anything_but_one_customer_object_is_a_400(body: bytes) -> None:
    refusal = refusal_of(lambda: one_customer_as_records(body))
    assert refusal.status == 400 and refusal.message.startswith("body:")


def test_appetence_answers_one_number_and_passes_errors_as_they_are() -> None:
    app = App(body=b'{"predictions": [{"appetence": 0.25}]}')
    status, _, content = call(app, "POST", "/appetence", dumps(valid_row()))
    assert (status, json.loads(content)) == (200, {"appetence": 0.25})
    message = "age: must be 0..130 (age in years) at row 0"
    refused = App(status=400, body=mlflow_error(message, safe_message=message))
    status, _, content = call(refused, "POST", "/appetence", dumps(valid_row()))
    assert (status, json.loads(content)["message"]) == (400, message)
    assert call(App(), "GET", "/appetence")[0] == 405
    assert call(App(), "POST", "/appetence", b"x", b"text/csv")[0] == 415
