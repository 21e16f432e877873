"""The tables' fingerprint that decides whether `chaos retrain` trains: any changed value shows,
the order of the rows and where they were read from do not."""

import pandas as pd
import pytest
from conftest import CUSTOMERS_CSV, SOCIO_ECO_CSV

from chaos_pyfunc.db import read_customers_csv, read_indicators_csv
from chaos_pyfunc.lifecycle import fingerprint

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_customers_csv(CUSTOMERS_CSV), read_indicators_csv(SOCIO_ECO_CSV)


def test_the_same_tables_in_another_order_have_the_same_fingerprint(tables) -> None:
    customers, indicators = tables
    before = fingerprint.of_training_data(customers, indicators)
    shuffled = fingerprint.of_training_data(customers.sample(frac=1.0, random_state=1),
                                            indicators.iloc[::-1])
    assert shuffled == before
    assert before["customers"].rows == len(customers)
    assert fingerprint.changes(before, shuffled) == []


@pytest.mark.parametrize(("table", "column", "row"), [("customers", "balance", 123),
                                                      ("customers", "subscription", 5),
                                                      ("socio_eco", "euribor_3m", 3)])
def test_one_changed_value_changes_its_table_only(tables, table: str, column: str, row: int) -> None:
    customers, indicators = (frame.copy() for frame in tables)
    before = fingerprint.of_training_data(customers, indicators)
    frame = customers if table == "customers" else indicators
    value = frame.loc[row, column]
    frame.loc[row, column] = ("no" if value == "yes" else "yes") if column == "subscription" else value + 1
    after = fingerprint.of_training_data(customers, indicators)
    changed = fingerprint.changes(before, after)
    assert len(changed) == 1 and changed[0].startswith(f"{table}: ")


def test_tags_round_trip_and_a_run_without_them_counts_as_changed(tables) -> None:
    prints = fingerprint.of_training_data(*tables)
    assert fingerprint.from_tags(fingerprint.as_tags(prints)) == prints
    assert fingerprint.from_tags({}) is None
    assert fingerprint.changes(None, prints) == ["no fingerprint was recorded for the current version"]
