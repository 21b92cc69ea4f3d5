"""Signed recording links: the file for a valid link, 403 for a tampered or expired one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from calltracker.db.models import Call
from calltracker.keys import sessionmaker_key
from calltracker.settings import Secret, Settings
from calltracker.telephony import recording_links
from tests.conftest import Seeded

Client = TestClient[Any, Any]
AUDIO = b"ID3\x03\x00fake mp3 frames"
# Refusals are decided before the database is asked: one backend is enough for them.
embedded_only = pytest.mark.parametrize("mode", ["embedded"], indirect=True)


async def add_call(client: Client, seeded: Seeded, recording: str) -> int:
    async with client.app[sessionmaker_key].begin() as session:
        call = Call(
            linkedid=f"1772879100.{len(recording)}{time.monotonic_ns()}",
            site_id=seeded.site_id,
            tracking_number="+74951230001",
            caller="+79991234567",
            started_at=datetime.now(UTC) - timedelta(minutes=5),
            ended_at=datetime.now(UTC) - timedelta(minutes=3),
            status="answered",
            recording=recording,
        )
        session.add(call)
        await session.flush()
        return call.id


def path_of(url: str) -> str:
    return url.removeprefix(Settings().public_url)


@pytest.fixture(name="recorded")
async def recorded_fixture(client: Client, seeded: Seeded, settings: Settings) -> int:
    target = settings.recordings_dir / "2026" / "11" / "call.mp3"
    target.parent.mkdir(parents=True)
    target.write_bytes(AUDIO)
    return await add_call(client, seeded, "2026/11/call.mp3")


async def test_a_valid_link_serves_the_file_without_credentials(
    client: Client, settings: Settings, recorded: int
) -> None:
    url = recording_links.recording_url(settings, recorded, int(time.time()) + 3600)
    assert url.startswith(f"{settings.public_url}/recordings/{recorded}.mp3?expires=")

    resp = await client.get(path_of(url))

    assert resp.status == 200
    assert await resp.read() == AUDIO
    assert resp.headers["Content-Type"] == "audio/mpeg"


@embedded_only
async def test_a_tampered_link_is_403(client: Client, settings: Settings, recorded: int) -> None:
    expires = int(time.time()) + 3600
    good = recording_links.signature(settings.secret_key, recorded, expires)
    bad_sig = good[:-1] + ("0" if good[-1] != "0" else "1")
    for query in (
        f"expires={expires}&sig={bad_sig}",  # signature changed
        f"expires={expires + 1}&sig={good}",  # expiry pushed out
        f"expires={expires}",  # no signature
        f"expires=soon&sig={good}",
    ):
        resp = await client.get(f"/recordings/{recorded}.mp3?{query}")
        assert resp.status == 403, query
    # Another call's link does not open this call.
    other = recording_links.signature(settings.secret_key, recorded + 1, expires)
    resp = await client.get(f"/recordings/{recorded}.mp3?expires={expires}&sig={other}")
    assert resp.status == 403


@embedded_only
async def test_an_expired_link_is_403(client: Client, settings: Settings, recorded: int) -> None:
    url = recording_links.recording_url(settings, recorded, int(time.time()) - 1)

    resp = await client.get(path_of(url))

    assert resp.status == 403
    assert (await resp.json())["error"] == "link_expired"


@embedded_only
async def test_a_link_signed_with_another_servers_key_is_403(client: Client, recorded: int) -> None:
    other = Settings(secret_key=Secret("another-server-key"))
    url = recording_links.recording_url(other, recorded, int(time.time()) + 3600)

    assert (await client.get(path_of(url))).status == 403


@embedded_only
async def test_a_recording_path_outside_the_directory_is_not_served(
    client: Client, seeded: Seeded, settings: Settings
) -> None:
    secret = settings.recordings_dir.parent / "secret.mp3"
    secret.write_bytes(b"not for you")
    call_id = await add_call(client, seeded, "../secret.mp3")
    url = recording_links.recording_url(settings, call_id, int(time.time()) + 3600)

    resp = await client.get(path_of(url))

    assert resp.status == 404


def test_a_call_without_a_recording_gets_no_link() -> None:
    call = Call(id=5, recording="", started_at=datetime.now(UTC))
    now = datetime.now(UTC)
    assert (
        recording_links.call_recording_url(Settings(), call, ttl=timedelta(days=1), now=now) == ""
    )
