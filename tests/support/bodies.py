"""Request bodies for the unit tests of the HTTP front: valid rows, the scoring protocol's forms,
and the marker value that must never come back in a message."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from chaos_pyfunc.contract import schema
from chaos_pyfunc.contract.answers import Refusal

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


def mlflow_error(message: str, error_code: str = "BAD_REQUEST", **extra: Any) -> bytes:
    """An error answer as MLflow writes it: its message repeats the input rows."""
    return dumps({"error_code": error_code, "message": message, **extra})


def answer(content: bytes) -> dict[str, Any]:
    body = json.loads(content)
    assert set(body) == {"error_code", "message"}
    assert VALUE not in body["message"]
    assert "Traceback" not in body["message"]
    return body
