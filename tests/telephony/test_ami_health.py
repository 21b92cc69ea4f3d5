"""/healthz reports the AMI connection; Asterisk being away degrades it but keeps it 200."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from calltracker.app import create_app
from calltracker.settings import Settings

from .ami_server import AmiReplayServer
from .app_support import Client, with_ami
from .conftest import trace

pytestmark = pytest.mark.parametrize("mode", ["embedded"], indirect=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def health_once(
    client: Client, ready: Callable[[dict[str, Any]], bool]
) -> tuple[int, dict[str, Any]]:
    """GET /healthz until `ready(ami check)` (the listener works in the background)."""
    deadline = time.monotonic() + 5
    while True:
        resp = await client.get("/healthz")
        body: dict[str, Any] = await resp.json()
        if ready(body["checks"]["ami"]) or time.monotonic() > deadline:
            return resp.status, body
        await asyncio.sleep(0.05)


async def test_asterisk_unreachable_is_reported_but_the_server_stays_in_service(
    settings: Settings, tmp_path: Path, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(create_app(with_ami(settings, free_port(), tmp_path)))
    status, body = await health_once(client, lambda ami: bool(ami.get("last_error")))
    ami = body["checks"]["ami"]
    assert status == 200 and body["status"] == "degraded"
    assert (ami["ok"], ami["configured"], ami["connected"]) == (False, True, False)
    assert "connect failed" in ami["last_error"] and ami["since"]
    assert body["checks"]["database"]["ok"] is True


async def test_a_connected_listener_reports_ok(
    settings: Settings, tmp_path: Path, aiohttp_client: Any
) -> None:
    async with AmiReplayServer.from_trace(trace("busy"), hold=True) as server:
        client = await aiohttp_client(create_app(with_ami(settings, server.port, tmp_path)))
        status, body = await health_once(client, lambda ami: bool(ami.get("connected")))
    ami = body["checks"]["ami"]
    assert status == 200
    assert (ami["ok"], ami["connected"], ami["configured"]) == (True, True, True)
    assert ami["since"] and ami["facts_waiting"] == 0


async def test_without_ami_the_check_says_so(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["checks"]["ami"] == {"ok": True, "configured": False}
