"""`chaos serve`: MLflow's scoring app for a model, behind the gateway, under uvicorn.

What `mlflow models serve --env-manager local` runs (uvicorn on MLflow's FastAPI app), minus
its launcher process, plus the gateway. One process: SIGTERM reaches uvicorn itself, which
stops accepting connections, lets the requests in flight finish, writes out what is queued, then
exits, all within ``shutdown_timeout_seconds`` of the signal (shutdown.py). With TLS, a renewed
certificate is served without a restart (tls.py).

The model is a directory (the image's model/) or any MLflow model URI: ``models:/chaos-appetence/7``
as the pods pin it, or ``models:/chaos-appetence@staging``. A URI is downloaded once, at start;
if the registry cannot be reached, or the model needs another version of this package, the
server says so and exits before it listens, so the pod never turns ready and the pods already
running keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
import yaml
from prometheus_client import start_http_server
from uvicorn.config import STARTUP_FAILURE

from chaos_pyfunc.config import Settings, load_settings
from chaos_pyfunc.contract import openapi
from chaos_pyfunc.error_capture import ACCESS_LOG
from chaos_pyfunc.http import edge
from chaos_pyfunc.http.auth import KeyRing
from chaos_pyfunc.http.gateway import Gateway, Limits
from chaos_pyfunc.http.metrics import Metrics
from chaos_pyfunc.http.observer import BatchedStreamHandler
from chaos_pyfunc.http.shutdown import ShutdownClock
from chaos_pyfunc.http.tls import CertificateWatch
from chaos_pyfunc.predlog.prediction_log import PredictionLog
from chaos_pyfunc.scoring.package_version import REGISTERED_MODEL_META, UnusableModel, check_compatible
from chaos_pyfunc.scoring.socio_eco import IndicatorsUnavailable, accepted_months

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ModelUnavailable(UnusableModel):
    """The model could not be had: no such directory, or the registry did not give it."""


@dataclass(frozen=True)
class ServedModel:
    """Which model a server serves: what /model answers and every answer's X-Model-Version says."""

    uri: str
    path: Path
    name: str | None
    version: str | None
    package: str

    def describe(self) -> str:
        which = f"{self.name} version {self.version}" if self.version else "an unregistered model"
        return f"{which} ({self.uri}), chaos-pyfunc {self.package}"

    def as_dict(self) -> dict[str, str | None]:
        return {"uri": self.uri, "name": self.name, "version": self.version,
                "package_version": self.package}


def _is_local(uri: str) -> bool:
    return "://" not in uri and not uri.startswith(("models:", "runs:"))


def locate(uri: str, download_dir: Path) -> ServedModel:
    """The model as a local directory: ``uri`` itself, or its download into ``download_dir``."""
    if _is_local(uri):
        path = Path(uri)
        if not (path / "MLmodel").is_file():
            raise ModelUnavailable(f"{uri} is not a model directory (no MLmodel file in it)")
    else:
        import mlflow

        try:
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(download_dir)))
        except Exception as exc:  # MLflow's message may carry the registry's address and credentials
            raise ModelUnavailable(
                f"cannot download {uri} from the model registry (MLFLOW_TRACKING_URI): "
                f"{type(exc).__name__}; this server does not start without its model") from None
    meta_path = path / REGISTERED_MODEL_META
    meta = yaml.safe_load(meta_path.read_text()) if meta_path.is_file() else {}
    version = (meta or {}).get("model_version")
    package = check_compatible(path, uri if version is None else f"{uri} (version {version})")
    return ServedModel(uri, path, (meta or {}).get("model_name"), None if version is None else str(version),
                       package)


class Server(uvicorn.Server):
    """uvicorn's server, its shutdown timed from the signal, its TLS certificate watched."""

    def __init__(self, config: uvicorn.Config, clock: ShutdownClock,
                 certificates: CertificateWatch | None) -> None:
        super().__init__(config)
        self.clock = clock
        self.certificates = certificates
        self._watching: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.clock.start()  # the budget runs from the signal, not from uvicorn's next tick
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.certificates is not None:
            self._watching = asyncio.create_task(self.certificates.watch())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.clock.start()  # if no signal did (uvicorn's own reasons to stop)
        if self._watching is not None:
            self._watching.cancel()
        # uvicorn reads its drain's bound here; typed an int, it waits any number of seconds
        self.config.timeout_graceful_shutdown = self.clock.drain_seconds()  # type: ignore[assignment]
        await super().shutdown(sockets)


def create_app(served: ServedModel, settings: Settings, shutdown: ShutdownClock) -> Gateway:
    """Load the model (its load_context reads the settings too) and wrap MLflow's app for it."""
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.pyfunc import scoring_server

    # MLflow's own timeout only as a backstop: the gateway's answers first, and cleanly.
    os.environ[MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name] = str(
        int(settings.request_timeout_seconds) + 30)
    model = scoring_server.load_model_with_mlflow_config(str(served.path))
    keys = KeyRing(Path(settings.api_keys_file)) if settings.api_keys_file else None
    if keys is None:
        log.warning("no API keys file (CHAOS_API_KEYS_FILE): every client is let in")
    else:
        log.info("API keys: %d from %s; /ping and /health need none", len(keys), settings.api_keys_file)
    metrics = Metrics()
    python_model = model.unwrap_python_model()
    scorer = getattr(python_model, "scorer", None)
    recorder = None
    if scorer is not None:  # our pyfunc: its scores and its indicators are watched
        metrics.indicators.source = scorer.source
        if settings.prediction_log:
            target = settings.replaced(database_url=settings.prediction_log_database_url)
            recorder = PredictionLog(target, served.version)
            scorer.listeners.append(recorder.record)
            metrics.prediction_log.source = recorder
            log.info("prediction log: every row scored, to the predictions table")
    if settings.metrics_port:
        # Its own port, which the Service does not expose: scraped inside the cluster only.
        start_http_server(settings.metrics_port, registry=metrics.registry)
        log.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
    document = openapi.spec(settings, _months(scorer, settings))
    gateway = Gateway(scoring_server.init(model), Limits.of(settings), document,
                      served.as_dict(), keys, metrics, metrics_here=not settings.metrics_port,
                      shutdown=shutdown)
    gateway.prediction_log = recorder
    if scorer is not None:  # the appetences' histogram
        scorer.listeners.insert(0, lambda batch, appetences: gateway.observer.scored(appetences))
    gateway.observer.start()
    return gateway


def _months(scorer: Any, settings: Settings) -> list[int] | None:
    """The contact months the indicators cover at start, for /openapi.json's dates; None when
    they cannot be read now or the model is not ours."""
    if scorer is None:
        return None
    try:
        return accepted_months(scorer.source.table().months, settings.max_indicator_age_months)
    except IndicatorsUnavailable:
        log.warning("socio_eco unreadable at start: /openapi.json admits any real day as a date")
        return None


def serve(model_uri: str, host: str, port: int) -> None:
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)
    # The access log is JSON lines of its own (observer.py), for the log pipeline to parse as is,
    # on stderr in one write per batch.
    access = logging.getLogger(ACCESS_LOG)
    access.propagate = False
    handler = BatchedStreamHandler(open(os.dup(sys.stderr.fileno()), "w", buffering=1 << 16))  # noqa: SIM115
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.handlers = [handler]
    with tempfile.TemporaryDirectory(prefix="chaos-model-") as scratch:
        try:
            served = locate(model_uri, Path(scratch))
        except UnusableModel as exc:
            log.error("not serving: %s", exc)
            raise
        log.info("serving %s", served.describe())
        clock = ShutdownClock(settings.shutdown_timeout_seconds)
        app = create_app(served, settings, clock)
        tls = bool(settings.tls_cert_file)
        log.info("serving %s on %s://%s:%d", served.describe(), "https" if tls else "http", host, port)
        config = uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None,
                                http=edge.protocol_class(settings.header_timeout_seconds, app.metrics),
                                limit_concurrency=settings.max_connections,
                                ssl_certfile=settings.tls_cert_file or None,
                                ssl_keyfile=settings.tls_key_file or None)
        config.load()  # makes the SSLContext every handshake uses: the one a renewed pair goes into
        certificates = None if config.ssl is None else CertificateWatch(
            config.ssl, settings.tls_cert_file, settings.tls_key_file, settings.tls_reload_seconds)
        server = Server(config, clock, certificates)
        with suppress(KeyboardInterrupt):
            server.run()
        if not server.started:  # as uvicorn.run: a server that never listened exits with an error
            sys.exit(STARTUP_FAILURE)

