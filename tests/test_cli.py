import argparse
from pathlib import Path

import pytest
from conftest import SOCIO_ECO_CSV
from sqlalchemy import create_engine, text

from chaos_pyfunc.cli import DONE, EXIT_CODES, FAILURE, USAGE, VERDICT, build_parser, exit_codes_text, main


def test_db_init_then_load_on_postgres(pg_url: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CHAOS_DATABASE_URL", pg_url)
    assert main(["db", "init"]) == 0
    assert main(["db", "load", "socio_eco", str(SOCIO_ECO_CSV)]) == 0
    assert main(["db", "load", "socio_eco", str(SOCIO_ECO_CSV)]) == 0
    out = capsys.readouterr().out
    assert "loaded 26 rows into socio_eco" in out
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM socio_eco")).scalar_one() == 26
    engine.dispose()


def test_db_init_seeds_the_embedded_default(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAOS_DATABASE_URL", raising=False)
    monkeypatch.delenv("CHAOS_CONFIG", raising=False)
    assert main(["db", "init"]) == 0
    assert "created and seeded sqlite:///var/chaos.db" in capsys.readouterr().out
    assert main(["db", "init"]) == 0
    assert "schema ready" in capsys.readouterr().out


def test_errors_exit_2_with_a_message_and_no_password(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CHAOS_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    assert main(["db", "load", "socio_eco", str(tmp_path / "absent.csv")]) == 2
    assert "chaos: error:" in capsys.readouterr().err
    # pragma: allowlist nextline secret (a made-up password: nothing listens on port 1)
    monkeypatch.setenv("CHAOS_DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/x")
    monkeypatch.setenv("CHAOS_MAX_INDICATOR_AGE_MONTHS", "-1")
    assert main(["db", "init"]) == 2
    assert "hunter2" not in capsys.readouterr().err


def test_a_command_that_cannot_do_its_work_exits_3_not_1(monkeypatch, capsys) -> None:
    """A database away is a failure (3), never mistaken for a verdict (1) by a CronJob's alert."""
    # pragma: allowlist nextline secret (a made-up password: nothing listens on port 1)
    monkeypatch.setenv("CHAOS_DATABASE_URL", "postgresql+psycopg2://app:hunter2@127.0.0.1:1/x")
    monkeypatch.setenv("CHAOS_CONNECT_TIMEOUT_SECONDS", "1")
    assert main(["db", "init"]) == FAILURE == 3
    err = capsys.readouterr().err
    assert "chaos: failed: OperationalError (exit code 3" in err and "hunter2" not in err


def test_help_ends_with_the_exit_codes_every_command_uses() -> None:
    help_text = build_parser().format_help()
    assert help_text.endswith(exit_codes_text() + "\n")
    assert [DONE, VERDICT, USAGE, FAILURE] == sorted(EXIT_CODES) == [0, 1, 2, 3]
    for code, meaning in EXIT_CODES.items():
        assert f"  {code}  {meaning}" in help_text


COMMANDS = {"db", "train", "promote", "retrain", "export", "keys", "drift", "monitor", "score", "serve"}


def test_help_lists_every_command_with_its_own_line() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == COMMANDS  # a command added or gone: this list (and make docs)
    help_text = " ".join(parser.format_help().split())  # argparse wraps long lines
    for action in commands._choices_actions:  # each command listed with its own help sentence
        assert action.help and f"{action.dest} {action.help}" in help_text


def test_unknown_table_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["db", "load", "accounts", "x.csv"])
