"""TLS in the pod, as the overlays run it: the server with a certificate answers HTTPS (checked
against that certificate, here a self-signed one for 127.0.0.1) and refuses plain HTTP."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import request_rows
from support.server import VENV_BIN, ServerDidNotStart, launch
from support.tls import self_signed

from .conftest import STARTUP_TIMEOUT_SECONDS, json_body, predictions, serve_command, server_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tls_server(indicators_pg_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path_factory.mktemp("tls")
    cert_file, key_file = self_signed(workdir)
    env = server_env({"CHAOS_DATABASE_URL": indicators_pg_url, "CHAOS_TLS_CERT_FILE": str(cert_file),
                      "CHAOS_TLS_KEY_FILE": str(key_file)})
    try:
        with launch(serve_command, env, workdir, workdir / "server.log", STARTUP_TIMEOUT_SECONDS,
                    https_ca=cert_file) as served:
            yield served.url, cert_file
    except ServerDidNotStart as exc:
        pytest.fail(str(exc), pytrace=False)


def test_https_with_the_certificate_scores(tls_server, customers) -> None:
    url, cert_file = tls_server
    assert url.startswith("https://")
    answer = requests.post(f"{url}/invocations", json=json_body(request_rows(customers, 3, seed=41),
                                                                "dataframe_split"),
                           verify=str(cert_file), timeout=30)
    assert len(predictions(answer)) == 3


def test_plain_http_is_refused(tls_server) -> None:
    url, _ = tls_server
    with pytest.raises(requests.ConnectionError):
        requests.get(url.replace("https://", "http://") + "/ping", timeout=10)


def test_a_client_that_does_not_trust_the_certificate_is_stopped(tls_server) -> None:
    url, _ = tls_server
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/ping", timeout=10)  # the system's CAs only


def test_half_a_tls_setting_stops_the_server_naming_both(tmp_path: Path) -> None:
    done = subprocess.run([str(VENV_BIN / "chaos"), "serve", "--port", "1"], cwd=tmp_path,
                          env=server_env({"CHAOS_TLS_CERT_FILE": str(tmp_path / "tls.crt")}),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "tls_cert_file and tls_key_file go together" in done.stderr
