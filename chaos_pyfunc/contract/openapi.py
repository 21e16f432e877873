"""The API's OpenAPI 3.1 description, served at ``/openapi.json``, built from the input contract
(schema.py) and the limits, so it cannot drift from what the server accepts."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from typing import Any

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema

_DAYS = {31: "(?:0[1-9]|[12][0-9]|3[01])", 30: "(?:0[1-9]|[12][0-9]|30)", 29: "(?:0[1-9]|[12][0-9])",
         28: "(?:0[1-9]|1[0-9]|2[0-8])"}
# A real day of any year, when the months the indicators cover are not known (a database away at start).
ANY_REAL_DAY = (f"^[0-9]{{4}}-(?:(?:0[13578]|1[02])-{_DAYS[31]}|(?:0[469]|11)-{_DAYS[30]}|"
                f"02-{_DAYS[29]})$")


def date_pattern(months: Sequence[int] | None) -> str:
    """The contact dates the server scores, as a regular expression: every real day of the
    ``months`` (year * 12 + month; socio_eco.accepted_months), or of any month when None."""
    if months is None:
        return ANY_REAL_DAY
    by_days: dict[int, dict[int, list[str]]] = {}  # days in the month -> year -> its months
    for number in months:
        year, month = (number - 1) // 12, (number - 1) % 12 + 1
        days = calendar.monthrange(year, month)[1]
        by_days.setdefault(days, {}).setdefault(year, []).append(f"{month:02d}")
    alternatives = []
    for days, years in sorted(by_days.items()):
        year_months = "|".join(f"{year:04d}-(?:{'|'.join(ms)})" for year, ms in years.items())
        alternatives.append(f"(?:{year_months})-{_DAYS[days]}")
    return f"^(?:{'|'.join(alternatives)})$" if alternatives else "^$(?!.)"


def _column(name: str, months: Sequence[int] | None) -> dict[str, Any]:
    if name == schema.DATE:
        return {"type": "string", "pattern": date_pattern(months),
                "description": "day of the contact, YYYY-MM-DD; its month (or one of the "
                               "months before it, up to max_indicator_age_months) must be in "
                               "socio_eco: the pattern lists the days the server scored when it "
                               "started"}
    if name in schema.INTEGERS:
        rule = schema.INTEGERS[name]
        return {"type": "integer", "minimum": rule.low, "maximum": rule.high,
                "description": rule.meaning}
    return {"type": "string", "enum": list(schema.CATEGORIES[name])}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def spec(settings: Settings, months: Sequence[int] | None = None) -> dict[str, Any]:
    """The OpenAPI document of the scoring API; ``months``: the contact months the indicators
    cover (socio_eco.accepted_months), None when unknown."""
    columns = list(schema.INPUT_COLUMNS)
    contact_id = {"type": ["string", "null"], "maxLength": schema.CONTACT_ID_MAX_CHARS,
                  "description": "optional: your own id of the contact, kept with its score in the "
                                 "prediction log so its outcome can be joined back; not a model input"}
    row = {"type": "object", "required": columns,
           "properties": {**{c: _column(c, months) for c in columns}, schema.CONTACT_ID: contact_id}}
    cell = {"type": ["string", "number", "null"]}
    asked = {"type": "integer", "minimum": 1, "maximum": schema.MAX_REASONS,
             "description": "how many reason codes to give with each appetence, the largest effects first"}
    params = {"type": ["object", "null"], "additionalProperties": False,
              "properties": {schema.REASONS: asked},
              "description": "optional (MLflow's params; null: none): {\"reasons\": 3} gives each "
                             "appetence its 3 largest reason codes, and the answer the baseline they "
                             "add up from"}
    split = {
        "type": "object", "required": ["dataframe_split"], "additionalProperties": False,
        "properties": {"dataframe_split": {
            "type": "object", "required": ["columns", "data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"},
                            "description": "at least: " + ", ".join(columns)
                                           + f"; optionally {schema.CONTACT_ID}"},
                "data": {"type": "array", "maxItems": settings.max_rows,
                         "items": {"type": "array", "items": cell}},
                "index": {"type": ["array", "null"], "description": "optional: one label per row"},
            },
        }, "params": params},
    }
    records = {
        "type": "object", "required": ["dataframe_records"], "additionalProperties": False,
        "properties": {"dataframe_records": {"type": "array", "maxItems": settings.max_rows,
                                             "items": {"$ref": "#/components/schemas/Customer"}},
                       "params": params},
    }
    errors = {
        "400": _error("a field is missing, malformed or out of range; the message names it and the rows"),
        "408": _error(f"the body not received whole within {settings.body_timeout_seconds:g} s of the "
                      "request head; the connection is closed"),
        "413": _error(f"body over {settings.max_body_bytes} bytes or more than {settings.max_rows} rows"),
        "415": _error("Content-Type is not application/json or text/csv"),
        "500": _error("a bug: logged on the server"),
        "503": _error("socio-economic indicators unavailable, or the server busy: "
                      "retry after the Retry-After header's seconds"),
        "504": _error(f"not answered within {settings.request_timeout_seconds:g} s"),
    }
    text = {"description": "the version, as plain text",
            "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "chaos appetence scoring", "version": "1",
                 "description": "One appetence (probability that the customer subscribes a term "
                                "deposit if called) per customer row, in order."},
        "paths": {
            "/invocations": {"post": {
                "summary": "Score customers",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"oneOf": [split, records]}},
                    "text/csv": {"schema": {"type": "string", "minLength": len(",".join(columns)),
                                            "description": "a header naming at least the input columns, "
                                                           "then a line per customer"}},
                }},
                "responses": {
                    "200": {"description": "one appetence per row, in order", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Predictions"}}}},
                    **errors,
                },
            }},
            "/appetence": {"post": {
                "summary": "Score one customer",
                "parameters": [{"name": schema.REASONS, "in": "query", "required": False, "schema": asked,
                                "description": "?reasons=3: the customer's 3 largest reason codes"}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Customer"}}}},
                "responses": {
                    "200": {"description": "the customer's appetence", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Appetence"}}}},
                    **{status: answer for status, answer in errors.items() if status != "415"},
                    "415": _error("Content-Type is not application/json"),
                },
            }},
            "/ping": {"get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}},
            "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}},
            "/version": {"get": {"summary": "MLflow version", "responses": {"200": text}}},
            "/model": {"get": {"summary": "The model served (also in every answer's X-Model-Version)",
                               "responses": {"200": {"description": "its URI, name and registry version",
                                                     "content": {"application/json": {"schema": {
                                                         "$ref": "#/components/schemas/Model"}}}}}}},
        },
        "components": {"schemas": {
            "Customer": row,
            "Predictions": {
                "type": "object", "required": ["predictions"], "additionalProperties": False,
                "properties": {"predictions": {"type": "array", "items": {
                    "type": "object", "required": [schema.OUTPUT_COLUMN],
                    "additionalProperties": False,
                    "properties": {schema.OUTPUT_COLUMN: {"type": "number", "minimum": 0,
                                                          "maximum": 1},
                                   schema.REASONS: {"$ref": "#/components/schemas/Reasons"}},
                }}, schema.BASELINE: {"$ref": "#/components/schemas/Baseline"}},
            },
            "Appetence": {
                "type": "object", "required": [schema.OUTPUT_COLUMN], "additionalProperties": False,
                "properties": {schema.OUTPUT_COLUMN: {"type": "number", "minimum": 0, "maximum": 1},
                               schema.REASONS: {"$ref": "#/components/schemas/Reasons"},
                               schema.BASELINE: {"$ref": "#/components/schemas/Baseline"}},
            },
            "Reasons": {
                "type": "array", "maxItems": schema.MAX_REASONS,
                "description": "with params.reasons (or ?reasons=): the row's largest effects, largest "
                               "first. An effect is the feature's exact Shapley value in the model's "
                               "log-odds: the baseline plus every feature's effect is the row's log-odds. "
                               "It says what moved this customer's score in the model, not what would "
                               "make them subscribe: it is not a causal effect.",
                "items": {"type": "object", "required": ["feature", "effect"], "additionalProperties": False,
                          "properties": {"feature": {"type": "string", "enum": list(schema.REASON_NAMES)},
                                         "value": {"type": ["string", "number", "null"],
                                                   "description": "the value sent (for an indicator: "
                                                                  "the one used for the contact's month)"},
                                         "effect": {"type": "number"}}},
            },
            "Baseline": {"type": "number", "description": "with reasons: the log-odds of the average "
                                                          "training contact, which the effects add to"},
            "Model": {
                "type": "object", "required": ["uri", "name", "version", "package_version"],
                "properties": {"uri": {"type": "string"}, "name": {"type": ["string", "null"]},
                               "version": {"type": ["string", "null"]},
                               "package_version": {"type": "string"}},
            },
            "Error": {
                "type": "object", "required": ["error_code", "message"],
                "additionalProperties": False,
                "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
            },
        }},
    }
