"""Runtime settings, read once from the environment and an optional YAML file.

Precedence, highest first: environment variables, the YAML file named by ``CHAOS_CONFIG``,
the defaults below. The default database is an embedded SQLite file under ``var/``, so the
service runs with no PostgreSQL at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import URL, make_url

# The embedded default lives under the working directory: `make serve` runs from the repo root.
EMBEDDED_DATABASE_PATH = Path("var") / "chaos.db"
EMBEDDED_DATABASE_URL = f"sqlite:///{EMBEDDED_DATABASE_PATH}"

# Environment variable for each setting that may be overridden one by one.
ENV_VARS = {
    "database_url": "CHAOS_DATABASE_URL",
    "cache_ttl_seconds": "CHAOS_CACHE_TTL_SECONDS",
    "max_indicator_age_months": "CHAOS_MAX_INDICATOR_AGE_MONTHS",
    "connect_timeout_seconds": "CHAOS_CONNECT_TIMEOUT_SECONDS",
    "statement_timeout_ms": "CHAOS_STATEMENT_TIMEOUT_MS",
    "pool_size": "CHAOS_POOL_SIZE",
    "pool_recycle_seconds": "CHAOS_POOL_RECYCLE_SECONDS",
    "indicators_wait_seconds": "CHAOS_INDICATORS_WAIT_SECONDS",
    "indicators_max_staleness_seconds": "CHAOS_INDICATORS_MAX_STALENESS_SECONDS",
    "max_body_bytes": "CHAOS_MAX_BODY_BYTES",
    "max_rows": "CHAOS_MAX_ROWS",
    "max_in_flight": "CHAOS_MAX_IN_FLIGHT",
    "request_timeout_seconds": "CHAOS_REQUEST_TIMEOUT_SECONDS",
    "shutdown_timeout_seconds": "CHAOS_SHUTDOWN_TIMEOUT_SECONDS",
    "model_uri": "CHAOS_MODEL_URI",
    "gate_max_auc_drop": "CHAOS_GATE_MAX_AUC_DROP",
    "gate_min_roc_auc": "CHAOS_GATE_MIN_ROC_AUC",
    "api_keys_file": "CHAOS_API_KEYS_FILE",  # pragma: allowlist secret (a variable name)
    "tls_cert_file": "CHAOS_TLS_CERT_FILE",
    "tls_key_file": "CHAOS_TLS_KEY_FILE",
    "header_timeout_seconds": "CHAOS_HEADER_TIMEOUT_SECONDS",
    "max_connections": "CHAOS_MAX_CONNECTIONS",
    "metrics_port": "CHAOS_METRICS_PORT",
    "sentry_dsn": "CHAOS_SENTRY_DSN",
    "environment": "CHAOS_ENVIRONMENT",
    "prediction_log": "CHAOS_PREDICTION_LOG",
    "prediction_log_url": "CHAOS_PREDICTION_LOG_URL",
    "prediction_log_queue_rows": "CHAOS_PREDICTION_LOG_QUEUE_ROWS",
    "prediction_log_retention_days": "CHAOS_PREDICTION_LOG_RETENTION_DAYS",
    "drift_share_threshold": "CHAOS_DRIFT_SHARE_THRESHOLD",
    "drift_min_rows": "CHAOS_DRIFT_MIN_ROWS",
    "predict_threads": "CHAOS_PREDICT_THREADS",
}
CONFIG_FILE_VAR = "CHAOS_CONFIG"


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range."""


@dataclass(frozen=True)
class Settings:
    """Everything the service and the training job can be configured with."""

    database_url: str = EMBEDDED_DATABASE_URL
    # How long indicators read from socio_eco may be reused; 0 reads the table on every request.
    cache_ttl_seconds: float = 60.0
    # A row whose latest indicators are more months older than this is refused.
    max_indicator_age_months: int = 3
    connect_timeout_seconds: int = 3
    statement_timeout_ms: int = 5000
    # At most 2 * pool_size connections per process; a connection older than this is replaced.
    pool_size: int = 2
    pool_recycle_seconds: int = 300
    # Once the cache has expired, how long a request waits for a read of socio_eco before it
    # falls back to the last good indicators (or answers 503).
    indicators_wait_seconds: float = 1.0
    # While socio_eco cannot be read, indicators read at most this long ago are still served;
    # 0 answers 503 as soon as the cache has expired.
    indicators_max_staleness_seconds: float = 3600.0
    # The HTTP front (gateway.py): bigger bodies or more rows get 413 before any parsing or
    # scoring; past max_in_flight requests being handled, new ones get 503 at once.
    max_body_bytes: int = 8 * 1024 * 1024
    max_rows: int = 10_000
    max_in_flight: int = 32
    request_timeout_seconds: float = 10.0
    # On SIGTERM, requests in flight get this long to finish (below the pod's grace period).
    shutdown_timeout_seconds: float = 20.0
    # The model `chaos serve` serves: a directory or an MLflow URI (models:/chaos-appetence/7).
    # The default is the one baked into the image (model/, relative to the working directory).
    model_uri: str = "model"
    # The promotion gate (gate.py): a candidate whose ROC AUC is below the current version's by
    # more than this is refused; with no current version, its AUCs must reach the floor.
    gate_max_auc_drop: float = 0.01
    gate_min_roc_auc: float = 0.65
    # The API keys file (auth.py: ids and hashes, from `chaos keys create`); empty: no
    # authentication, the embedded default. Every Kubernetes overlay sets it.
    api_keys_file: str = ""
    # TLS in the pod (the certificate from cert-manager, k8s/base/certificate.yaml): both PEM
    # files, or neither for plain HTTP (the embedded default). With them, plain HTTP is refused.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # The connection edge (edge.py): a connection without a complete request head this long is
    # closed; past max_connections open connections, new requests get 503 (uvicorn's
    # limit_concurrency). Idle keep-alive connections close after 5 s (uvicorn's default).
    header_timeout_seconds: float = 10.0
    max_connections: int = 1000
    # GET /metrics (Prometheus): on its own port when set (the pods: 9090, not in the Service);
    # 0 serves it on the main port, behind the API keys if there are any.
    metrics_port: int = 0
    # Unexpected errors to Sentry (error_capture.py), stripped of customer data; empty: none sent.
    sentry_dsn: str = ""
    environment: str = "local"  # develop, staging or master in the pods: Sentry's environment
    # The prediction log (prediction_log.py): every row scored, written off the request path in
    # batches to the predictions table of prediction_log_url (empty: database_url). Past
    # prediction_log_queue_rows waiting, rows are dropped and counted, never waited for. Rows
    # older than the retention are purged. Off on the embedded default, on in the overlays.
    prediction_log: bool = False
    prediction_log_url: str = ""
    prediction_log_queue_rows: int = 100_000
    prediction_log_retention_days: int = 90
    # `chaos drift` exits 1 when more than this share of the features drifted (drift.py).
    drift_share_threshold: float = 0.25
    # ... and refuses to judge a period with fewer rows (300 sampled rows came near the threshold).
    drift_min_rows: int = 1000
    # Threads the compiled trees spread a batch over (compiled.py); 0: the CPUs this process may
    # run on. The pods set 1: their CPU limit is one core.
    predict_threads: int = 0

    def __post_init__(self) -> None:
        try:
            make_url(self.database_url)
        except Exception as exc:  # SQLAlchemy raises ArgumentError; never echo the URL itself
            raise ConfigError("database_url is not a valid SQLAlchemy URL") from exc
        checks = {
            "cache_ttl_seconds": self.cache_ttl_seconds >= 0,
            "max_indicator_age_months": self.max_indicator_age_months >= 0,
            "connect_timeout_seconds": self.connect_timeout_seconds >= 1,
            "statement_timeout_ms": self.statement_timeout_ms >= 1,
            "pool_size": self.pool_size >= 1,
            "pool_recycle_seconds": self.pool_recycle_seconds >= 1,
            "indicators_wait_seconds": self.indicators_wait_seconds > 0,
            "indicators_max_staleness_seconds": self.indicators_max_staleness_seconds >= 0,
            "max_body_bytes": self.max_body_bytes >= 1024,
            "max_rows": self.max_rows >= 1,
            "max_in_flight": self.max_in_flight >= 1,
            "request_timeout_seconds": self.request_timeout_seconds > 0,
            "shutdown_timeout_seconds": self.shutdown_timeout_seconds >= 0,
            "model_uri": bool(self.model_uri.strip()),
            "gate_max_auc_drop": 0 <= self.gate_max_auc_drop <= 1,
            "gate_min_roc_auc": 0 <= self.gate_min_roc_auc <= 1,
            "header_timeout_seconds": self.header_timeout_seconds > 0,
            "max_connections": self.max_connections >= self.max_in_flight,
            "metrics_port": 0 <= self.metrics_port <= 65535,
            "prediction_log_queue_rows": self.prediction_log_queue_rows >= 1,
            "prediction_log_retention_days": self.prediction_log_retention_days >= 1,
            "drift_share_threshold": 0 <= self.drift_share_threshold <= 1,
            "drift_min_rows": self.drift_min_rows >= 1,
            "predict_threads": 0 <= self.predict_threads <= 64,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{name} is out of range: {getattr(self, name)!r}")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("tls_cert_file and tls_key_file go together: set both, or neither")

    @property
    def prediction_log_database_url(self) -> str:
        return self.prediction_log_url or self.database_url

    @property
    def url(self) -> URL:
        return make_url(self.database_url)

    @property
    def is_embedded_default(self) -> bool:
        return self.database_url == EMBEDDED_DATABASE_URL

    def safe_url(self) -> str:
        """The database URL with its password masked, fit for logs and messages."""
        return self.url.render_as_string(hide_password=True)


def _database_url_from_yaml(database: Any) -> str:
    """The ``database:`` key is either a URL string or a mapping of URL parts."""
    if isinstance(database, str):
        return database
    if not isinstance(database, Mapping):
        raise ConfigError("database must be a URL string or a mapping")
    try:
        return URL.create(
            drivername=database.get("driver", "postgresql+psycopg2"),
            username=database.get("user"),
            password=database.get("password"),
            host=database.get("host"),
            port=database.get("port"),
            database=database["name"],
        ).render_as_string(hide_password=False)
    except KeyError as exc:
        raise ConfigError("database.name is missing") from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {CONFIG_FILE_VAR} file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{CONFIG_FILE_VAR} file {path} is not valid YAML") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"{CONFIG_FILE_VAR} file {path} must hold a mapping")
    values = dict(content)
    if "database" in values:
        values["database_url"] = _database_url_from_yaml(values.pop("database"))
    unknown = set(values) - {f.name for f in fields(Settings)}
    if unknown:
        raise ConfigError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
    return values


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_path := env.get(CONFIG_FILE_VAR):
        values.update(_read_yaml(Path(config_path)))
    for name, var in ENV_VARS.items():
        if var in env and env[var] != "":
            values[name] = env[var]
    types = {f.name: str(f.type) for f in fields(Settings)}  # annotations are text here
    converters: dict[str, Callable[[Any], Any]] = {"str": str, "int": int, "float": float, "bool": _boolean}
    typed: dict[str, Any] = {}
    for name, raw in values.items():
        try:
            typed[name] = converters[types[name]](raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} must be of type {types[name]}") from exc
    return Settings(**typed)
