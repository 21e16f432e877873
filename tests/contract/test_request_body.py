"""The request body checks (request_body.py), without a server: how a body is parsed, counted and
refused. Every refusal names fields and rows, never the values sent (the tests plant a marker
value and look for it in the messages)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from support.bodies import COLUMNS, VALUE, dumps, records, refusal_of, split, valid_row

from chaos_pyfunc.contract import request_body, schema
from chaos_pyfunc.contract.answers import Refusal
from chaos_pyfunc.contract.request_body import (
    A_JSON_STRING,
    NOT_AN_OBJECT,
    ONE_CUSTOMER,
    contact_ids,
    csv_contact_ids,
    csv_rows,
    diagnose,
    diagnose_csv,
    one_customer_as_records,
    parse_json_body,
)

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


@pytest.mark.parametrize("document", [[valid_row()], [VALUE], 3.5, None, True],
                         ids=["list", "list_of_strings", "number", "null", "bool"])
def test_a_body_that_is_not_an_object_is_refused_naming_the_four_forms(document: Any) -> None:
    refused = refusal_of(lambda: parse_json_body(dumps(document)))
    assert (refused.status, refused.message) == (400, NOT_AN_OBJECT)
    assert NOT_AN_OBJECT == ("body: expected a JSON object with exactly one of the input fields "
                             "dataframe_split, dataframe_records, instances, inputs")


@pytest.mark.parametrize(
    "document", [VALUE, json.dumps({"columns": COLUMNS, "data": [[VALUE] * len(COLUMNS)]})],
    ids=["string", "dataframe_to_json"])
def test_a_json_string_is_refused_showing_the_call_that_works(document: str) -> None:
    """requests.post(url, json=df.to_json()) sends the DataFrame's JSON as one JSON string."""
    refused = refusal_of(lambda: parse_json_body(dumps(document)))
    assert (refused.status, refused.message) == (400, A_JSON_STRING)
    assert A_JSON_STRING == ("body: the JSON document is a string, not an object (requests.post(url, "
                             "json=df.to_json()) encodes the DataFrame twice); send "
                             'json={"dataframe_split": df.to_dict(orient="split")}')


def test_the_call_the_string_message_shows_works() -> None:
    frame = pd.DataFrame(records(2))
    assert parse_json_body(dumps({"dataframe_split": frame.to_dict(orient="split")}))[1] == 2


@pytest.mark.parametrize(
    "document", [valid_row(), {"age": VALUE}, {**valid_row(), VALUE: VALUE, "params": {}}],
    ids=["one_customer", "one_column", "with_other_keys"])
def test_one_customer_posted_to_invocations_is_sent_to_appetence(document: dict[str, Any]) -> None:
    refused = refusal_of(lambda: parse_json_body(dumps(document)))
    assert (refused.status, refused.message) == (400, ONE_CUSTOMER)
    assert ONE_CUSTOMER == ("body: a flat object of input columns is one customer: POST it to /appetence; "
                            "/invocations takes exactly one of the input fields dataframe_split, "
                            "dataframe_records, instances, inputs")


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


# ------------------------------------------------------------------ POST /appetence


def test_one_customer_is_the_one_row_records_request_it_means() -> None:
    row = valid_row()
    assert json.loads(one_customer_as_records(dumps(row))) == {"dataframe_records": [row]}


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b'{"dataframe_records": []}', b"{"],
                         ids=["list", "string", "a_batch_form", "malformed"])
def test_anything_but_one_customer_object_is_a_400(body: bytes) -> None:
    refusal = refusal_of(lambda: one_customer_as_records(body))
    assert refusal.status == 400 and refusal.message.startswith("body:")


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


# ------------------------------------------------------------------ contact ids


def with_ids(rows: list[dict[str, Any]], ids: list[Any]) -> list[dict[str, Any]]:
    return [{**row, schema.CONTACT_ID: i} for row, i in zip(rows, ids, strict=True)]


@pytest.mark.parametrize("form", ["dataframe_split", "dataframe_records", "instances", "inputs_columns"])
def test_contact_ids_are_read_from_every_json_form(form: str) -> None:
    ids = ["c-1", None, "c-3"]
    rows = with_ids(records(3), ids)
    if form == "dataframe_split":
        columns = list(rows[0])
        data = [[r[c] for c in columns] for r in rows]
        document: dict[str, Any] = {form: {"columns": columns, "data": data}}
    elif form == "inputs_columns":
        document = {"inputs": {c: [r[c] for r in rows] for c in rows[0]}}
    else:
        document = {form: rows}
    parsed = parse_json_body(dumps(document))
    assert contact_ids(*parsed) == ids


def test_a_body_without_contact_ids_has_none() -> None:
    assert contact_ids(*parse_json_body(dumps({"dataframe_records": records(2)}))) is None


@pytest.mark.parametrize("bad", [7, "x" * 65, ["a"], {"a": 1}, True])
def test_a_contact_id_that_is_not_a_short_string_is_refused_naming_the_row_only(bad: Any) -> None:
    rows = with_ids(records(3), ["ok", bad, f"{VALUE}"])
    with pytest.raises(Refusal) as refused:
        contact_ids(*parse_json_body(dumps({"dataframe_records": rows})))
    assert refused.value.status == 400
    message = refused.value.message
    assert message == ("contact_id: expected a string of at most 64 characters (or null), one per row, "
                       "at row 1")
    assert VALUE not in message and "x" * 10 not in message


def test_contact_ids_in_a_csv_column_empty_meaning_none() -> None:
    header = ",".join([*COLUMNS, schema.CONTACT_ID]).encode()
    line = ",".join(str(v) for v in valid_row().values()).encode()
    body = header + b"\n" + line + b",c-9\n" + line + b",\n"
    assert csv_contact_ids(body, 2) == ["c-9", None]
    assert csv_contact_ids(b",".join(c.encode() for c in COLUMNS) + b"\n" + line + b"\n", 1) is None


@pytest.mark.parametrize("params", [{"reason": 3}, {"reasons": 3, "other": 1}, [3], "reasons"])
def test_params_other_than_reasons_are_refused_without_repeating_them(params) -> None:
    with pytest.raises(Refusal, match=r"^params: expected an object whose only parameter") as refused:
        request_body.asked_in({"dataframe_split": {}, "params": params})
    assert "reason\"" not in str(refused.value) and "other" not in str(refused.value)
    assert request_body.asked_in({"params": {}}) == 0
    assert request_body.asked_in({"params": {"reasons": 2}}) == 2
