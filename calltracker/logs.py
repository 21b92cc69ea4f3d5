"""Log lines as key=value text (the default) or one JSON object a line (CALLTRACKER_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

KV_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s {worker}%(message)s"
# Our messages are key=value pairs already ("event=call_ended linkedid=... status=...");
# values logged with %r come quoted, and may hold spaces.
PAIR = re.compile(r"""(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S*)""")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


class JsonFormatter(logging.Formatter):
    """One object a line: time, level, logger, each key=value of the message, the message."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if self._worker is not None:
            out["worker"] = self._worker
        for key, value in PAIR.findall(message):
            out.setdefault(key, _unquote(value))
        out["message"] = message
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str, fmt: str = "kv", worker: int | None = None) -> None:
    """Log to stderr at `level`; `worker` tags every line of a `serve --workers` process.

    Like logging.basicConfig, it leaves a root logger that has handlers alone (pytest's),
    except in a worker, which replaces what the CLI set up before it knew its number.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        tag = f"worker={worker} " if worker is not None else ""
        handler.setFormatter(logging.Formatter(KV_FORMAT.format(worker=tag)))
    logging.basicConfig(level=level, handlers=[handler], force=worker is not None)
    # aiosqlite logs every statement with its parameters at DEBUG: integration secrets too.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
