"""Acceptance: the real app, a visit, a replayed Asterisk call: the right rows, attributed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydub import AudioSegment

from calltracker.app import create_app
from calltracker.db.models import Call
from calltracker.keys import recorder_key
from calltracker.settings import Settings
from calltracker.telephony.calls import CallStarted
from tests.conftest import Seeded, seed

from .ami_server import AmiReplayServer, concat_blocks
from .app_support import (
    Client,
    block_index,
    set_target_rule,
    stored_calls,
    visit,
    wait_for_ended_calls,
    with_ami,
    write_header_only,
    write_tone,
)
from .conftest import ANSWERED, EXPECTED, Expected, eventually, trace
from .traces import SCENARIOS

Start = Callable[..., Awaitable[tuple[Client, Seeded]]]


@pytest.fixture
def asterisk_rec(tmp_path: Path) -> Path:
    """This machine's view of the lab's /tmp/asterisk-rec."""
    return tmp_path / "asterisk-rec"


@pytest.fixture
async def start(
    settings: Settings, asterisk_rec: Path, aiohttp_client: Any
) -> AsyncIterator[Start]:
    """Start the app against a held replay server and seed a site whose pool holds `dids`.

    `settings` first: its database then outlives the app, which is closed before it is dropped.
    """
    servers: list[AmiReplayServer] = []

    async def start(server: AmiReplayServer, dids: tuple[str, ...]) -> tuple[Client, Seeded]:
        await server.start()
        servers.append(server)
        client = await aiohttp_client(create_app(with_ami(settings, server.port, asterisk_rec)))
        seeded = await seed(client.app, numbers=tuple("+" + d for d in dids))
        await set_target_rule(client.app, 3)  # the traces talk 3 s: make that a target call
        return client, seeded

    yield start
    for server in servers:
        await server.close()


def record_lab_audio(asterisk_rec: Path, wanted: list[Expected]) -> None:
    """The WAVs MixMonitor left: a tone for answered calls, a bare header for the others."""
    for want in wanted:
        path = asterisk_rec / f"{want.uniqueid}.wav"
        if want.status is ANSWERED:
            write_tone(path)
        else:
            write_header_only(path)


def assert_recording(settings: Settings, call: Call, want: Expected) -> None:
    if want.status is not ANSWERED:
        assert call.recording == ""  # the header-only WAV was dropped
        return
    day = call.started_at.astimezone(UTC)
    assert call.recording == f"{day:%Y/%m/%d}/{want.linkedid}.mp3"
    head = (settings.recordings_dir / call.recording).read_bytes()[:3]
    assert head == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # MP3 tag or frame


def assert_plays_three_seconds(path: Path) -> None:
    audio = AudioSegment.from_file(path, format="mp3")
    assert audio.duration_seconds == pytest.approx(3.0, abs=0.2)


async def test_every_recorded_call_is_stored_once_attributed_to_the_visit_holding_its_number(
    start: Start, settings: Settings, asterisk_rec: Path
) -> None:
    # All six traces, one after the other, through one app: seven calls to five numbers.
    wanted = [want for scenario in SCENARIOS for want in EXPECTED[scenario]]
    record_lab_audio(asterisk_rec, wanted)
    server = AmiReplayServer(concat_blocks([trace(s) for s in SCENARIOS]), hold=True)
    dids = tuple(sorted({w.did for w in wanted}))
    client, _ = await start(server, dids)
    visits = [await visit(client, campaign=f"camp-{i}", keyword=f"kw{i}") for i in range(len(dids))]
    holder = {v["number"]: v for v in visits}
    assert sorted(holder) == ["+" + d for d in dids]  # each number held by its own visit

    server.release(epoch=datetime.now(UTC).timestamp())
    rows = await wait_for_ended_calls(client.app, len(wanted))

    assert [c.linkedid for c in rows] == [w.linkedid for w in wanted]
    callers_seen: set[str] = set()
    for call, want in zip(rows, wanted, strict=True):
        held = holder["+" + want.did]
        assert (call.tracking_number, call.caller) == ("+" + want.did, "+" + want.caller)
        assert (call.status, call.operator) == (str(want.status), want.operator), want
        assert abs(call.wait_seconds - want.wait) <= 1, (want, call.wait_seconds)
        assert abs(call.talk_seconds - want.talk) <= 1, (want, call.talk_seconds)
        assert (call.attribution, call.visit_id) == ("exact", held["visit_id"]), want
        assert (call.source, call.medium, call.campaign, call.keyword) == (
            "yandex",
            "cpc",
            held["campaign"],
            held["keyword"],
        )
        # A caller's first call is unique, later ones repeat; 3 s of talk meets the rule.
        assert call.unique is (want.caller not in callers_seen), want
        callers_seen.add(want.caller)
        assert call.target is (want.status is ANSWERED), want
        assert (call.answered_at is not None) is (want.status is ANSWERED)
        assert call.ended_at is not None and call.started_at <= call.ended_at
        assert_recording(settings, call, want)
    mp3s = sorted(settings.recordings_dir.rglob("*.mp3"), key=lambda p: p.name)
    assert [p.name for p in mp3s] == [f"{w.linkedid}.mp3" for w in wanted if w.status is ANSWERED]
    # Decoding takes an ffmpeg run each: one is enough here (test_recordings.py has more).
    assert_plays_three_seconds(mp3s[0])


async def test_a_connection_dropped_mid_call_and_restored_still_records_the_call_once(
    start: Start, asterisk_rec: Path
) -> None:
    cut = block_index("answered", "DialState", Uniqueid="1795342603.60")
    want = EXPECTED["answered"][0]
    record_lab_audio(asterisk_rec, [want])
    server = AmiReplayServer.from_trace(trace("answered"), hold=True, drop_after=cut)
    client, _ = await start(server, (want.did,))
    held = await visit(client, "spring")
    server.release(epoch=datetime.now(UTC).timestamp())
    (call,) = await wait_for_ended_calls(client.app, 1)
    await eventually(server.finished.is_set, what="the whole trace streamed")
    assert server.connections == 2  # it did drop, and the listener came back
    assert (call.linkedid, call.status, call.operator) == (want.linkedid, "answered", "101")
    assert (call.attribution, call.visit_id) == ("exact", held["visit_id"])
    assert abs(call.talk_seconds - want.talk) <= 1
    assert call.recording
    assert len(await stored_calls(client.app)) == 1


async def test_numbers_outside_the_pool_static_default_untracked_are_labelled_by_the_catalog(
    start: Start,
) -> None:
    # Four recorded calls made to other numbers: the site's billboard (static) number, its
    # default number, a number nobody tracks, and last a pooled one. Once that last one is
    # stored, every event before it was handled (one ordered consumer).
    server = AmiReplayServer(
        concat_blocks([trace(s) for s in ("answered", "noanswer", "busy", "queue")]),
        hold=True,
        rewrite={
            "74951234567": "74952000001",  # answered -> static
            "74951234568": "74950000000",  # noanswer -> default
            "74951234569": "74959999999",  # busy -> untracked
        },
    )
    client, seeded = await start(server, ("74951234570",))
    held = await visit(client, "spring")
    server.release(epoch=datetime.now(UTC).timestamp())
    rows = await wait_for_ended_calls(client.app, 3)
    got = {
        c.tracking_number: (c.status, c.attribution, c.visit_id, c.source, c.medium, c.campaign)
        for c in rows
    }
    assert got == {
        "+74952000001": ("answered", "static", None, "billboard", "outdoor", "tverskaya-2026"),
        "+74950000000": ("missed", "default", None, "", "", ""),
        "+74951234570": ("answered", "exact", held["visit_id"], "yandex", "cpc", "spring"),
    }
    assert {c.site_id for c in rows} == {seeded.site_id}


async def test_fastagi_and_the_listener_starting_one_call_at_once_make_one_row(
    client: Client,
) -> None:
    """Two writers of CallStarted for one Linkedid (FastAGI, the AMI listener, maybe in two
    workers): whichever inserts second finds the other's row and takes the earlier start."""
    await seed(client.app, numbers=("+74951234567",))
    recorder = client.app[recorder_key]
    early = datetime(2026, 11, 22, 10, 16, 43, 100_000, tzinfo=UTC)
    late = datetime(2026, 11, 22, 10, 16, 43, 140_000, tzinfo=UTC)
    facts = [
        CallStarted("1795342603.59", "74951234567", "79161234567", at, "PJSIP/zadarma-1", uid)
        for at, uid in ((late, "1795342603.59"), (early, "1795342603.59"))
    ]
    rows = await asyncio.gather(*(recorder.store(f) for f in facts))
    assert all(r is not None for r in rows)
    assert len({r.id for r in rows if r is not None}) == 1
    (call,) = await stored_calls(client.app)
    assert call.started_at == early and call.status == "ringing"
