"""Runtime settings, read once from the environment and an optional YAML file.

Precedence, highest first: environment variables, the YAML file named by ``CHAOS_CONFIG``,
the defaults below. The default database is an embedded SQLite file under ``var/``, so the
service runs with no PostgreSQL at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import URL, make_url

# The embedded default lives under the working directory: `make serve` runs from the repo root.
EMBEDDED_DATABASE_PATH = Path("var") / "chaos.db"
EMBEDDED_DATABASE_URL = f"sqlite:///{EMBEDDED_DATABASE_PATH}"

CONFIG_FILE_VAR = "CHAOS_CONFIG"
# The end of the shutdown budget kept from the drain, for writing what is queued (the access
# lines, the prediction log's rows): a drain that used the whole budget would leave them no time
# before the kubelet's SIGKILL.
SHUTDOWN_RESERVE_SECONDS = 5.0


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range."""


def _setting(default: Any, description: str, **bounds: Any) -> Any:
    return Field(default, description=description, **bounds)


class Settings(BaseModel):
    """Everything the service and the training job can be configured with: each setting's type,
    range, default and meaning, in one place (docs/operations.md's table is rendered from it).

    Strict and frozen: built in code, a setting takes its own type only (no "60" for 60); read
    from the environment or the YAML file (load_settings), text is parsed by the same rules.
    Unknown settings are refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    database_url: str = _setting(
        EMBEDDED_DATABASE_URL, "the SQLAlchemy URL of the database holding socio_eco (YAML: `database`, "
        "a URL or its parts); the default is an embedded SQLite file, created and seeded on first use")
    cache_ttl_seconds: float = _setting(60.0, "how long the socio_eco table read is reused; 0: every request",
                                        ge=0)
    max_indicator_age_months: int = _setting(
        3, "a row whose latest indicators are more months older than its contact is refused", ge=0)
    connect_timeout_seconds: int = _setting(3, "connecting, and waiting for a pooled connection", ge=1)
    statement_timeout_ms: int = _setting(5000, "a statement running longer is cancelled (PostgreSQL)", ge=1)
    pool_size: int = _setting(2, "pooled connections per process, plus as many overflow ones", ge=1)
    pool_recycle_seconds: int = _setting(300, "older connections are replaced", ge=1)
    indicators_wait_seconds: float = _setting(
        1.0, "the longest a request waits for a read of socio_eco before the last good table (or 503)", gt=0)
    indicators_max_staleness_seconds: float = _setting(
        3600.0, "while socio_eco cannot be read, indicators read this recently are still used; "
        "0: 503 at once", ge=0)
    max_body_bytes: int = _setting(8 * 1024 * 1024, "bigger bodies get 413 before they are read", ge=1024)
    max_rows: int = _setting(10_000, "more rows per request get 413 before they are parsed", ge=1)
    max_reason_rows: int = _setting(
        1000, "more rows in a request asking for reason codes get 413: each row costs about 0.6 ms "
        "of exact TreeSHAP, so 1000 rows take about 0.7 s", ge=1)
    max_in_flight: int = _setting(
        32, "requests scored at once (a body still arriving holds no slot); more get 503 at once", ge=1)
    request_timeout_seconds: float = _setting(10.0, "a request not answered by then gets 504", gt=0)
    shutdown_timeout_seconds: float = _setting(
        20.0, "on SIGTERM, the whole time to exit: requests in flight get all but the last "
        f"{SHUTDOWN_RESERVE_SECONDS:g} s, writing what is queued the rest (below the pod's grace period)",
        ge=0)
    model_uri: str = _setting(
        "model", "the model `chaos serve` serves: a directory or an MLflow URI (models:/chaos-appetence/7)",
        min_length=1)
    registered_model: str = _setting(
        "chaos-appetence", "the environment's registered model in the MLflow registry: each environment "
        "has its own (the overlays: chaos-appetence-staging, chaos-appetence-production)", min_length=1)
    gate_holdout_months: int = _setting(
        1, "the newest months of contacts the gate judges on, which neither version learned from",
        ge=1, le=12)
    gate_max_auc_drop: float = _setting(
        0.01, "the gate refuses a candidate whose ROC AUC on the holdout is, with 95% confidence, lower "
        "than the current version's by more than this", ge=0, le=1)
    gate_min_roc_auc: float = _setting(
        0.6, "with no current version, the candidate's ROC AUC on the holdout must not be below this "
        "with 95% confidence", ge=0, le=1)
    api_keys_file: str = _setting(  # pragma: allowlist secret (a setting's name)
        "", "the API keys file (ids and hashes, `chaos keys create`); empty: every client is let in")
    tls_cert_file: str = _setting("", "the PEM certificate; with the key, only HTTPS is served")
    tls_key_file: str = _setting("", "the PEM private key of tls_cert_file (both, or neither)")
    tls_reload_seconds: float = _setting(
        60.0, "how often the TLS files are checked; a renewed pair serves new connections without a restart",
        gt=0)
    header_timeout_seconds: float = _setting(
        10.0, "a connection without a complete request head by then is closed (408)", gt=0)
    body_timeout_seconds: float = _setting(
        20.0, "a request body not received whole this long after its head gets 408 and the connection "
        "is closed", gt=0)
    max_connections: int = _setting(
        1000, "open connections; past them new requests get 503 (at least max_in_flight)", ge=1)
    metrics_port: int = _setting(
        0, "GET /metrics on its own port (the pods: 9090); 0: on the main port, behind the API keys",
        ge=0, le=65535)
    sentry_dsn: str = _setting("", "unexpected errors to Sentry, stripped of customer data; empty: none sent")
    environment: str = _setting("local", "Sentry's environment: develop, staging or master in the pods")
    prediction_log: bool = _setting(
        False, "every row scored, to PostgreSQL (predictions), off the request path (on in the overlays)")
    prediction_log_url: str = _setting("", "the prediction log's database; empty: database_url")
    prediction_log_queue_rows: int = _setting(
        100_000, "rows waiting to be written; past them rows are dropped and counted, never waited for", ge=1)
    prediction_log_retention_days: int = _setting(90, "older logged rows are purged", ge=1)
    monitor_min_roc_auc: float = _setting(
        0.6, "`chaos monitor` exits 1 when a month's live ROC AUC (scores against outcomes) falls below this",
        ge=0, le=1)
    monitor_max_calibration_error: float = _setting(
        0.1, "`chaos monitor` exits 1 when a month's mean appetence is off its observed subscription rate "
        "by more than this", ge=0, le=1)
    monitor_min_rows: int = _setting(
        100, "`chaos monitor` judges a month only with at least this many outcomes", ge=1)
    drift_share_threshold: float = _setting(
        0.25, "`chaos drift` exits 1 when more than this share of the features drifted", ge=0, le=1)
    drift_min_rows: int = _setting(
        1000, "`chaos drift` refuses to judge a period with fewer rows scored", ge=1)
    predict_threads: int = _setting(
        0, "threads the compiled trees spread a batch over; 0: the CPUs this process may run on", ge=0, le=64)

    @field_validator("database_url")
    @classmethod
    def _a_url(cls, value: str) -> str:
        try:
            make_url(value)
        except Exception:  # SQLAlchemy raises ArgumentError; never echo the URL itself
            raise ValueError("database_url is not a valid SQLAlchemy URL") from None
        return value

    @model_validator(mode="after")
    def _together(self) -> Settings:
        if self.max_connections < self.max_in_flight:
            raise ValueError(f"max_connections is out of range: {self.max_connections!r} "
                             f"(at least max_in_flight, {self.max_in_flight})")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both, or neither")
        return self

    @classmethod
    def checked(cls, values: Mapping[str, Any], from_text: bool = False) -> Settings:
        """Settings from ``values``, or ConfigError naming the first problem; ``from_text`` (the
        environment, a YAML file): numbers and booleans are parsed from text."""
        try:
            return cls.model_validate(dict(values), strict=not from_text)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None

    def replaced(self, **changes: Any) -> Settings:
        """A copy with ``changes``, validated like any other."""
        return self.checked({**self.model_dump(), **changes})

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


# Environment variable for each setting: CHAOS_ and its name in capitals.
ENV_VARS = {name: f"CHAOS_{name.upper()}" for name in Settings.model_fields}
TYPE_ERRORS = ("_parsing", "_type")


def _explain(error: ValidationError) -> str:
    """The first problem, naming the setting and never quoting a URL or a secret."""
    first = error.errors(include_url=False, include_input=False)[0]
    name = ".".join(str(part) for part in first["loc"]) or "settings"
    if first["type"] == "value_error":  # our validators' own messages
        return str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"unknown setting {name}"
    if first["type"].endswith(TYPE_ERRORS):
        field = Settings.model_fields.get(name)
        kind = getattr(field.annotation, "__name__", "?") if field else "?"
        return f"{name} must be of type {kind}"
    field = Settings.model_fields.get(name)
    if field is None or field.annotation not in (int, float):
        return f"{name} is out of range"
    given = error.errors(include_url=False)[0].get("input")  # a number's own text: safe to show
    return f"{name} is out of range: {given} (must be {_range(field)})"


def _range(field: Any) -> str:
    """The bounds of a setting, as its Field declares them: ">= 0", "> 0", "0..1"."""
    bound = {name: getattr(m, name) for m in field.metadata
             for name in ("ge", "gt", "le", "min_length") if hasattr(m, name)}
    if "le" in bound:
        return f"{bound.get('ge', '')}..{bound['le']}"
    if "ge" in bound:
        return f">= {bound['ge']}"
    if "gt" in bound:
        return f"> {bound['gt']}"
    return "not empty" if "min_length" in bound else "any"


def settings_table() -> str:
    """docs/operations.md's table of the settings (bench/render.py writes it there)."""
    lines = ["| variable | YAML key | type | range | default | meaning |", "|---|---|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = f"`{default}`" if default not in ("", None) else "empty"
        kind = getattr(field.annotation, "__name__", str(field.annotation))
        key = "`database`" if name == "database_url" else f"`{name}`"
        lines.append(f"| `{ENV_VARS[name]}` | {key} | {kind} | {_range(field)} | {shown} "
                     f"| {field.description} |")
    return "\n".join(lines)


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
    unknown = set(values) - set(Settings.model_fields)
    if unknown:
        raise ConfigError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_path := env.get(CONFIG_FILE_VAR):
        values.update(_read_yaml(Path(config_path)))
    for name, var in ENV_VARS.items():
        if var in env and env[var] != "":
            values[name] = env[var]
    return Settings.checked(values, from_text=True)
