"""Settings: typed, read once, secrets hidden, bad values named."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from calltracker.settings import Settings, SettingsError, describe


def test_defaults_are_the_embedded_mode() -> None:
    s = Settings.from_env({})
    assert s.database_url.startswith("sqlite")
    assert not s.uses_redis
    assert not s.ami.enabled
    assert (s.host, s.port) == ("127.0.0.1", 8080)


def test_values_are_parsed_and_typed() -> None:
    s = Settings.from_env(
        {
            "CALLTRACKER_PORT": "9000",
            "CALLTRACKER_REDIS_URL": "redis://:pw@127.0.0.1:6379/0",
            "CALLTRACKER_TRUST_FORWARDED_FOR": "yes",
            "CALLTRACKER_AMI_HOST": "pbx.local",
            "CALLTRACKER_AMI_SECRET": "s3cret",
        }
    )
    assert s.port == 9000 and s.uses_redis and s.trust_forwarded_for
    assert s.ami.enabled and s.ami.secret.reveal() == "s3cret"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CALLTRACKER_PORT", "eighty"),
        ("CALLTRACKER_PORT", "70000"),
        ("CALLTRACKER_VISIT_RATE_PER_MINUTE", "0"),
        ("CALLTRACKER_TRUST_FORWARDED_FOR", "maybe"),
        ("CALLTRACKER_LOG_LEVEL", "LOUD"),
        ("CALLTRACKER_PUBLIC_URL", "ftp://x"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_secrets_never_show_in_repr_or_the_startup_description() -> None:
    s = Settings.from_env(
        {
            "CALLTRACKER_SECRET_KEY": "top-secret-key",
            "CALLTRACKER_AMI_SECRET": "ami-password",
            "CALLTRACKER_REDIS_URL": "redis://:redis-password@127.0.0.1/0",
            "CALLTRACKER_DATABASE_URL": "postgresql://ct:db-password@127.0.0.1/ct",
        }
    )
    shown = repr(s) + str(describe(s))
    for secret in ("top-secret-key", "ami-password", "redis-password", "db-password"):
        assert secret not in shown


def test_a_bad_secret_value_is_not_echoed(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"CALLTRACKER_SECRET_KEY": " "})  # blank: falls back to default
        Settings.from_env({"CALLTRACKER_AMI_PORT": "x", "CALLTRACKER_AMI_SECRET": "hunter2"})
    assert "hunter2" not in str(err.value)


def test_the_env_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env"
    env.write_text('# comment\nCALLTRACKER_PORT=9100\nexport CALLTRACKER_HOST="0.0.0.0"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CALLTRACKER_PORT", "9200")
    s = Settings.from_env()
    assert (s.host, s.port) == ("0.0.0.0", 9200)


def test_a_malformed_env_file_line_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("CALLTRACKER_PORT=1\nnot a setting\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match=r"\.env:2"):
        Settings.from_env()


def test_logging_a_settings_object_hides_secrets(caplog: pytest.LogCaptureFixture) -> None:
    s = Settings.from_env({"CALLTRACKER_AMI_SECRET": "ami-password"})
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("settings %s %r", s, s.ami)
    assert "ami-password" not in caplog.text
