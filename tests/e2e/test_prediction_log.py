"""The prediction log on the real server: every row scored is in the predictions table, under the
request id the client saw, and what was still queued at SIGTERM is written before the exit."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import requests
from conftest import request_rows, throwaway_pg_database
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from support.logs import exited_log, once_logged
from support.tcp_proxy import TcpProxy

from .conftest import json_body, predictions, running_server

pytestmark = pytest.mark.e2e


def test_every_row_scored_is_logged_under_its_request_id(tmp_path, customers: pd.DataFrame) -> None:
    sent: dict[str, int] = {}
    ids: dict[str, list[str | None]] = {}
    with throwaway_pg_database(with_indicators=True) as url:
        env = {"CHAOS_DATABASE_URL": url, "CHAOS_PREDICTION_LOG": "true"}
        with running_server(env, tmp_path, tmp_path / "server.log") as base:
            for i, size in enumerate((1, 7, 30, 2)):
                rows = request_rows(customers, size, seed=90 + i)
                if i % 2:  # the client's own ids of its contacts, with some rows: not a model input
                    rows = rows.assign(contact_id=[f"ZQX-contact-{i}-{j}" for j in range(size)])
                body = json_body(rows, "dataframe_split")
                answer = requests.post(f"{base}/invocations", json=body, timeout=30)
                assert len(predictions(answer)) == size
                sent[answer.headers["x-request-id"]] = size
                given = rows["contact_id"].tolist() if "contact_id" in rows else [None] * size
                ids[answer.headers["x-request-id"]] = given
            assert requests.post(f"{base}/invocations", timeout=30, json={"dataframe_records": [{"age": 1}]}
                                 ).status_code == 400  # refused: nothing scored, nothing logged
        # the server has exited (SIGTERM): whatever was still queued is written by now
        engine = create_engine(url)
        with engine.connect() as conn:
            counts = conn.execute(text("SELECT request_id, count(*) FROM prediction_rows "
                                       "GROUP BY request_id"))
            logged = dict(counts.all())
            versions = set(conn.execute(text("SELECT DISTINCT model_version FROM predictions")).scalars())
            kept = dict(conn.execute(text("SELECT request_id, contact_id FROM predictions")).all())
        engine.dispose()
    assert logged == sent
    assert kept == ids
    assert versions == {"1"}  # the committed model/ is version 1
    assert "ZQX-contact" not in exited_log(tmp_path / "server.log")  # never in the access log


def test_the_server_starts_with_the_log_s_database_away_and_writes_what_waited(
        tmp_path, customers: pd.DataFrame) -> None:
    """The prediction log's database behind a real proxy that is not listening at start: the
    server starts and scores; once the database answers, the rows scored meanwhile are written."""
    with throwaway_pg_database(with_indicators=True) as url:
        proxy = TcpProxy(("127.0.0.1", make_url(url).port or 5432))
        away = make_url(url).set(port=proxy.port).render_as_string(hide_password=False)
        env = {"CHAOS_DATABASE_URL": url, "CHAOS_PREDICTION_LOG": "true", "CHAOS_PREDICTION_LOG_URL": away,
               "CHAOS_CONNECT_TIMEOUT_SECONDS": "1"}
        try:
            with running_server(env, tmp_path, tmp_path / "server.log") as base:
                assert requests.get(f"{base}/ping", timeout=10).status_code == 200
                sent = 0
                for i in range(5):
                    body = json_body(request_rows(customers, 3, seed=40 + i), "dataframe_split")
                    answer = requests.post(f"{base}/invocations", json=body, timeout=30)
                    sent += len(predictions(answer))
                log = once_logged(tmp_path / "server.log", "not writing yet")
                assert "the prediction log's database cannot be reached" in log
                proxy.start()
                engine = create_engine(url)
                deadline = time.monotonic() + 30
                logged = 0
                while logged < sent and time.monotonic() < deadline:
                    with engine.connect() as conn:
                        if conn.execute(text("SELECT to_regclass('predictions')")).scalar() is not None:
                            logged = conn.execute(text("SELECT count(*) FROM prediction_rows")).scalar_one()
                    time.sleep(0.2)
                engine.dispose()
        finally:
            proxy.stop()
    assert logged == sent == 15
