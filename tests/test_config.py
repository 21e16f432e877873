import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from chaos_pyfunc.config import EMBEDDED_DATABASE_URL, ConfigError, Settings, load_settings


def test_defaults_use_the_embedded_database() -> None:
    settings = load_settings({})
    assert settings.database_url == EMBEDDED_DATABASE_URL
    assert settings.is_embedded_default
    assert settings.max_indicator_age_months == 3


def test_environment_overrides_the_yaml_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("database: sqlite:///from-yaml.db\ncache_ttl_seconds: 5\npool_size: 4\n")
    settings = load_settings({"CHAOS_CONFIG": str(config), "CHAOS_CACHE_TTL_SECONDS": "0"})
    assert settings.database_url == "sqlite:///from-yaml.db"
    assert settings.cache_ttl_seconds == 0.0
    assert settings.pool_size == 4


def test_yaml_database_parts_build_a_url_and_the_password_never_shows(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "database:\n  host: 127.0.0.1\n  port: 5432\n  name: chaos\n  user: app\n  password: s3cr%t\n"
    )
    settings = load_settings({"CHAOS_CONFIG": str(config)})
    assert settings.url.password == "s3cr%t"  # pragma: allowlist secret (the test's own fake)
    assert settings.url.database == "chaos"
    assert settings.url.drivername == "postgresql+psycopg2"
    assert "s3cr" not in settings.safe_url()
    assert "s3cr" not in repr(settings.safe_url())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- a list\n", "must hold a mapping"),
        ("database: {host: x}\n", "database.name is missing"),
        ("colour: blue\n", "unknown keys"),
        ("cache_ttl_seconds: [1\n", "not valid YAML"),
        ("pool_size: many\n", "pool_size must be of type int"),
    ],
)
def test_bad_yaml_files_are_refused_clearly(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "config.yml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings({"CHAOS_CONFIG": str(config)})


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read CHAOS_CONFIG file"):
        load_settings({"CHAOS_CONFIG": str(tmp_path / "absent.yml")})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHAOS_MAX_INDICATOR_AGE_MONTHS": "-1"}, "max_indicator_age_months is out of range"),
        ({"CHAOS_CACHE_TTL_SECONDS": "-5"}, "cache_ttl_seconds is out of range"),
        ({"CHAOS_DATABASE_URL": "not a url"}, "database_url is not a valid SQLAlchemy URL"),
        ({"CHAOS_INDICATORS_WAIT_SECONDS": "0"}, "indicators_wait_seconds is out of range"),
        ({"CHAOS_MAX_BODY_BYTES": "10"}, "max_body_bytes is out of range"),
        ({"CHAOS_MAX_IN_FLIGHT": "0"}, "max_in_flight is out of range"),
        ({"CHAOS_MAX_ROWS": "many"}, "max_rows must be of type int"),
    ],
)
def test_out_of_range_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_settings_are_immutable() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        Settings().pool_size = 10  # type: ignore[misc]


@pytest.mark.parametrize(("values", "message"), [
    ({"max_rows": "10"}, "max_rows must be of type int"),      # strict in code: no text for a number
    ({"prediction_log": 1}, "prediction_log must be of type bool"),
    ({"max_row": 10}, "unknown setting max_row"),
    ({"max_connections": 8}, "max_connections is out of range: 8 (at least max_in_flight, 32)"),
    ({"tls_cert_file": "cert.pem"}, "tls_cert_file and tls_key_file go together"),
])
def test_settings_built_in_code_are_strict(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.checked(values)
    with pytest.raises(ValidationError):
        Settings(**values)


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("off", False), ("no", False)])
def test_booleans_are_parsed_from_the_environment(raw: str, expected: bool) -> None:
    assert load_settings({"CHAOS_PREDICTION_LOG": raw}).prediction_log is expected


def test_a_bad_boolean_or_a_fraction_for_an_integer_is_refused() -> None:
    with pytest.raises(ConfigError, match="prediction_log must be of type bool"):
        load_settings({"CHAOS_PREDICTION_LOG": "maybe"})
    with pytest.raises(ConfigError, match="max_rows must be of type int"):
        load_settings({"CHAOS_MAX_ROWS": "35.5"})


def test_replaced_settings_are_validated_again() -> None:
    assert Settings().replaced(max_rows=5).max_rows == 5
    with pytest.raises(ConfigError, match="max_rows is out of range"):
        Settings().replaced(max_rows=0)


def test_the_template_sets_every_setting_to_its_default() -> None:
    """config_template.yml documents every key; apart from the database, with the defaults."""
    template = Path(__file__).resolve().parents[1] / "config_template.yml"
    loaded = load_settings({"CHAOS_CONFIG": str(template)})
    keys = {line.split(":")[0] for line in template.read_text().splitlines()
            if line and line[0].isalpha()}
    assert keys == set(Settings.model_fields) - {"database_url"} | {"database"}
    defaults = Settings()
    for name in keys - {"database"}:
        assert getattr(loaded, name) == getattr(defaults, name), name
