"""/openapi.json tells the truth: it describes the request the server takes, and Schemathesis,
generating requests from it (valid ones and invalid ones), finds no answer the document does
not declare: no server error, no undeclared status, Content-Type or response shape."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema

from .conftest import VENV_BIN, error_message

pytestmark = pytest.mark.e2e

# Every check runs; tests/e2e/schemathesis.toml turns one off for one operation, and says why.
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("CHAOS_SCHEMATHESIS_EXAMPLES", 100))


@pytest.fixture(scope="module")
def spec(pg_server: str) -> dict[str, Any]:
    response = requests.get(f"{pg_server}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_the_document_is_openapi_3_1_with_the_six_endpoints(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) == {"/invocations", "/appetence", "/ping", "/health", "/version", "/model"}
    assert set(spec["paths"]["/invocations"]) == {"post"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                assert response.get("description"), f"{method} {path} {status}: a description is required"
    version = spec["paths"]["/version"]["get"]["responses"]["200"]
    assert set(version["content"]) == {"text/plain"}


def test_invocations_takes_the_14_input_columns(spec: dict[str, Any]) -> None:
    post = spec["paths"]["/invocations"]["post"]
    body = post["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"application/json", "text/csv"}
    split, records = body["content"]["application/json"]["schema"]["oneOf"]
    assert split["required"] == ["dataframe_split"]
    assert records["required"] == ["dataframe_records"]
    max_rows = Settings().max_rows
    assert split["properties"]["dataframe_split"]["properties"]["data"]["maxItems"] == max_rows
    assert records["properties"]["dataframe_records"]["maxItems"] == max_rows
    assert records["properties"]["dataframe_records"]["items"] == {"$ref": "#/components/schemas/Customer"}

    customer = spec["components"]["schemas"]["Customer"]
    assert len(schema.INPUT_COLUMNS) == 14
    assert customer["required"] == list(schema.INPUT_COLUMNS)
    assert list(customer["properties"]) == [*schema.INPUT_COLUMNS, schema.CONTACT_ID]  # the id: optional
    assert customer["properties"][schema.CONTACT_ID]["maxLength"] == schema.CONTACT_ID_MAX_CHARS
    for column, rule in schema.INTEGERS.items():
        assert customer["properties"][column] | {"description": ""} == {
            "type": "integer", "minimum": rule.low, "maximum": rule.high, "description": ""}
    for column, values in schema.CATEGORIES.items():
        assert customer["properties"][column] == {"type": "string", "enum": list(values)}
    assert customer["properties"][schema.DATE]["type"] == "string"
    assert set(post["responses"]) == {"200", "400", "408", "413", "415", "500", "503", "504"}


def test_version_is_plain_text(pg_server: str) -> None:
    response = requests.get(f"{pg_server}/version", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == mlflow.__version__


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_fastapis_own_pages_are_not_served(pg_server: str, path: str) -> None:
    response = requests.get(f"{pg_server}{path}", timeout=10)
    assert error_message(response, 404).startswith("no such endpoint")


def schemathesis(base_url: str, mode: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Schemathesis' CLI (`st run`) on the served document, every operation, one mode."""
    command = [
        str(VENV_BIN / "st"), "--config-file", str(CONFIG), "run", f"{base_url}/openapi.json",
        "--mode", mode, "--max-examples", str(EXAMPLES),
        "--phases", "examples,coverage,fuzzing", "--generation-deterministic",
        # One worker: Hypothesis parses lambdas' source to name them, and Python 3.11's AST
        # builder keeps its recursion depth per interpreter, so two threads parsing at once fail
        # now and then with "AST constructor recursion depth mismatch" (CPython gh-106905).
        "--workers", "1", "--request-timeout", "30",
        "--suppress-health-check", "all", "--no-color", "--output-truncate", "false",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_every_check_runs_but_one_on_one_operation() -> None:
    config = tomllib.loads(CONFIG.read_text())
    assert config["checks"] == {"enabled": True}
    assert config["operations"] == [{"include-path": "/invocations", "include-method": "POST",
                                     "checks": {"positive_data_acceptance": {"enabled": False}}}]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_nothing(pg_server: str, mode: str, tmp_path: Path) -> None:
    run = schemathesis(pg_server, mode, tmp_path)
    output = run.stdout + run.stderr
    sys.stdout.write(output)  # shown by pytest on failure
    assert run.returncode == 0, f"schemathesis ({mode}) exited with {run.returncode}:\n{output[-20000:]}"
    assert "Selected: 6/6" in output and "Tested: 6" in output, output[-5000:]
    generated = re.search(r"(\d+) generated, \1 passed", output)
    assert generated and int(generated[1]) >= 50, output[-5000:]
