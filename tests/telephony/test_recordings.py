"""Recordings: WAV to MP3 off the loop; empty, missing, broken ones dropped; served to users."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydub import AudioSegment
from sqlalchemy import select

from calltracker.app import create_app
from calltracker.db.models import Call
from calltracker.keys import recorder_key, sessionmaker_key
from calltracker.settings import Settings, SettingsError
from calltracker.telephony.calls import CallEnded, CallStatus
from calltracker.telephony.recordings import Outcome, RecordingStore
from tests.conftest import Seeded, seed

from .app_support import Client, write_header_only, write_tone

STARTED = datetime(2026, 11, 22, 10, 16, 43, tzinfo=UTC)
# Storage and serving do not depend on the backend: one mode keeps these fast.
embedded_only = pytest.mark.parametrize("mode", ["embedded"], indirect=True)


def ended(recording: str, linkedid: str = "1795342603.59", did: str = "74951230001") -> CallEnded:
    return CallEnded(
        linkedid=linkedid,
        did=did,
        caller="79161234567",
        started_at=STARTED,
        answered_at=STARTED.replace(second=45),
        ended_at=STARTED.replace(second=48),
        wait_seconds=2.0,
        talk_seconds=3.0,
        status=CallStatus.ANSWERED,
        dial_status="ANSWER",
        operator="101",
        recording=recording,
        uniqueid="1795342603.60",
    )


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    return tmp_path / "asterisk-rec"


@pytest.fixture
def store(tmp_path: Path, lab: Path) -> RecordingStore:
    return RecordingStore(tmp_path / "recordings", str(lab))


async def test_a_wav_becomes_a_three_second_mp3_under_the_calls_date(
    store: RecordingStore, lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tone(lab / "1795342603.60.wav")
    threads: list[str] = []
    convert = RecordingStore._convert

    def spy(self: RecordingStore, source: Path, target: Path) -> Outcome:
        threads.append(threading.current_thread().name)
        return convert(self, source, target)

    monkeypatch.setattr(RecordingStore, "_convert", spy)
    stored = await store.convert(ended("/tmp/asterisk-rec/1795342603.60.wav"))
    assert stored == "2026/11/22/1795342603.59.mp3"
    mp3 = tmp_path / "recordings" / stored
    audio = AudioSegment.from_file(mp3, format="mp3")
    assert audio.duration_seconds == pytest.approx(3.0, abs=0.2)
    assert not list(mp3.parent.glob("*.part"))
    # ffmpeg ran in a worker thread, not on the event loop's.
    assert threads and threads[0] != threading.main_thread().name
    assert store.counts == {Outcome.CONVERTED: 1}


@pytest.mark.parametrize("kind", ["header_only", "zero_length"])
async def test_a_recording_without_audio_is_dropped(
    kind: str, store: RecordingStore, lab: Path, tmp_path: Path
) -> None:
    path = lab / "1795342612.67.wav"
    if kind == "header_only":
        write_header_only(path)
    else:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    assert await store.convert(ended(f"/tmp/asterisk-rec/{path.name}")) == ""
    assert not (tmp_path / "recordings").exists()
    assert store.counts == {Outcome.EMPTY: 1}


async def test_a_missing_file_is_logged_and_counted(
    store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    assert await store.convert(ended("/tmp/asterisk-rec/nowhere.wav")) == ""
    assert store.counts == {Outcome.MISSING: 1}
    assert "event=recording_missing linkedid=1795342603.59" in caplog.text


async def test_a_file_that_is_not_audio_fails_without_raising(
    store: RecordingStore, lab: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="calltracker.telephony.recordings")
    lab.mkdir()
    (lab / "junk.wav").write_bytes(b"RIFF" + b"\x00" * 40 + b"not audio at all" * 100)
    assert await store.convert(ended("/tmp/asterisk-rec/junk.wav")) == ""
    assert store.counts == {Outcome.FAILED: 1}


def test_asterisk_paths_map_to_the_local_mount(tmp_path: Path) -> None:
    local = tmp_path / "mnt"
    by_name = RecordingStore(tmp_path, str(local))
    assert by_name.source_path("/var/spool/asterisk/monitor/2026/11/x.wav") == local / "x.wav"
    below = RecordingStore(tmp_path, f"/var/spool/asterisk/monitor={local}")
    assert below.source_path("/var/spool/asterisk/monitor/2026/11/x.wav") == local / "2026/11/x.wav"
    assert below.source_path("/var/spool/asterisk/monitor/../../../etc/passwd") is None
    assert below.source_path("/elsewhere/x.wav") is None
    assert RecordingStore(tmp_path).source_path("/tmp/a.wav") == Path("/tmp/a.wav")


def test_the_mapping_setting_is_checked_at_start_up() -> None:
    env = {"CALLTRACKER_ASTERISK_RECORDINGS_DIR": "/var/spool/asterisk/monitor=/mnt/rec"}
    assert (
        Settings.from_env(env).asterisk_recordings_dir == env["CALLTRACKER_ASTERISK_RECORDINGS_DIR"]
    )
    with pytest.raises(SettingsError, match="CALLTRACKER_ASTERISK_RECORDINGS_DIR"):
        Settings.from_env({"CALLTRACKER_ASTERISK_RECORDINGS_DIR": "relative=/mnt/rec"})


@embedded_only
async def test_a_call_whose_recording_is_missing_is_still_recorded(
    client: Client, seeded: Seeded
) -> None:
    await client.app[recorder_key].handle(ended("/tmp/asterisk-rec/gone.wav"))
    async with client.app[sessionmaker_key]() as session:
        call = await session.scalar(select(Call))
    assert call is not None
    assert (call.status, call.recording, call.tracking_number) == ("answered", "", "+74951230001")


@embedded_only
async def test_the_mp3_is_served_to_signed_in_users_only(
    aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    lab = tmp_path / "asterisk-rec"
    write_tone(lab / "1795342603.60.wav")
    app = create_app(replace(settings, asterisk_recordings_dir=f"/tmp/asterisk-rec={lab}"))
    client = await aiohttp_client(app)
    seeded = await seed(client.app)
    await client.app[recorder_key].handle(ended("/tmp/asterisk-rec/1795342603.60.wav"))
    async with client.app[sessionmaker_key]() as session:
        call = await session.scalar(select(Call))
    assert call is not None and call.recording
    url = f"/api/v1/calls/{call.id}/recording"
    assert (await client.get(url)).status == 401
    resp = await client.get(url, headers={"Authorization": f"Bearer {seeded.marketer_token}"})
    assert (resp.status, resp.headers["Content-Type"]) == (200, "audio/mpeg")
    body = await resp.read()
    assert body == (settings.recordings_dir / call.recording).read_bytes()
    # A recording path that leads out of recordings_dir through a symlink is refused.
    outside = tmp_path / "outside.mp3"
    outside.write_bytes(body)
    (settings.recordings_dir / "link.mp3").symlink_to(outside)
    async with client.app[sessionmaker_key].begin() as session:
        row = await session.get(Call, call.id)
        assert row is not None
        row.recording = "link.mp3"
    resp = await client.get(url, headers={"Authorization": f"Bearer {seeded.admin_token}"})
    assert resp.status == 404
