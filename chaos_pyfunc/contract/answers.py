"""The server's answers to what it refuses: ``{"error_code", "message"}`` and nothing else.

Ours (a ``Refusal``, decided before MLflow sees the request) and MLflow's, rewritten: MLflow's
own messages repeat the input rows (customer data) and carry stack traces, so only their status
is kept, with a message of ours; MLflow's warnings lose what they quote of a request.
"""

from __future__ import annotations

import json
import logging

ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "ENDPOINT_NOT_FOUND", 405: "BAD_REQUEST",
               408: "REQUEST_TIMEOUT", 413: "REQUEST_LIMIT_EXCEEDED", 415: "BAD_REQUEST",
               500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
COLUMNS_HINT = "columns and types: GET /openapi.json"
CONTENT_TYPE_MESSAGE = "Content-Type must be application/json or text/csv, in UTF-8"


class Refusal(Exception):
    """An answer decided before MLflow sees the request."""

    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code or ERROR_CODES.get(status, "BAD_REQUEST")


def error_body(error_code: str, message: str) -> bytes:
    return json.dumps({"error_code": error_code, "message": message}).encode()


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


def canned(status: int) -> bytes:
    """The answer of a status that needs no explanation from the request."""
    return safe_error(status, b"")[1]


def error_code_of(content: bytes) -> str:
    """The error code of an MLflow error answer, for the log: never its message."""
    try:
        code = json.loads(content).get("error_code")
    except (ValueError, AttributeError):
        return "no code"
    return code if isinstance(code, str) else "no code"


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
