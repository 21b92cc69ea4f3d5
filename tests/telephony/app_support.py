"""The real app wired to a replaying AMI server: visits made through the API, calls read back."""

from __future__ import annotations

import asyncio
import math
import struct
import time
import wave
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from calltracker.cli.main import main
from calltracker.db.models import Call, Site
from calltracker.keys import ami_key, catalog_key, pools_key, sessionmaker_key
from calltracker.settings import AmiSettings, Secret, Settings
from number_pool.memory import MemoryPool

from .conftest import eventually, trace

Client = TestClient[Any, Any]
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
ORIGIN = "https://shop.example.ru"
# The directory the lab's MixMonitor wrote to (MIXMONITOR_FILENAME in every trace).
LAB_RECORDINGS = "/tmp/asterisk-rec"


def with_ami(settings: Settings, port: int, asterisk_recordings: Path, **ami: Any) -> Settings:
    """The test settings plus AMI on the replay server, and the lab's recordings mapped to a
    local folder (CALLTRACKER_ASTERISK_RECORDINGS_DIR=/tmp/asterisk-rec=<folder>)."""
    ami.setdefault("reconnect_max_seconds", 0.2)
    return replace(
        settings,
        ami=AmiSettings(host="127.0.0.1", port=port, secret=Secret("calltracker"), **ami),
        asterisk_recordings_dir=f"{LAB_RECORDINGS}={asterisk_recordings}",
    )


async def visit(client: Client, campaign: str, keyword: str = "sofa") -> dict[str, Any]:
    """A paid visit through the public API; the answer names the number it now holds."""
    url = (
        f"https://shop.example.ru/?utm_source=yandex&utm_medium=cpc&utm_campaign={campaign}"
        f"&utm_term={keyword}"
    )
    resp = await client.post(
        "/api/v1/visits",
        json={"site_key": "shop", "url": url},
        headers={"User-Agent": BROWSER_UA, "Origin": ORIGIN},
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def set_target_rule(app: web.Application, min_talk_seconds: int) -> None:
    async with app[sessionmaker_key].begin() as session:
        site = await session.scalar(select(Site).where(Site.key == "shop"))
        assert site is not None
        site.target_min_talk_seconds = min_talk_seconds
    await app[catalog_key].refresh()


async def stored_calls(app: web.Application) -> list[Call]:
    async with app[sessionmaker_key]() as session:
        return list((await session.scalars(select(Call).order_by(Call.linkedid))).all())


async def wait_for_ended_calls(
    app: web.Application, count: int, timeout: float = 10.0
) -> list[Call]:
    """The call rows once `count` of them have ended (no longer ringing)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await stored_calls(app)
        if sum(1 for c in rows if c.status != "ringing") >= count:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {count} ended calls; have {rows!r}")
        await asyncio.sleep(0.05)


async def wait_until_drained(app: web.Application) -> None:
    listener = app[ami_key]
    await eventually(lambda: listener.metrics()["queue_depth"] == 0, what="an empty queue")


def write_tone(path: Path, seconds: float = 3.0, rate: int = 8000) -> None:
    """What the lab's answered calls recorded: a 440 Hz tone, 8 kHz 16-bit mono."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)


def write_header_only(path: Path) -> None:
    """What MixMonitor leaves for a call without media: a 44-byte WAV header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
    assert path.stat().st_size == 44


def block_index(scenario: str, event: str, **match: str) -> int:
    """Index in a replay server's stream just after the first matching block."""
    stream = trace(scenario).stream
    return 1 + next(
        i
        for i, b in enumerate(stream)
        if b.event == event and all(b.headers.get(k) == v for k, v in match.items())
    )


def point_cli_at(monkeypatch: Any, settings: Settings, workdir: Path) -> None:
    """Environment for `calltracker ...` run in this process: the test's database and Redis,
    no AMI unless the test sets it, and no stray .env."""
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("CALLTRACKER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CALLTRACKER_REDIS_URL", settings.redis_url.reveal())
    monkeypatch.setenv("CALLTRACKER_REDIS_PREFIX", settings.redis_prefix)
    monkeypatch.setenv("CALLTRACKER_RECORDINGS_DIR", str(settings.recordings_dir))
    for name in ("AMI_HOST", "AMI_PORT", "AMI_SECRET", "ASTERISK_RECORDINGS_DIR"):
        monkeypatch.delenv(f"CALLTRACKER_{name}", raising=False)


async def run_cli(*args: str) -> int:
    """The CLI's main() in a thread: it runs its own event loop, as from a shell."""
    return await asyncio.to_thread(main, list(args))


async def flush_leases(app: web.Application) -> None:
    """The embedded pool journals leases to the DB about once a second; the CLI reads that."""
    pools = app[pools_key]
    if isinstance(pools, MemoryPool):
        await pools.flush()
