"""Log formats (key=value, JSON) and `calltracker serve --workers` refusing what cannot work."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from calltracker.cli.main import main
from calltracker.logs import KV_FORMAT, JsonFormatter


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("calltracker.test", logging.WARNING, __file__, 1, message, args, None)


def test_json_lines_carry_each_key_value_of_the_message_as_a_field() -> None:
    line = JsonFormatter(worker=2).format(
        record(
            "event=call_ended linkedid=%s status=%s error=%r", "1795342603.59", "answered", "x y"
        )
    )
    data = json.loads(line)
    assert data["event"] == "call_ended"
    assert data["linkedid"] == "1795342603.59"
    assert data["error"] == "x y"  # a quoted value keeps its spaces
    assert (data["level"], data["logger"], data["worker"]) == ("WARNING", "calltracker.test", 2)
    assert data["message"].startswith("event=call_ended ")


def test_json_lines_keep_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = record("event=failed")
        rec.exc_info = sys.exc_info()
    assert "RuntimeError: boom" in json.loads(JsonFormatter().format(rec))["exception"]


def test_key_value_lines_name_the_worker() -> None:
    formatter = logging.Formatter(KV_FORMAT.format(worker="worker=1 "))
    assert "level=WARNING logger=calltracker.test worker=1 event=x" in formatter.format(
        record("event=x")
    )


def test_serve_refuses_several_workers_without_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.delenv("CALLTRACKER_REDIS_URL", raising=False)
    monkeypatch.setenv("CALLTRACKER_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    assert main(["serve", "--workers", "2", "--no-migrate"]) == 1
    assert "CALLTRACKER_REDIS_URL" in capsys.readouterr().err
    assert main(["serve", "--workers", "0", "--no-migrate"]) == 1
    assert "--workers must be 1 or more" in capsys.readouterr().err
