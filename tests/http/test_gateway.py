"""The ASGI gateway (gateway.py) on a stand-in for MLflow's app: reading bodies within limits,
API keys, /appetence, error answers and the access log."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from support.asgi import App, Client, call
from support.bodies import VALUE, answer, dumps, mlflow_error, records, refusal_of, valid_row

from chaos_pyfunc.http.auth import KeyRing, create
from chaos_pyfunc.http.gateway import BUSY, UNAUTHENTICATED, BodyBudget, read_body

# ------------------------------------------------------------------ read_body


def scope(content_length: str | None = None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"Content-Length", content_length.encode()))
    return {"type": "http", "headers": headers}


def read(client: Client, limit: int, content_length: str | None = None, seconds: float = 5.0,
         budget: BodyBudget | None = None) -> bytes:
    budget = budget or BodyBudget(1 << 20)
    return asyncio.run(read_body(scope(content_length), client, limit, seconds, budget))


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


class Trickle:
    """A client sending a byte of its body every ``every`` seconds, never the end of it."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.received = 0

    async def __call__(self) -> dict[str, Any]:
        await asyncio.sleep(self.every)
        self.received += 1
        return {"type": "http.request", "body": b"x", "more_body": True}


def test_a_body_not_whole_by_the_deadline_is_a_408_however_steadily_it_comes() -> None:
    budget = BodyBudget(1024)
    client = Trickle(every=0.01)
    refused = refusal_of(lambda: read(client, 1024, seconds=0.2, budget=budget))
    assert (refused.status, refused.error_code) == (408, "REQUEST_TIMEOUT")
    assert refused.message == "the request body was not complete within 0.2 s"
    assert client.received >= 5  # it kept sending: no gap between reads was ever long
    assert budget.taken == 0  # what it had sent is given back


def test_bodies_being_received_share_a_budget_and_a_chunk_past_it_is_a_503() -> None:
    budget = BodyBudget(1000)
    assert budget.take(600)  # another connection's body, still arriving
    refused = refusal_of(lambda: read(Client([b"x" * 300, b"x" * 300]), 1024, budget=budget))
    assert (refused.status, refused.message) == (503, BUSY)
    assert budget.taken == 600
    budget.give_back(600)
    assert read(Client([b"x" * 300, b"x" * 300]), 1024, budget=budget) == b"x" * 600
    assert budget.taken == 0  # a body in hand counts no more: the scoring slot bounds it then


# ------------------------------------------------------------------ the Gateway on a stand-in app


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
    status, headers, content = call(app, "GET", "/version")
    headers.pop(b"x-request-id")
    assert (status, headers, content) == (
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
    assert f'"key_id": "{key_id}"' in caplog.text
    assert key not in caplog.text and key.split("_", 2)[2] not in caplog.text


# ------------------------------------------------------------------ POST /appetence


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


# ------------------------------------------------------------------ the access log and the request id


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "chaos.access"]


def test_one_json_line_per_request_with_its_id_and_no_value_sent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chaos.access")
    body = dumps({"dataframe_records": records(2, job_type=VALUE)})
    status, headers, _ = call(App(), "POST", "/invocations", body)
    (line,) = access_lines(caplog)
    assert status == 200
    assert set(line) == {"time", "request_id", "method", "path", "status", "rows", "ms", "model_version",
                         "key_id"}
    assert (line["method"], line["path"], line["status"], line["rows"]) == ("POST", "/invocations", 200, 2)
    assert headers[b"x-request-id"].decode() == line["request_id"] and len(line["request_id"]) == 32
    assert VALUE not in caplog.text


@pytest.mark.parametrize(("given", "kept"), [("abc-123.x", True), ("a" * 65, False), ("x y", False),
                                              (VALUE, False)])
def test_a_callers_request_id_is_kept_if_it_is_plainly_an_id(given: str, kept: bool,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chaos.access")
    _, headers, _ = call(App(), "GET", "/ping", request_id=given)
    (line,) = access_lines(caplog)
    assert (line["request_id"] == given) == kept
    assert headers[b"x-request-id"].decode() == line["request_id"]


def test_a_path_that_is_not_ours_is_logged_as_other(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chaos.access")
    call(App(), "GET", f"/customers/{VALUE}")
    assert access_lines(caplog)[0]["path"] == "other" and VALUE not in caplog.text


def test_reasons_for_more_rows_than_allowed_are_a_413_before_scoring() -> None:
    app = App()
    status, _, body = call(app, "POST", "/invocations",
                           dumps({"dataframe_records": records(6), "params": {"reasons": 3}}))
    assert status == 413 and app.calls == 0
    assert json.loads(body)["message"].startswith("6 rows with params.reasons: at most 5 per request")
    assert call(app, "POST", "/invocations", dumps({"dataframe_records": records(6)}))[0] == 200
    assert call(app, "POST", "/invocations",
                dumps({"dataframe_records": records(5), "params": {"reasons": 3}}))[0] == 200
