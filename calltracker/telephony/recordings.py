"""Call recordings: the WAV Asterisk's MixMonitor wrote, kept as an MP3 under recordings_dir."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import warnings
import wave
from collections import Counter
from enum import StrEnum
from pathlib import Path, PurePosixPath

with warnings.catch_warnings():
    # pydub imports the stdlib's audioop, deprecated since 3.11 (audioop-lts from 3.13).
    warnings.simplefilter("ignore", DeprecationWarning)
    from pydub import AudioSegment

from calltracker.settings import parse_recordings_mapping
from calltracker.telephony.calls import CallEnded

log = logging.getLogger(__name__)

# Telephone audio is 8 kHz mono: 32 kbit/s MP3 keeps speech clear at ~240 KB a minute.
MP3_BITRATE = "32k"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class Outcome(StrEnum):
    CONVERTED = "converted"
    EMPTY = "empty"  # header-only or zero-length: the call had no media (never answered)
    MISSING = "missing"  # not where Asterisk said, or outside the mapped directory
    FAILED = "failed"  # unreadable audio, or ffmpeg missing or failing


def stored_name(fact: CallEnded) -> str:
    """Where the MP3 goes, relative to recordings_dir: YYYY/MM/DD/<linkedid>.mp3 (UTC date)."""
    return f"{fact.started_at:%Y/%m/%d}/{_UNSAFE.sub('_', fact.linkedid)}.mp3"


class RecordingStore:
    """Converts each call's recording to MP3 in a worker thread; counts what it could not.

    Only the MP3 is ours: Asterisk's WAV is left where it is, for the PBX's own cleanup.
    """

    def __init__(self, recordings_dir: Path, asterisk_dir: str = "") -> None:
        self._root = recordings_dir
        self._theirs, self._ours = parse_recordings_mapping(asterisk_dir)
        self.counts: Counter[Outcome] = Counter()

    def source_path(self, asterisk_path: str) -> Path | None:
        """The file Asterisk wrote, as this machine sees it; None when outside the mapping."""
        theirs = PurePosixPath(asterisk_path)
        if self._ours is None:
            return Path(asterisk_path)
        if not self._theirs:
            return self._ours / theirs.name
        try:
            below = theirs.relative_to(self._theirs)
        except ValueError:
            return None
        if ".." in below.parts:
            return None
        return self._ours.joinpath(*below.parts)

    async def convert(self, fact: CallEnded) -> str:
        """For CallRecorder: the MP3's path relative to recordings_dir, or "" without one."""
        if not fact.recording:
            return ""
        source = self.source_path(fact.recording)
        name = stored_name(fact)
        if source is None:
            outcome = Outcome.MISSING
        else:
            # pydub runs ffmpeg and reads whole files: never on the event loop.
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(None, self._convert, source, self._root / name)
        self.counts[outcome] += 1
        if outcome is Outcome.MISSING:
            log.warning(
                "event=recording_missing linkedid=%s asterisk_path=%s local_path=%s",
                fact.linkedid,
                fact.recording,
                source,
            )
        elif outcome is Outcome.EMPTY:
            log.info("event=recording_empty linkedid=%s path=%s", fact.linkedid, source)
        elif outcome is Outcome.FAILED:
            log.error("event=recording_failed linkedid=%s path=%s", fact.linkedid, source)
        return name if outcome is Outcome.CONVERTED else ""

    def _convert(self, source: Path, target: Path) -> Outcome:
        try:
            size = source.stat().st_size
        except OSError:
            return Outcome.MISSING
        if size == 0 or _has_no_frames(source):
            return Outcome.EMPTY
        part = target.with_name(target.name + ".part")
        try:
            # File objects of our own: given paths, pydub leaves its handles open.
            with source.open("rb") as wav:
                audio = AudioSegment.from_file(wav, format=source.suffix.lstrip(".").lower())
            if len(audio) == 0:
                return Outcome.EMPTY
            target.parent.mkdir(parents=True, exist_ok=True)
            with part.open("wb+") as mp3:
                audio.export(mp3, format="mp3", bitrate=MP3_BITRATE)
            # Whole or not at all: a reader never sees a half-written MP3.
            os.replace(part, target)
        except Exception:
            log.exception("event=recording_conversion_error path=%s", source)
            with contextlib.suppress(OSError):
                part.unlink()
            return Outcome.FAILED
        return Outcome.CONVERTED


def _has_no_frames(path: Path) -> bool:
    """A WAV whose header says it holds no audio, as MixMonitor leaves for unanswered calls."""
    if path.suffix.lower() != ".wav":
        return False
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() == 0
    except (wave.Error, EOFError, OSError):
        return False  # not a plain PCM WAV (GSM in WAV...): let ffmpeg decide
