"""Fixtures for the telephony suites: recorded traces, a replaying AMI server, the real listener."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from calltracker.settings import AmiSettings, Secret
from calltracker.telephony.ami import AmiListener
from calltracker.telephony.calls import CallEnded, CallFact, CallStatus, CallTracker

from .traces import Trace, load_trace

TRACKED = frozenset({"74951234567", "74951234568", "74951234569", "74951234570", "74951234571"})
CALLER = "79161234567"


@dataclass(frozen=True)
class Expected:
    """One row of the traces README's per-scenario table."""

    linkedid: str
    did: str
    caller: str
    status: CallStatus
    dial_status: str
    operator: str  # who answered; "" when nobody did
    wait: float  # Cdr Duration - BillableSeconds (ring time)
    talk: float  # Cdr BillableSeconds
    uniqueid: str

    @property
    def recording(self) -> str:
        return f"/tmp/asterisk-rec/{self.uniqueid}.wav"


ANSWERED, MISSED, BUSY = CallStatus.ANSWERED, CallStatus.MISSED, CallStatus.BUSY
EXPECTED: dict[str, list[Expected]] = {
    "answered": [
        Expected(
            "1795342603.59", "74951234567", CALLER, ANSWERED, "ANSWER", "101", 2, 3, "1795342603.60"
        ),
    ],
    "noanswer": [
        Expected(
            "1795342612.66", "74951234568", CALLER, MISSED, "NOANSWER", "", 8, 0, "1795342612.67"
        ),
    ],
    "busy": [
        Expected("1795342623.74", "74951234569", CALLER, BUSY, "BUSY", "", 0, 0, "1795342623.75"),
    ],
    "caller_hangup": [
        Expected(
            "1795342627.82", "74951234568", CALLER, MISSED, "CANCEL", "", 3, 0, "1795342627.83"
        ),
    ],
    "queue": [
        Expected(
            "1795342633.89", "74951234570", CALLER, ANSWERED, "ANSWER", "101", 2, 3, "1795342633.90"
        ),
    ],
    "concurrent": [
        Expected(
            "1795342642.96", "74951234567", CALLER, ANSWERED, "ANSWER", "101", 2, 3, "1795342642.97"
        ),
        Expected(
            "1795342642.98",
            "74951234571",
            "79037654321",
            ANSWERED,
            "ANSWER",
            "101",
            2,
            3,
            "1795342642.99",
        ),
    ],
}


def assert_matches(ended: CallEnded, want: Expected, *, tolerance: float = 1.0) -> None:
    assert (ended.linkedid, ended.did, ended.caller) == (want.linkedid, want.did, want.caller)
    assert (ended.status, ended.dial_status) == (want.status, want.dial_status)
    assert ended.operator == want.operator
    assert ended.recording == want.recording
    assert ended.uniqueid == want.uniqueid
    assert abs(ended.wait_seconds - want.wait) <= tolerance, ended
    assert abs(ended.talk_seconds - want.talk) <= tolerance, ended
    assert (ended.answered_at is not None) == (want.status is ANSWERED)
    assert ended.started_at <= ended.ended_at


@functools.cache
def trace(name: str) -> Trace:
    return load_trace(name)


def is_tracked(exten: str) -> bool:
    return exten in TRACKED


def new_tracker(**options: Any) -> CallTracker:
    return CallTracker("from-trunk", is_tracked, **options)


def feed_all(tracker: CallTracker, events: Any) -> list[CallFact]:
    facts: list[CallFact] = []
    for at, event in events:
        facts += tracker.feed(event, at)
    return facts


def ended_of(facts: list[CallFact]) -> list[CallEnded]:
    return [f for f in facts if isinstance(f, CallEnded)]


async def eventually(
    predicate: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


class FactLog:
    """The listener's on_fact sink: records facts, optionally slow or failing."""

    def __init__(self) -> None:
        self.facts: list[CallFact] = []
        self.delay = 0.0
        self.fail_on: type | None = None

    async def __call__(self, fact: CallFact) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_on is not None and isinstance(fact, self.fail_on):
            raise RuntimeError("sink failed on purpose")
        self.facts.append(fact)

    @property
    def ended(self) -> list[CallEnded]:
        return ended_of(self.facts)


MakeListener = Callable[..., Awaitable[AmiListener]]


@pytest.fixture
async def make_listener() -> AsyncIterator[MakeListener]:
    """Start real AmiListeners (closed at teardown) against 127.0.0.1:`port`."""
    started: list[AmiListener] = []

    async def make(
        port: int,
        sink: FactLog,
        *,
        secret: str = "calltracker",
        queue_size: int = 10_000,
        reconnect_max_seconds: float = 0.2,
        tracker: CallTracker | None = None,
        **options: Any,
    ) -> AmiListener:
        settings = AmiSettings(
            host="127.0.0.1",
            port=port,
            secret=Secret(secret),
            reconnect_max_seconds=reconnect_max_seconds,
            queue_size=queue_size,
        )
        options.setdefault("reconnect_min_seconds", 0.05)
        listener = AmiListener(settings, tracker or new_tracker(), sink, **options)
        started.append(listener)
        await listener.start()
        return listener

    yield make
    for listener in started:
        await listener.close()
