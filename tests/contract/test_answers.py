"""MLflow's error answers rewritten (answers.py): the status kept, the message ours."""

from __future__ import annotations

import json

import pytest
from support.bodies import VALUE, answer, dumps, mlflow_error

from chaos_pyfunc.contract.answers import ERROR_CODES, Refusal, error_body, safe_error

# ------------------------------------------------------------------ safe_error


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
    assert set(ERROR_CODES) == {400, 401, 404, 405, 408, 413, 415, 500, 503, 504}
    assert Refusal(413, "m").error_code == "REQUEST_LIMIT_EXCEEDED"
    assert Refusal(418, "m").error_code == "BAD_REQUEST"
    assert Refusal(400, "m", "OWN_CODE").error_code == "OWN_CODE"
