"""The command line: every subcommand parses, and create-user refuses unknown roles and duplicates clearly."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select

import cli
from adapters.passwords import verify_password
from db import tables as t


@pytest.fixture
def database_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'pressroom.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("PRESSROOM_ENV", raising=False)
    return url


@pytest.mark.parametrize(("argv", "handler"), [
    (["migrate"], cli.cmd_migrate),
    (["seed"], cli.cmd_seed),
    (["create-user", "alice", "--role", "manager"], cli.cmd_create_user),
    (["simulate"], cli.cmd_simulate),
    (["redis"], cli.cmd_redis),
    (["run"], cli.cmd_run),
    (["demo-logins"], cli.cmd_demo_logins),
])
def test_every_subcommand_parses_to_its_handler(argv, handler):
    assert cli.parse_args(argv).handler is handler


def test_simulate_passes_every_further_argument_to_the_simulator_verbatim():
    rest = ["--count", "5", "--rate", "2", "--url", "http://127.0.0.1:8000", "--help"]

    assert cli.parse_args(["simulate", *rest]).simulator_args == rest


def test_other_subcommands_refuse_unknown_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(["migrate", "--count", "5"])

    assert exit_.value.code == 2
    assert "unrecognized arguments: --count 5" in capsys.readouterr().err


def test_a_subcommand_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args([])

    assert exit_.value.code == 2


def test_create_user_accepts_every_staff_role():
    for role in ("qa_inspector", "ops_manager", "support_agent", "manager"):
        assert cli.parse_args(["create-user", "u", "--role", role]).role == role


def test_create_user_refuses_an_unknown_role_and_names_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["create-user", "alice", "--role", "admin", "--password", "long-enough-pw"])

    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "invalid choice: 'admin'" in err
    assert "qa_inspector" in err and "manager" in err


def test_seed_migrates_and_seeds_once(database_url, capsys):
    # given an empty database, when seeded twice
    assert cli.main(["seed"]) == 0
    first = capsys.readouterr().out
    assert cli.main(["seed"]) == 0
    second = capsys.readouterr().out

    # then the second run changes nothing and says so
    assert "seeded the demo catalogue" in first
    assert "already seeded" in second


def test_create_user_stores_an_argon2_hash_and_refuses_duplicates(database_url, capsys):
    # given a migrated and seeded database
    assert cli.main(["migrate"]) == 0
    assert cli.main(["seed"]) == 0
    capsys.readouterr()

    # when alice is created
    assert cli.main(["create-user", "alice", "--role", "ops_manager", "--password", "alice-prints-2026"]) == 0
    assert "created staff user 'alice'" in capsys.readouterr().out

    # then her row holds an argon2id hash of her password and her role
    engine = create_engine(database_url)
    with engine.connect() as conn:
        row = conn.execute(select(t.staff_users).where(t.staff_users.c.username == "alice")).one()
    engine.dispose()
    assert row.role == "ops_manager" and row.active
    assert row.password_hash.startswith("$argon2id$")
    assert verify_password(row.password_hash, "alice-prints-2026")

    # when alice is created a second time, then it is refused with a clear message
    assert cli.main(["create-user", "alice", "--role", "manager", "--password", "another-pw-2026"]) == 1
    assert "staff user 'alice' already exists" in capsys.readouterr().err

    # and so is a seeded demo username
    assert cli.main(["create-user", "quinn", "--role", "qa_inspector", "--password", "whatever-2026"]) == 1
    assert "staff user 'quinn' already exists" in capsys.readouterr().err


def test_create_user_on_an_unmigrated_database_says_to_migrate(database_url, capsys):
    assert cli.main(["create-user", "alice", "--role", "manager", "--password", "alice-prints-2026"]) == 1
    assert "run `python -m cli migrate` first" in capsys.readouterr().err


def test_create_user_refuses_a_short_password(database_url, capsys):
    assert cli.main(["migrate"]) == 0
    capsys.readouterr()

    assert cli.main(["create-user", "alice", "--role", "manager", "--password", "short"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err


def test_create_user_prompts_twice_and_refuses_when_the_passwords_differ(database_url, capsys, monkeypatch):
    # given a migrated database and an operator who types two different passwords
    assert cli.main(["migrate"]) == 0
    answers = iter(["first-password-1", "second-password-2"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(answers))

    # when create-user prompts, then nothing is created
    assert cli.main(["create-user", "alice", "--role", "manager"]) == 1
    assert "passwords differ" in capsys.readouterr().err


def test_demo_logins_lists_every_seeded_staff_user(capsys):
    assert cli.main(["demo-logins"]) == 0

    out = capsys.readouterr().out
    for username, role in (("quinn", "qa_inspector"), ("olive", "ops_manager"), ("sam", "support_agent"),
                           ("maya", "manager")):
        assert username in out and role in out


def test_settings_errors_are_reported_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("PRESSROOM_ENV", "production")
    monkeypatch.delenv("PRESSROOM_PII_KEYS", raising=False)

    assert cli.main(["demo-logins"]) == 2
    assert "PRESSROOM_PII_KEYS" in capsys.readouterr().err
