"""POST /appetence, the seed's single-customer form: one flat JSON object in, {"appetence": x}
out, scored and refused exactly as the same row sent to /invocations."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import requests
from conftest import request_rows

from .conftest import error_message, frame_to_json, score

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def customer(customers: pd.DataFrame) -> pd.DataFrame:
    return request_rows(customers, 1, seed=31)


def appetence(base_url: str, body: object) -> requests.Response:
    return requests.post(f"{base_url}/appetence", json=body, timeout=30)


def test_one_customer_gets_the_score_of_the_same_row_in_invocations(pg_server: str,
                                                                    customer: pd.DataFrame) -> None:
    (expected,) = score(pg_server, customer)
    answer = appetence(pg_server, frame_to_json(customer, "records")[0])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"appetence": expected}
    assert 0 <= answer.json()["appetence"] <= 1


@pytest.mark.parametrize("change", [{"age": 131}, {"age": 35.5}, {"job_type": "pilot"},
                                    {"date": "2012-11-15"}],
                         ids=["range", "fraction", "category", "no_indicators"])
def test_a_bad_field_gets_the_message_invocations_gives(pg_server: str, customer: pd.DataFrame,
                                                        change: dict[str, object]) -> None:
    row = {**frame_to_json(customer, "records")[0], **change}
    single = error_message(appetence(pg_server, row), 400)
    batch = requests.post(f"{pg_server}/invocations", json={"dataframe_records": [row]}, timeout=30)
    assert single == error_message(batch, 400)
    assert "pilot" not in single and "35.5" not in single  # the field and row, never the value


def test_a_missing_column_and_a_batch_body_are_refused(pg_server: str, customer: pd.DataFrame) -> None:
    row = frame_to_json(customer, "records")[0]
    del row["age"]
    assert error_message(appetence(pg_server, row), 400) == "missing column(s): age"
    batch = appetence(pg_server, {"dataframe_records": [row]})
    assert "several customers: POST /invocations" in error_message(batch, 400)
    listed = requests.post(f"{pg_server}/appetence", data=json.dumps([row]),
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert error_message(listed, 400).startswith("body: expected one JSON object")
