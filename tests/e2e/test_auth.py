"""API keys on the real server: no key or a wrong one is a 401, a right one scores, a revoked one
stops working without a restart, the probes need none, and no key or hash reaches the log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from conftest import request_rows
from support import http
from support.logs import once_logged

from chaos_pyfunc.http.auth import create, revoke

from .conftest import json_body, predictions, running_server

pytestmark = pytest.mark.e2e

RELOAD_WITHIN_SECONDS = 10.0  # the server looks at the file once a second: a 10x margin


@pytest.fixture(scope="module")
def keyed(indicators_pg_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    workdir = tmp_path_factory.mktemp("keyed")
    keys_file = workdir / "secret" / "api-keys.yml"
    first = create(keys_file, "acme")
    env = {"CHAOS_DATABASE_URL": indicators_pg_url, "CHAOS_API_KEYS_FILE": str(keys_file)}
    with running_server(env, workdir, workdir / "server.log") as url:
        yield url, keys_file, first


def post(url: str, rows: pd.DataFrame, key: str | None) -> requests.Response:
    return http.post(url, json_body(rows, "dataframe_split"),
                     headers={} if key is None else {"Authorization": f"Bearer {key}"})


def test_no_key_or_a_wrong_key_is_a_401_and_the_right_key_scores(keyed, customers: pd.DataFrame) -> None:
    url, _, key = keyed
    rows = request_rows(customers, 3, seed=21)
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for attempt in (None, wrong, "not-a-key"):
        answer = post(url, rows, attempt)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == 'Bearer realm="chaos"'
        assert answer.json()["error_code"] == "UNAUTHENTICATED"
    assert len(predictions(post(url, rows, key))) == 3
    assert requests.get(f"{url}/model", timeout=10).status_code == 401


def test_the_probes_need_no_key(keyed) -> None:
    url, _, _ = keyed
    assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    assert requests.get(f"{url}/health", timeout=10).status_code == 200


def test_a_rotated_out_key_is_refused_without_a_restart(keyed, customers: pd.DataFrame) -> None:
    url, keys_file, _ = keyed
    rows = request_rows(customers, 2, seed=22)
    old = create(keys_file, "rotating")
    deadline = time.monotonic() + RELOAD_WITHIN_SECONDS
    while post(url, rows, old).status_code != 200:
        assert time.monotonic() < deadline, "the new key was not taken without a restart"
        time.sleep(0.2)
    new = create(keys_file, "rotating")
    revoke(keys_file, "rotating", old.split("_")[1])
    deadline = time.monotonic() + RELOAD_WITHIN_SECONDS
    while post(url, rows, old).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.2)
    assert len(predictions(post(url, rows, new))) == 2


def test_the_log_names_key_ids_never_keys_or_hashes(keyed, customers: pd.DataFrame) -> None:
    url, keys_file, key = keyed
    assert post(url, request_rows(customers, 1, seed=23), key).status_code == 200
    key_id = f'"key_id": "{key.split("_")[1]}"'
    log = once_logged(keys_file.parent.parent / "server.log", key_id)
    assert f"API keys: 1 from {keys_file}" in log
    assert key_id in log
    for entry in yaml.safe_load(keys_file.read_text())["keys"]:
        assert entry["sha256"] not in log
    assert key not in log and key.split("_", 2)[2] not in log
