"""TLS in the pod, as the overlays run it: the server with a certificate answers HTTPS (checked
against that certificate, here a self-signed one for 127.0.0.1) and refuses plain HTTP; a
certificate renewed in its Secret volume is served to new connections without a restart."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from conftest import request_rows
from support.logs import once_logged
from support.server import VENV_BIN, Served, ServerDidNotStart, launch
from support.tls import pair, publish, self_signed, serial

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


RELOAD_SECONDS = 0.5  # the production default is 60


@pytest.fixture
def renewing_server(indicators_pg_url: str, tmp_path: Path) -> Iterator[tuple[Served, Path]]:
    """A server on a Secret volume's tls.crt and tls.key (support.tls.publish), checked often."""
    mount = tmp_path / "chaos-tls"
    cert_file, key_file = publish(mount, *pair())
    env = server_env({"CHAOS_DATABASE_URL": indicators_pg_url, "CHAOS_TLS_CERT_FILE": str(cert_file),
                      "CHAOS_TLS_KEY_FILE": str(key_file), "CHAOS_TLS_RELOAD_SECONDS": str(RELOAD_SECONDS)})
    try:
        with launch(serve_command, env, tmp_path, tmp_path / "server.log", STARTUP_TIMEOUT_SECONDS,
                    https_ca=cert_file) as served:
            yield served, mount
    except ServerDidNotStart as exc:
        pytest.fail(str(exc), pytrace=False)


def presented(url: str) -> int:
    """The serial of the certificate a new TLS connection is shown."""
    parts = urlsplit(url)
    return serial(ssl.get_server_certificate((parts.hostname or "", parts.port or 443), timeout=10))


def ping(connection: http.client.HTTPSConnection) -> int:
    connection.request("GET", "/ping")
    answer = connection.getresponse()
    answer.read()
    return answer.status


def test_a_renewed_certificate_reaches_new_connections_without_a_restart(renewing_server) -> None:
    served, mount = renewing_server
    old = (mount / "tls.crt").read_bytes()
    parts = urlsplit(served.url)
    # A keep-alive connection opened on the old certificate, kept busy (idle ones close after 5 s).
    kept = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                       context=ssl.create_default_context(cadata=old.decode()), timeout=10)
    assert ping(kept) == 200
    kept_socket = kept.sock
    assert presented(served.url) == serial(old)

    new_cert, new_key = pair("127.0.0.1 renewed")
    renewed = time.monotonic()
    publish(mount, new_cert, new_key)
    deadline = renewed + 20 * RELOAD_SECONDS + 10  # polling, plus a loaded machine's delays
    while presented(served.url) != serial(new_cert) and time.monotonic() < deadline:
        assert ping(kept) == 200
        time.sleep(RELOAD_SECONDS / 5)
    seen = time.monotonic() - renewed
    print(f"the renewed certificate was presented to new connections {seen:.2f} s after the swap "
          f"(checked every {RELOAD_SECONDS:g} s)")
    assert presented(served.url) == serial(new_cert)
    # The connection opened before keeps its certificate, and works.
    assert ping(kept) == 200 and kept.sock is kept_socket
    assert serial(ssl.DER_cert_to_PEM_cert(kept_socket.getpeercert(binary_form=True))) == serial(old)
    kept.close()
    # New clients that trust the new certificate are served; the process is the same one.
    renewed_ca = mount.parent / "renewed.crt"
    renewed_ca.write_bytes(new_cert)
    assert requests.get(f"{served.url}/ping", verify=str(renewed_ca), timeout=10).status_code == 200
    assert served.process.poll() is None
    log = once_logged(served.log, "TLS certificate reloaded")
    assert log.count("Started server process") == 1 and f"Started server process [{served.pid}]" in log

    # A pair that does not load together (a certificate with another's key) is refused, and the
    # certificate in use kept.
    publish(mount, pair("127.0.0.1 mismatched")[0], new_key)
    log = once_logged(served.log, "do not load together", within=20 * RELOAD_SECONDS + 10)
    assert "the changed TLS certificate and key do not load together (SSLError)" in log
    assert presented(served.url) == serial(new_cert)
    assert requests.get(f"{served.url}/ping", verify=str(renewed_ca), timeout=10).status_code == 200
