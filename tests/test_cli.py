"""The calltracker command as an admin uses it: demo, catalog, tokens, clear errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from calltracker.cli.main import main
from calltracker.db.migrate import alembic_config


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ct.db"
    monkeypatch.setenv("CALLTRACKER_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.chdir(tmp_path)
    assert main(["migrate"]) == 0
    return path


def test_demo_creates_the_demo_site_and_prints_a_token(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "key=demo" in out and "20 numbers" in out and "admin API token" in out
    assert main(["number", "list", "--site", "demo"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("\tpool\t1\t") == 20
    assert listing.count("\tstatic\t") == 2
    assert "billboard/outdoor/tverskaya-2026" in listing


def test_demo_twice_does_not_duplicate(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert main(["demo"]) == 0
    assert "demo site exists" in capsys.readouterr().out
    main(["site", "list"])
    assert capsys.readouterr().out.count("\tdemo\t") == 1


def test_an_invalid_number_is_refused_with_the_value(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["site", "add", "shop", "--default-number", "+74950000000", "--domain", "shop.ru"])
    assert main(["pool", "add", "shop", "+74951112233", "12-34"]) == 1
    assert "'12-34'" in capsys.readouterr().err


def test_a_static_number_for_a_billboard(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["site", "add", "shop", "--default-number", "+74950000000"])
    assert (
        main(
            [
                "static",
                "add",
                "shop",
                "8 495 200-00-09",
                "--source",
                "billboard",
                "--medium",
                "outdoor",
                "--campaign",
                "tverskaya-2026",
            ]
        )
        == 0
    )
    assert "+74952000009 -> billboard / outdoor / tverskaya-2026" in capsys.readouterr().out


def test_a_bad_setting_exits_with_its_name(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLTRACKER_PORT", "http")
    assert main(["site", "list"]) == 2
    assert "CALLTRACKER_PORT" in capsys.readouterr().err


def test_token_create_and_revoke(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "--role", "marketer", "--name", "reports"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("ct_")
    assert main(["token", "revoke", "1"]) == 0
    assert main(["token", "revoke", "1"]) == 1


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_command_on_a_database_never_migrated_refuses_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new.db"
    monkeypatch.setenv("CALLTRACKER_DATABASE_URL", f"sqlite:///{path}")
    assert main(["site", "list"]) == 1
    assert "no calltracker schema yet: run `calltracker migrate`" in capsys.readouterr().err
    assert _tables(path) == set()  # only `migrate` and `serve` create the schema


def test_a_command_on_an_older_schema_refuses_instead_of_migrating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    monkeypatch.setenv("CALLTRACKER_DATABASE_URL", f"sqlite:///{path}")
    [first] = ScriptDirectory.from_config(alembic_config("")).get_bases()
    assert main(["migrate", first]) == 0
    before = _tables(path)
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert f"schema is at {first}" in err and "run `calltracker migrate`" in err
    assert _tables(path) == before
    assert main(["migrate"]) == 0
    assert main(["demo"]) == 0
