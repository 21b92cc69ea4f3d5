"""`calltracker user add | passwd | token | list` and the demo's admin login."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from calltracker.accounts import users
from calltracker.cli.main import main
from calltracker.db.engine import create_engine, create_sessionmaker


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ct.db"
    monkeypatch.setenv("CALLTRACKER_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.chdir(tmp_path)
    assert main(["migrate"]) == 0
    return path


def check_login(db: Path, username: str, password: str) -> str | None:
    async def work() -> str | None:
        engine = create_engine(f"sqlite:///{db}")
        try:
            async with create_sessionmaker(engine).begin() as session:
                user = await users.authenticate(session, username, password)
                return user.role if user else None
        finally:
            await engine.dispose()

    return asyncio.run(work())


def test_user_add_reads_the_password_from_stdin(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert main(["user", "add", "Anna", "--role", "marketer", "--password-stdin"]) == 0
    assert "anna (marketer)" in capsys.readouterr().out
    assert check_login(db, "anna", "a long password") == "marketer"


def test_user_passwd_sets_a_new_password(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("first password\n"))
    main(["user", "add", "anna", "--role", "operator", "--password-stdin"])
    monkeypatch.setattr("sys.stdin", io.StringIO("second password\n"))
    assert main(["user", "passwd", "anna", "--password-stdin"]) == 0
    assert check_login(db, "anna", "first password") is None
    assert check_login(db, "anna", "second password") == "operator"


def test_a_short_password_is_refused(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "add", "anna", "--role", "admin", "--password-stdin"]) == 1
    assert "too short" in capsys.readouterr().err


def test_user_token_prints_a_token_for_the_user(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    main(["user", "add", "anna", "--role", "marketer", "--password-stdin"])
    assert main(["user", "token", "anna", "--name", "sheets"]) == 0
    out = capsys.readouterr().out
    assert "(marketer, anna:sheets)" in out
    assert out.strip().splitlines()[-1].startswith("ct_")


def test_demo_creates_an_admin_login_once(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "console login" in x)
    password = line.rsplit("password ", 1)[1]
    assert check_login(db, "admin", password) == "admin"
    assert main(["demo"]) == 0
    assert "console user 'admin' exists" in capsys.readouterr().out
    assert check_login(db, "admin", password) == "admin"
