"""The prediction log on the real server: every row scored is in the predictions table, under the
request id the client saw, and what was still queued at SIGTERM is written before the exit."""

from __future__ import annotations

import pandas as pd
import pytest
import requests
from conftest import request_rows, throwaway_pg_database
from sqlalchemy import create_engine, text

from .conftest import json_body, predictions, running_server

pytestmark = pytest.mark.e2e


def test_every_row_scored_is_logged_under_its_request_id(tmp_path, customers: pd.DataFrame) -> None:
    sent: dict[str, int] = {}
    with throwaway_pg_database(with_indicators=True) as url:
        env = {"CHAOS_DATABASE_URL": url, "CHAOS_PREDICTION_LOG": "true"}
        with running_server(env, tmp_path, tmp_path / "server.log") as base:
            for i, size in enumerate((1, 7, 30, 2)):
                body = json_body(request_rows(customers, size, seed=90 + i), "dataframe_split")
                answer = requests.post(f"{base}/invocations", json=body, timeout=30)
                assert len(predictions(answer)) == size
                sent[answer.headers["x-request-id"]] = size
            assert requests.post(f"{base}/invocations", timeout=30, json={"dataframe_records": [{"age": 1}]}
                                 ).status_code == 400  # refused: nothing scored, nothing logged
        # the server has exited (SIGTERM): whatever was still queued is written by now
        engine = create_engine(url)
        with engine.connect() as conn:
            counts = conn.execute(text("SELECT request_id, count(*) FROM prediction_rows "
                                       "GROUP BY request_id"))
            logged = dict(counts.all())
            versions = set(conn.execute(text("SELECT DISTINCT model_version FROM predictions")).scalars())
        engine.dispose()
    assert logged == sent
    assert versions == {"1"}  # the committed model/ is version 1
