import math

import numpy as np
import pandas as pd
import pytest

from chaos_pyfunc.contract import schema


def good_row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "date": "2010-11-15", "age": 35, "job_type": "admin.", "status": "single",
        "education": "tertiary", "has_default": "no", "balance": -120, "has_housing_loan": "no",
        "has_perso_loan": "no", "contact": "cellular", "nb_contact": 1, "nb_day_last_contact": -1,
        "nb_contact_last_campaign": 0, "result_last_campaign": "unknown",
    }
    row.update(changes)
    return row


def test_valid_rows_come_back_typed_and_in_order() -> None:
    frame = pd.DataFrame([good_row(age=30.0), good_row(age=61, date="2009-01-31")])
    clean = schema.validate(frame)
    assert list(clean.columns) == list(schema.INPUT_COLUMNS)
    assert clean["age"].tolist() == [30, 61]
    assert clean["age"].dtype == "int64"
    assert clean["date"].dt.strftime("%Y-%m-%d").tolist() == ["2010-11-15", "2009-01-31"]


def test_extra_columns_such_as_duration_are_dropped() -> None:
    frame = pd.DataFrame([good_row(duration_contact=300, subscription="yes")])
    clean = schema.validate(frame)
    assert "duration_contact" not in clean.columns
    assert "subscription" not in clean.columns


def test_missing_columns_are_named() -> None:
    frame = pd.DataFrame([good_row()]).drop(columns=["age", "contact"])
    with pytest.raises(schema.InvalidInput, match="missing column\\(s\\): age, contact"):
        schema.validate(frame)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job_type": "pilot"}, "job_type: must be one of admin., blue-collar"),
        ({"status": None}, "status: must be one of"),
        ({"age": 35.5}, "age: expected an integer at row 1"),
        ({"age": math.nan}, "age: expected an integer"),
        ({"balance": math.inf}, "balance: expected an integer"),
        ({"age": "old"}, "age: expected an integer"),
        ({"age": 131}, "age: must be 0..130"),
        ({"nb_contact": 0}, "nb_contact: must be 1..10000"),
        ({"nb_day_last_contact": -2}, "nb_day_last_contact: must be -1..100000"),
        ({"balance": 1e19}, "balance: must be -1000000000..1000000000"),
        ({"balance": -1e300}, "balance: must be"),
        ({"date": "2010-1-5"}, "date: expected a date YYYY-MM-DD"),
        ({"date": 20101115}, "date: expected a date YYYY-MM-DD"),
        ({"date": "2010-13-01"}, "date: expected a date YYYY-MM-DD at row 1"),
        ({"date": "15/11/2010"}, "date: expected a date YYYY-MM-DD"),
        ({"date": None}, "date: expected a date"),
    ],
)
def test_each_bad_value_is_refused_naming_field_and_row(change: dict, message: str) -> None:
    frame = pd.DataFrame([good_row(), good_row(**change)])
    with pytest.raises(schema.InvalidInput, match=message):
        schema.validate(frame)


def test_all_problems_are_reported_at_once() -> None:
    frame = pd.DataFrame([good_row(age=-3, job_type="pilot", date="yesterday")])
    with pytest.raises(schema.InvalidInput) as caught:
        schema.validate(frame)
    assert {"age", "job_type", "date"} <= {part.split(":")[0] for part in str(caught.value).split("; ")}


def test_long_lists_of_bad_rows_are_cut_short() -> None:
    frame = pd.DataFrame([good_row(job_type="pilot")] * 12)
    with pytest.raises(schema.InvalidInput, match="rows 0, 1, 2, 3, 4 and 7 more"):
        schema.validate(frame)


def test_duplicate_columns_are_refused() -> None:
    frame = pd.DataFrame([[*good_row().values(), 40]], columns=[*good_row().keys(), "age"])
    with pytest.raises(schema.InvalidInput, match="duplicate column"):
        schema.validate(frame)


def test_something_else_than_a_table_is_refused() -> None:
    with pytest.raises(schema.InvalidInput, match="expected a table"):
        schema.validate([good_row()])  # type: ignore[arg-type]


def test_zero_rows_are_valid() -> None:
    assert schema.validate(pd.DataFrame(columns=list(schema.INPUT_COLUMNS))).empty


def test_signature_holds_only_what_a_caller_sends() -> None:
    signature = schema.signature()
    assert signature.inputs.input_names() == list(schema.INPUT_COLUMNS)
    assert "duration_contact" not in signature.inputs.input_names()
    assert "subscription" not in signature.inputs.input_names()
    assert signature.outputs.input_names() == ["appetence"]


def test_as_signature_types_makes_integers_int64() -> None:
    typed = schema.as_signature_types(pd.DataFrame([good_row()]).astype({"age": "float64"}))
    assert typed["age"].dtype == "int64"
    assert typed["job_type"].iloc[0] == "admin."


def test_dates_given_as_numpy_strings_are_read_and_a_null_one_is_named() -> None:
    """MLflow hands the "inputs" form over as NumPy strings; pandas 2.3's strptime refused them
    with a TypeError (a 500) instead of reading them."""
    import numpy as np

    from chaos_pyfunc.contract.schema import _parse_dates

    given = np.array([np.str_("2009-01-28"), np.str_("2010-11-02")], dtype=object)
    dates, problem = _parse_dates(pd.Series(given))
    assert problem is None and dates.dt.strftime("%Y-%m-%d").tolist() == ["2009-01-28", "2010-11-02"]
    _, problem = _parse_dates(pd.Series(np.array([np.str_("2009-01-28"), None], dtype=object)))
    assert problem == "date: expected a date YYYY-MM-DD at row 1"


def test_batch_of_validated_rows_is_what_fast_batch_makes(customers: pd.DataFrame) -> None:
    rows = customers[list(schema.INPUT_COLUMNS)].sample(2000, random_state=3).reset_index(drop=True)
    fast, slow = schema.fast_batch(rows), schema.batch_of(schema.validate(rows))
    assert fast is not None
    assert np.array_equal(fast.months, slow.months) and np.array_equal(fast.days, slow.days)
    assert all(np.array_equal(fast.codes[c], slow.codes[c]) for c in schema.CATEGORIES)
    assert all(np.array_equal(fast.integers[c], slow.integers[c]) for c in schema.INTEGERS)
