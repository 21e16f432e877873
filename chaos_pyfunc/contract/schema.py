"""The input contract: which columns a caller sends, their types and allowed values.

Training and serving validate rows with the same function, so a row the model was never
trained to see (an unknown category, a negative age) is refused with a message naming the
field, instead of being scored silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

DATE = "date"
LABEL = "subscription"
# Not an input: duration_contact, known only after the call. validate() keeps only
# INPUT_COLUMNS, so it is dropped if a caller sends it.

CATEGORIES: dict[str, tuple[str, ...]] = {
    "job_type": (
        "admin.", "blue-collar", "entrepreneur", "housemaid", "management", "retired",
        "self-employed", "services", "student", "technician", "unemployed", "unknown",
    ),
    "status": ("divorced", "married", "single"),
    "education": ("primary", "secondary", "tertiary", "unknown"),
    "has_default": ("no", "yes"),
    "has_housing_loan": ("no", "yes"),
    "has_perso_loan": ("no", "yes"),
    "contact": ("cellular", "telephone", "unknown"),
    "result_last_campaign": ("failure", "other", "success", "unknown"),
}


@dataclass(frozen=True)
class IntRange:
    """Inclusive bounds. Every field has both: far past any real customer, they keep a
    value like 1e19 from wrapping around when cast to int64."""

    low: int
    high: int
    meaning: str

    def describe(self) -> str:
        return f"{self.low}..{self.high}"


INTEGERS: dict[str, IntRange] = {
    "age": IntRange(0, 130, "age in years"),
    "balance": IntRange(-10**9, 10**9, "average yearly balance in euros, may be negative"),
    "nb_contact": IntRange(1, 10_000, "contacts in this campaign, this one included"),
    "nb_day_last_contact": IntRange(-1, 100_000, "days since a previous campaign's contact, -1 = never"),
    "nb_contact_last_campaign": IntRange(0, 10_000, "contacts before this campaign"),
}

# Column order of the request, as documented and as in customers.csv.
CUSTOMER_COLUMNS: tuple[str, ...] = (
    "age", "job_type", "status", "education", "has_default", "balance", "has_housing_loan",
    "has_perso_loan", "contact", "nb_contact", "nb_day_last_contact",
    "nb_contact_last_campaign", "result_last_campaign",
)
INPUT_COLUMNS: tuple[str, ...] = (DATE, *CUSTOMER_COLUMNS)
OUTPUT_COLUMN = "appetence"

# The socio-economic indicators joined to each contact as of its date (scoring/socio_eco.py; the
# socio_eco table's columns, db.py): no caller sends them, but the model learns from them, and a
# reason code may name them.
INDICATORS: tuple[str, ...] = (
    "employment_variation_rate",
    "idx_consumer_price",
    "idx_consumer_confidence",
    "euribor_3m",
    "nb_employee",
)
# Optional, per row: the client's own id of the contact, kept in the prediction log with the row
# so its outcome, once known, can be joined back (chaos monitor). Not a model input: the gateway
# takes it out of the request before MLflow sees it; never in the access log.
CONTACT_ID = "contact_id"
CONTACT_ID_MAX_CHARS = 64

# The reason codes a request may ask for (params.reasons; scoring/reasons.py computes them): the
# names a reason can have, in the encoding's order of groups: the categories, the whole numbers,
# the indicators, then the date (what the model takes from it: the day of the month).
REASON_NAMES: tuple[str, ...] = (*CATEGORIES, *INTEGERS, *INDICATORS, DATE)
MAX_REASONS = len(REASON_NAMES)  # 19
BASELINE = "baseline"
REASONS = "reasons"  # the answer's field, and the request's parameter (MLflow's params)


def reasons_count(value: Any) -> int | None:
    """``value`` as a number of reason codes, 1..MAX_REASONS; None when it is not one (a bool, a
    fraction, a string, out of range): the one rule the gateway and the model both apply."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= MAX_REASONS:
        return None
    return int(value)

# How many offending rows an error message lists before it says "and N more".
MAX_ROWS_IN_MESSAGE = 5


class InvalidInput(ValueError):
    """The request holds rows the model cannot score; the message names fields and rows."""


def signature() -> ModelSignature:
    """The MLflow signature: only what a caller sends in, one double out, and the one parameter a
    request may carry: ``reasons``, how many reason codes to give with each appetence (0: none)."""
    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", DATE)]  # Schema takes either
    # Integers are long: pandas' int64 columns (pd.read_csv) go through as they are. The scoring
    # server casts a JSON column to long and would truncate 35.5 to 35: the gateway refuses a
    # number that is not whole before that (request_body.diagnose), naming the field.
    inputs += [ColSpec("long" if c in INTEGERS else "string", c) for c in CUSTOMER_COLUMNS]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", OUTPUT_COLUMN)]),
                          params=ParamSchema([ParamSpec(REASONS, "long", 0)]))


# The example a model version carries (MLflow's input_example, the registry's serving example):
# made up, never a customer's row, since every environment may read the registry.
EXAMPLE_ROWS: tuple[tuple[object, ...], ...] = (
    ("2010-11-15", 41, "management", "married", "tertiary", "no", 1200, "yes", "no", "cellular", 1, -1, 0,
     "unknown"),
    ("2010-11-16", 29, "technician", "single", "secondary", "no", 350, "no", "no", "cellular", 2, 180, 1,
     "failure"),
    ("2010-11-17", 63, "retired", "divorced", "primary", "no", 5400, "no", "no", "telephone", 1, 92, 3,
     "success"),
)


def example() -> pd.DataFrame:
    """EXAMPLE_ROWS as a request's frame."""
    return pd.DataFrame(list(EXAMPLE_ROWS), columns=list(INPUT_COLUMNS))


def as_signature_types(frame: pd.DataFrame) -> pd.DataFrame:
    """The caller's columns typed as the signature declares them (integers as int64): what a
    frame of whole floats needs before MLflow's schema check, which refuses float64 for long."""
    return frame.astype(dict.fromkeys([c for c in INTEGERS if c in frame.columns], "int64"))


def list_rows(mask: np.ndarray | pd.Series | list[bool], label: Callable[[int], str] = str) -> str:
    """The first offending row positions, each as ``label`` gives it, then "and N more"."""
    positions = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(label(p) for p in positions[:MAX_ROWS_IN_MESSAGE])
    more = len(positions) - MAX_ROWS_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")


def at_rows(mask: np.ndarray | pd.Series | list[bool]) -> str:
    """Where a rule fails, as every message of the input contract says it: "row 2", "rows 0, 5"."""
    return ("row " if np.count_nonzero(np.asarray(mask)) == 1 else "rows ") + list_rows(mask)


def not_an_integer(column: str, mask: np.ndarray | pd.Series | list[bool]) -> str:
    return f"{column}: expected an integer at {at_rows(mask)}"


def out_of_range(column: str, mask: np.ndarray | pd.Series | list[bool]) -> str:
    rule = INTEGERS[column]
    return f"{column}: must be {rule.describe()} ({rule.meaning}) at {at_rows(mask)}"


def _check_integers(frame: pd.DataFrame, column: str, rule: IntRange) -> tuple[pd.Series, str | None]:
    raw = frame[column]
    numbers = pd.to_numeric(raw, errors="coerce")
    not_integer = numbers.isna() | ~np.isfinite(numbers.fillna(0)) | (numbers != numbers.round())
    if not_integer.any():
        return numbers, not_an_integer(column, not_integer)
    out = (numbers < rule.low) | (numbers > rule.high)
    if out.any():
        return numbers, out_of_range(column, out)
    return numbers.astype("int64"), None


def _check_category(frame: pd.DataFrame, column: str, allowed: tuple[str, ...]) -> str | None:
    bad = ~frame[column].isin(allowed)
    if bad.any():
        return f"{column}: must be one of {', '.join(allowed)} at {at_rows(bad)}"
    return None


# A contact's date as every path writes it (strptime alone would also take 2010-1-5).
DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"


def columns_problem(columns: list[str]) -> str | None:
    """The columns rule, for every request form: each input column present, once."""
    missing = [c for c in INPUT_COLUMNS if c not in columns]
    if missing:
        return f"missing column(s): {', '.join(missing)}"
    duplicated = [c for c in INPUT_COLUMNS if columns.count(c) > 1]
    if duplicated:
        return f"duplicate column(s): {', '.join(duplicated)}"
    return None


def _parse_dates(raw: pd.Series) -> tuple[pd.Series, str | None]:
    # Plain str first: MLflow hands "inputs" records over as NumPy strings, which pandas 2.3's
    # strptime refuses with an error instead of a missing date. None and NaN become text that
    # is not a date, and are refused as such.
    as_text = pd.Series([str(v) for v in raw], index=raw.index, dtype="string")
    well_formed = as_text.str.fullmatch(DATE_PATTERN).fillna(False).astype(bool)
    dates = pd.to_datetime(as_text.where(well_formed), format="%Y-%m-%d", errors="coerce")
    bad = dates.isna()
    if bad.any():
        return dates, f"{DATE}: expected a date YYYY-MM-DD at {at_rows(bad)}"
    return dates, None


def validate(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a clean copy of the caller's rows: input columns only, typed, dates parsed.

    Raises ``InvalidInput`` listing every offending field at once, so a caller fixes a
    request in one round trip.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput("expected a table of rows with columns " + ", ".join(INPUT_COLUMNS))
    if problem := columns_problem([str(c) for c in frame.columns]):
        raise InvalidInput(problem)
    clean = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    source = frame.reset_index(drop=True)
    problems: list[str] = []

    clean[DATE], problem = _parse_dates(source[DATE])
    problems += [problem] if problem else []
    for column in CUSTOMER_COLUMNS:
        if column in INTEGERS:
            clean[column], problem = _check_integers(source, column, INTEGERS[column])
        else:
            clean[column] = source[column].astype(object)
            problem = _check_category(source, column, CATEGORIES[column])
        problems += [problem] if problem else []
    if problems:
        raise InvalidInput("; ".join(problems))
    return clean


# ------------------------------------------------------------------ the fast path, for serving

_CATEGORY_CODES = {column: {value: code for code, value in enumerate(values)}
                   for column, values in CATEGORIES.items()}


@dataclass(frozen=True, eq=False)
class Batch:
    """Valid rows as plain NumPy arrays: what the compiled pipeline consumes, in row order."""

    months: np.ndarray               # year * 12 + month of each contact, int64
    days: np.ndarray                 # day of the month, float64
    codes: dict[str, np.ndarray]     # category column -> index into CATEGORIES[column], intp
    integers: dict[str, np.ndarray]  # integer column -> values as float64 (whole, in bounds)

    def __len__(self) -> int:
        return len(self.months)


_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9]  # the positions of the digits in YYYY-MM-DD


def _plain_dates(dates: np.ndarray) -> bool:
    """Every value a string of DATE_PATTERN's shape in ASCII digits, checked on the characters'
    code points at once rather than by a regular expression per row."""
    try:
        "".join(dates)  # a C loop that refuses anything but strings
    except TypeError:
        return False
    points = dates.astype("U11").view(np.uint32).reshape(len(dates), 11)  # an 11th: longer strings
    digits = points[:, _DIGITS]
    return bool(((digits >= ord("0")) & (digits <= ord("9"))).all()
                and (points[:, [4, 7]] == ord("-")).all() and (points[:, 10] == 0).all())


def fast_batch(frame: object) -> Batch | None:
    """The rows as a ``Batch`` when every value is plainly valid, else None.

    A few vector operations instead of validate()'s per-column pandas work: on a one-row
    request that is microseconds instead of milliseconds. It accepts a strict subset of what
    validate() accepts; anything else (a wrong type, a value out of range, a missing column)
    gets None, and the caller goes through validate(), which explains the problem.
    """
    if not isinstance(frame, pd.DataFrame) or frame.columns.has_duplicates:
        return None
    if any(column not in frame.columns for column in INPUT_COLUMNS):
        return None
    dates = frame[DATE].to_numpy()
    if not _plain_dates(dates):
        return None
    try:
        days = dates.astype("datetime64[D]")
    except ValueError:  # 2010-02-30
        return None
    months = days.astype("datetime64[M]")
    month_index = months.astype(np.int64)  # months since 1970-01
    codes: dict[str, np.ndarray] = {}
    for column, lookup in _CATEGORY_CODES.items():
        try:
            codes[column] = np.fromiter(map(lookup.__getitem__, frame[column].to_numpy()),
                                        dtype=np.intp, count=len(frame))
        except (KeyError, TypeError):  # an unknown or unhashable value
            return None
    integers: dict[str, np.ndarray] = {}
    for column, rule in INTEGERS.items():
        values = frame[column].to_numpy()
        if values.dtype.kind not in "fiu":
            return None
        values = values.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            plain = (np.isfinite(values) & (values == np.round(values))
                     & (values >= rule.low) & (values <= rule.high))
        if not plain.all():
            return None
        integers[column] = values
    # year * 12 + month, as socio_eco numbers months (datetime64[M] counts from 1970-01 = 0).
    return Batch(months=month_index + 1970 * 12 + 1,
                 days=(days - months).astype(np.float64) + 1.0, codes=codes, integers=integers)


def batch_of(clean: pd.DataFrame) -> Batch:
    """validate()'s rows (dates parsed) as the Batch fast_batch would make of them: what the
    prediction log keeps of rows the reference path scored."""
    dates = clean[DATE].dt
    return Batch(months=np.asarray(dates.year * 12 + dates.month, dtype=np.int64),
                 days=np.asarray(dates.day, dtype=np.float64),
                 codes={c: np.asarray(clean[c].map(_CATEGORY_CODES[c]), dtype=np.intp) for c in CATEGORIES},
                 integers={c: np.asarray(clean[c], dtype=np.float64) for c in INTEGERS})
