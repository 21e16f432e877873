"""Bad requests to the real scoring server: each is refused with the right status and a
message that names what is wrong, never a stack trace, never the values sent."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest
from conftest import request_rows
from support import http

from .conftest import error_message, frame_to_json, invoke, predictions

pytestmark = pytest.mark.e2e

BAD_ROW = 2  # the offending value goes in the middle of the request


@pytest.fixture(scope="module")
def rows(customers: pd.DataFrame) -> pd.DataFrame:
    return request_rows(customers, 5, seed=3)


post = post_json = http.post  # bytes as they are, anything else as JSON


def records_with(rows: pd.DataFrame, **values: Any) -> dict[str, Any]:
    """A dataframe_records body whose row BAD_ROW holds ``values``."""
    records = frame_to_json(rows, "records")
    records[BAD_ROW].update(values)
    return {"dataframe_records": records}


def assert_names(message: str, pattern: str) -> None:
    assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


def test_malformed_json(pg_server: str) -> None:
    message = error_message(post(pg_server, b'{"dataframe_records": [{"age": 3'), 400)
    assert_names(message, r"valid JSON")


def test_json_list_body(pg_server: str, rows: pd.DataFrame) -> None:
    response = post_json(pg_server, frame_to_json(rows, "records"))
    message = error_message(response, 400)
    assert_names(message, r"^body: expected a JSON object with exactly one of the input fields")


def test_json_without_a_known_form(pg_server: str, rows: pd.DataFrame) -> None:
    message = error_message(post_json(pg_server, {"rows": frame_to_json(rows, "records")}), 400)
    assert_names(message, r"exactly one of the input fields")
    assert_names(message, r"dataframe_split")


@pytest.mark.parametrize("column", ["date", "age", "job_type", "result_last_campaign"])
@pytest.mark.parametrize("form", ["dataframe_split", "csv"])
def test_missing_column(pg_server: str, rows: pd.DataFrame, column: str, form: str) -> None:
    message = error_message(invoke(pg_server, rows.drop(columns=column), form), 400)
    assert message == f"missing column(s): {column}"


@pytest.mark.parametrize("age", ["old", "41", True, [41]], ids=["text", "digits", "true", "list"])
@pytest.mark.parametrize("form", ["dataframe_records", "dataframe_split"])
def test_age_not_a_json_number(pg_server: str, rows: pd.DataFrame, age: object, form: str) -> None:
    """JSON true or "41" are no age: refused, not cast (MLflow would score true as 1)."""
    body = records_with(rows, age=age)
    if form == "dataframe_split":
        columns = list(rows.columns)
        body = {form: {"columns": columns,
                       "data": [[r[c] for c in columns] for r in body["dataframe_records"]]}}
    message = error_message(post_json(pg_server, body), 400)
    assert message == f"age: expected an integer at row {BAD_ROW}"


@pytest.mark.parametrize("age", [35.5, None], ids=["fractional", "null"])
def test_age_not_an_integer(pg_server: str, rows: pd.DataFrame, age: float | None) -> None:
    """35.5 is refused, never truncated to 35 by MLflow's cast to the signature's long."""
    message = error_message(post_json(pg_server, records_with(rows, age=age)), 400)
    assert message == f"age: expected an integer at row {BAD_ROW}"


def test_a_whole_number_written_with_a_fraction_is_an_integer(pg_server: str, rows: pd.DataFrame) -> None:
    as_ints = post_json(pg_server, records_with(rows, age=41))
    as_floats = post_json(pg_server, records_with(rows, age=41.0))
    assert as_ints.status_code == as_floats.status_code == 200, as_floats.text[:500]
    assert as_ints.json() == as_floats.json()


def test_fractional_integer_in_csv(pg_server: str, rows: pd.DataFrame) -> None:
    bad = rows.astype({"nb_contact": "float64"})
    bad.loc[BAD_ROW, "nb_contact"] = 2.5
    message = error_message(invoke(pg_server, bad, "csv"), 400)
    assert message == f"nb_contact: expected an integer at row {BAD_ROW}"


@pytest.mark.parametrize(
    ("column", "value", "pattern"),
    [
        ("age", 131, r"age: must be 0\.\.130"),
        ("nb_contact", 0, r"nb_contact: must be 1\.\.10000"),
        ("nb_day_last_contact", -2, r"nb_day_last_contact: must be -1\.\.100000"),
        # Past int64: must not wrap around into a valid-looking number.
        ("balance", 1e19, r"balance: must be -1000000000\.\.1000000000"),
        ("nb_contact_last_campaign", -1e300, r"nb_contact_last_campaign: must be 0\.\.10000"),
    ],
    ids=["age", "nb_contact", "nb_day_last_contact", "balance_huge", "campaign_huge"],
)
def test_integer_out_of_range(pg_server: str, rows: pd.DataFrame, column: str, value: float,
                              pattern: str) -> None:
    message = error_message(post_json(pg_server, records_with(rows, **{column: value})), 400)
    assert_names(message, pattern + rf".* at row {BAD_ROW}\b")


@pytest.mark.parametrize(("column", "value"), [("job_type", "pilot"), ("contact", "Cellular"),
                                                 ("has_default", None)])
def test_unknown_category(pg_server: str, rows: pd.DataFrame, column: str, value: str | None) -> None:
    message = error_message(post_json(pg_server, records_with(rows, **{column: value})), 400)
    assert_names(message, rf"{column}: must be one of .* at row {BAD_ROW}\b")


def test_every_problem_is_named_at_once(pg_server: str, rows: pd.DataFrame) -> None:
    body = records_with(rows, age=131, job_type="pilot", date="2010-13-15")
    message = error_message(post_json(pg_server, body), 400)
    for field in ("date", "age", "job_type"):
        assert_names(message, rf"\b{field}: .* at row {BAD_ROW}\b")


@pytest.mark.parametrize("date", ["2012-11-15", "2008-01-15", "2011-03-01", "2008-04-30"])
def test_date_without_indicators(pg_server: str, rows: pd.DataFrame, date: str) -> None:
    message = error_message(post_json(pg_server, records_with(rows, date=date)), 400)
    assert_names(message, rf"date: no socio-economic indicators .* row {BAD_ROW}; indicators "
                          r"cover 2008-05 to 2010-11$")
    assert date not in message


@pytest.mark.parametrize("date", ["2008-05-01", "2010-11-30", "2011-02-28"])
def test_dates_at_the_edges_of_the_indicators_are_scored(pg_server: str, rows: pd.DataFrame,
                                                         date: str) -> None:
    got = predictions(post_json(pg_server, records_with(rows, date=date)))
    assert len(got) == len(rows)


@pytest.mark.parametrize(
    "date", ["2010-13-15", "2010-02-30", "15/11/2010", "2010-11-15T10:00:00", "", "2010-1-5"]
)
def test_malformed_date(pg_server: str, rows: pd.DataFrame, date: str) -> None:
    message = error_message(post_json(pg_server, records_with(rows, date=date)), 400)
    assert_names(message, rf"date: expected a date YYYY-MM-DD at row {BAD_ROW}\b")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml"])
def test_wrong_content_type(pg_server: str, rows: pd.DataFrame, content_type: str) -> None:
    body = rows.to_json(orient="split", index=False).encode()
    message = error_message(post(pg_server, body, content_type), 415)
    assert message == "Content-Type must be application/json or text/csv, in UTF-8"


def test_server_still_serves_after_errors(pg_server: str, rows: pd.DataFrame) -> None:
    post(pg_server, b"{")
    post_json(pg_server, records_with(rows, age="old"))
    assert len(predictions(invoke(pg_server, rows))) == len(rows)
