"""Reason codes through the real server, on request: `params: {"reasons": 3}` in every JSON form
of /invocations and `?reasons=3` on /appetence give each appetence its largest effects, named as
the client knows them, with the baseline once; they add up to the appetence's log-odds; the
answers without the option are what they were; a bad value is a 400 naming the field."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest
import requests
from conftest import request_rows
from support.http import post

from chaos_pyfunc.contract.schema import MAX_REASONS, REASON_NAMES

from .conftest import error_message, frame_to_json, invoke, json_body, predictions

pytestmark = pytest.mark.e2e

FORMS = ["dataframe_split", "dataframe_records", "instances", "inputs_records", "inputs_columns"]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def with_reasons(body: dict[str, Any], k: int) -> dict[str, Any]:
    return {**body, "params": {"reasons": k}}


@pytest.mark.parametrize("form", FORMS)
def test_every_json_form_gives_each_appetence_its_reasons_and_the_baseline_once(
        pg_server: str, customers: pd.DataFrame, form: str) -> None:
    rows = request_rows(customers, 4, seed=61)
    plain = invoke(pg_server, rows, form)
    answer = post(pg_server, with_reasons(json_body(rows, form), 3))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"predictions", "baseline"} and isinstance(body["baseline"], float)
    assert [p["appetence"] for p in body["predictions"]] == predictions(plain)
    for prediction in body["predictions"]:
        assert set(prediction) == {"appetence", "reasons"}
        given = prediction["reasons"]
        assert len(given) == 3 and all(set(r) == {"feature", "value", "effect"} for r in given)
        assert all(r["feature"] in REASON_NAMES for r in given)
        sizes = [abs(r["effect"]) for r in given]
        assert sizes == sorted(sizes, reverse=True)


def test_all_the_reasons_add_up_to_the_appetence_s_log_odds(pg_server: str, customers: pd.DataFrame) -> None:
    rows = request_rows(customers, 30, seed=62)
    body = post(pg_server, with_reasons(json_body(rows, "dataframe_split"), MAX_REASONS)).json()
    for prediction in body["predictions"]:
        assert sorted(r["feature"] for r in prediction["reasons"]) == sorted(REASON_NAMES)
        total = body["baseline"] + sum(r["effect"] for r in prediction["reasons"])
        assert total == pytest.approx(logit(prediction["appetence"]), abs=1e-6)


def test_the_values_are_what_was_sent(pg_server: str, customers: pd.DataFrame) -> None:
    rows = request_rows(customers, 1, seed=63)
    (prediction,) = post(pg_server, with_reasons(json_body(rows, "dataframe_records"), MAX_REASONS)
                         ).json()["predictions"]
    sent = frame_to_json(rows, "records")[0]
    for reason in prediction["reasons"]:
        if reason["feature"] in sent:
            assert reason["value"] == sent[reason["feature"]], reason


def test_one_customer_takes_the_option_in_its_query(pg_server: str, customers: pd.DataFrame) -> None:
    customer = frame_to_json(request_rows(customers, 1, seed=64), "records")[0]
    plain = requests.post(f"{pg_server}/appetence", json=customer, timeout=30)
    answer = requests.post(f"{pg_server}/appetence?reasons=2", json=customer, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"appetence", "reasons", "baseline"} and len(body["reasons"]) == 2
    assert body["appetence"] == plain.json()["appetence"]
    assert plain.content == json.dumps({"appetence": body["appetence"]}).encode()  # unchanged without it


def test_without_the_option_the_answer_is_as_it_was(pg_server: str, customers: pd.DataFrame) -> None:
    rows = request_rows(customers, 3, seed=65)
    answer = invoke(pg_server, rows, "dataframe_split")
    values = predictions(answer)
    assert answer.content == json.dumps({"predictions": [{"appetence": v} for v in values]}).encode()


def test_csv_has_no_params_and_answers_without_reasons(pg_server: str, customers: pd.DataFrame) -> None:
    answer = invoke(pg_server, request_rows(customers, 2, seed=66), "csv")
    assert [set(p) for p in answer.json()["predictions"]] == [{"appetence"}] * 2


@pytest.mark.parametrize("value", [0, 20, -3, 2.5, "3", True, None, [3]])
def test_a_bad_number_of_reasons_is_a_400_naming_the_field(pg_server: str, customers: pd.DataFrame,
                                                           value: Any) -> None:
    rows = request_rows(customers, 1, seed=67)
    answer = post(pg_server, with_reasons(json_body(rows, "dataframe_split"), value))
    assert "params.reasons: expected a whole number from 1 to 19" in error_message(answer, 400)


@pytest.mark.parametrize("query", ["reasons=0", "reasons=abc", "reasons=99"])
def test_a_bad_query_on_appetence_is_a_400_naming_it(pg_server: str, customers: pd.DataFrame,
                                                     query: str) -> None:
    customer = frame_to_json(request_rows(customers, 1, seed=68), "records")[0]
    answer = requests.post(f"{pg_server}/appetence?{query}", json=customer, timeout=30)
    message = error_message(answer, 400)
    assert message.startswith("reasons: expected a whole number from 1 to 19")
    assert "abc" not in message and "99" not in message
