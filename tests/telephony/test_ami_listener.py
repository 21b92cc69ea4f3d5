"""The real AmiListener over real TCP and real panoramisk, against the replaying AMI server."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Mapping

import pytest

from calltracker.settings import AmiSettings
from calltracker.telephony.ami import AmiListener
from calltracker.telephony.calls import (
    CallAnswered,
    CallFact,
    CallStarted,
    CallStatus,
    CallTracker,
)
from calltracker.telephony.events import parse_block

from .ami_server import AmiReplayServer, concat_blocks
from .conftest import (
    EXPECTED,
    FactLog,
    MakeListener,
    assert_matches,
    eventually,
    is_tracked,
    new_tracker,
    trace,
)
from .traces import SCENARIOS, TraceBlock


def block_index(scenario: str, event: str, **match: str) -> int:
    """Index in the server's stream just after the first matching block."""
    stream = trace(scenario).stream
    return 1 + next(
        i
        for i, b in enumerate(stream)
        if b.event == event and all(b.headers.get(k) == v for k, v in match.items())
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_accounted(listener: AmiListener) -> None:
    m = listener.metrics()
    assert m["events_received"] == m["events_processed"] + m["events_dropped"] + m["queue_depth"]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_listener_emits_each_recorded_call_exactly_right(
    scenario: str, make_listener: MakeListener
) -> None:
    async with AmiReplayServer.from_trace(trace(scenario)) as server:
        sink = FactLog()
        listener = await make_listener(server.port, sink)
        want = EXPECTED[scenario]
        await eventually(lambda: len(sink.ended) >= len(want), what="CallEnded")
        await eventually(server.finished.is_set, what="the whole trace streamed")
        await eventually(lambda: listener.metrics()["queue_depth"] == 0)
    ended = sorted(sink.ended, key=lambda e: e.linkedid)
    assert len(ended) == len(want)
    for got, expected in zip(ended, want, strict=True):
        assert_matches(got, expected)
        assert not got.reconstructed
    assert not listener.oddities
    assert listener.metrics()["events_dropped"] == 0
    assert_accounted(listener)


async def test_listener_uses_receive_time_when_events_have_no_timestamp(
    make_listener: MakeListener,
) -> None:
    # Recorded pace, 4x faster, no Timestamp header: durations come from our own clock.
    server = AmiReplayServer.from_trace(trace("answered"), speed=4.0, timestamps=False)
    async with server:
        sink = FactLog()
        await make_listener(server.port, sink)
        await eventually(lambda: len(sink.ended) == 1, timeout=5, what="CallEnded")
    (ended,) = sink.ended
    assert ended.wait_seconds == pytest.approx(2.006 / 4, abs=0.3)
    assert ended.talk_seconds == pytest.approx(3.503 / 4, abs=0.3)


async def test_concurrent_calls_get_their_facts_in_order(make_listener: MakeListener) -> None:
    async with AmiReplayServer.from_trace(trace("concurrent")) as server:
        sink = FactLog()
        await make_listener(server.port, sink)
        await eventually(lambda: len(sink.ended) == 2, what="two CallEnded")
    for linkedid in ("1795342642.96", "1795342642.98"):
        kinds = [type(f).__name__ for f in sink.facts if f.linkedid == linkedid]
        assert kinds == ["CallStarted", "OperatorRinging", "CallAnswered", "CallEnded"]


async def test_reconnect_mid_call_still_ends_the_call_once(make_listener: MakeListener) -> None:
    cut = block_index("answered", "DialState", Uniqueid="1795342603.60")
    server = AmiReplayServer.from_trace(trace("answered"), drop_after=cut)
    async with server:
        sink = FactLog()
        listener = await make_listener(server.port, sink)
        await eventually(lambda: len(sink.ended) == 1, what="CallEnded after reconnect")
        await eventually(server.finished.is_set, what="the whole trace streamed")
        await asyncio.sleep(0.05)  # anything duplicated would show up by now
    assert server.connections == 2 and server.logins == 2
    # The first snapshot request may die with the first connection; the one after the
    # second login is what reconciles.
    names = [a["Action"] for a in server.actions]
    assert names[names.index("Login", 1) + 1] == "CoreShowChannels"
    assert len([f for f in sink.facts if isinstance(f, CallStarted)]) == 1
    (ended,) = sink.ended
    assert_matches(ended, EXPECTED["answered"][0])
    assert ended.reconstructed  # we cannot know that nothing was lost meanwhile
    assert listener.status().connects == 2


async def test_answer_missed_while_disconnected_is_recovered_from_core_show_channels(
    make_listener: MakeListener,
) -> None:
    # Cut while 101 rings; the answer happens while we are away (never sent); after the
    # reconnect the snapshot shows the trunk channel Up and bridged with 101's leg.
    cut = block_index("answered", "DialState", Uniqueid="1795342603.60")
    answered = block_index("answered", "BridgeEnter", Uniqueid="1795342603.60")
    server = AmiReplayServer.from_trace(
        trace("answered"),
        drop_after=cut,
        lost_on_drop=answered - cut,
        stream_after_snapshot=True,
    )
    async with server:
        sink = FactLog()
        await make_listener(server.port, sink)
        await eventually(lambda: len(sink.ended) == 1, what="CallEnded after reconnect")
        await eventually(server.finished.is_set, what="the whole trace streamed")
        await asyncio.sleep(0.05)
    assert server.connections == 2
    answers = [f for f in sink.facts if isinstance(f, CallAnswered)]
    assert [a.extension for a in answers] == ["101"]
    (ended,) = sink.ended
    assert (ended.status, ended.operator, ended.reconstructed) == (CallStatus.ANSWERED, "101", True)
    assert ended.talk_seconds > 0


async def test_call_that_ended_while_disconnected_is_closed_by_the_snapshot(
    make_listener: MakeListener,
) -> None:
    stream = trace("noanswer").stream
    cut = block_index("noanswer", "DialState", Uniqueid="1795342612.67")
    server = AmiReplayServer.from_trace(
        trace("noanswer"), drop_after=cut, lost_on_drop=len(stream) - cut
    )
    async with server:
        sink = FactLog()
        await make_listener(server.port, sink)
        await eventually(lambda: len(sink.ended) == 1, what="CallEnded from the snapshot")
        await asyncio.sleep(0.05)
    (ended,) = sink.ended
    assert ended.reconstructed and ended.status is CallStatus.MISSED
    assert ended.operator == ""  # nobody answered


async def test_asterisk_down_at_start_up_is_retried_until_it_comes_up(
    make_listener: MakeListener,
) -> None:
    port = free_port()
    sink = FactLog()
    listener = await make_listener(port, sink)
    await eventually(lambda: "connect failed" in listener.status().last_error, what="an error")
    status = listener.status()
    assert not status.connected and status.since is not None and status.connects == 0
    await asyncio.sleep(0.3)  # a few more attempts, still not fatal
    assert not listener.connected
    server = AmiReplayServer.from_trace(trace("busy"))
    await server.start(port)
    try:
        await eventually(lambda: listener.connected, what="connection once Asterisk is up")
        await eventually(lambda: len(sink.ended) == 1, what="CallEnded")
    finally:
        await server.close()
    assert listener.status().connects == 1
    assert sink.ended[0].status is CallStatus.BUSY


async def test_reconnect_backoff_doubles_up_to_the_configured_cap(
    make_listener: MakeListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="calltracker.telephony.ami")
    listener = await make_listener(free_port(), FactLog(), reconnect_max_seconds=0.16)
    await eventually(lambda: caplog.text.count("ami_reconnect_scheduled") >= 6, what="six retries")
    await listener.close()
    pauses = [
        float(m) for m in re.findall(r"ami_reconnect_scheduled in_seconds=([\d.]+)", caplog.text)
    ]
    # 0.05, 0.1, then the cap, each shortened by up to 25% of jitter.
    assert 0.0375 <= pauses[0] <= 0.05 and 0.075 <= pauses[1] <= 0.1
    assert all(0.12 <= p <= 0.16 for p in pauses[2:6])


async def test_rejected_login_is_retried_reported_and_never_logs_the_secret(
    make_listener: MakeListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-Do-Not-Log"
    async with AmiReplayServer.from_trace(trace("busy")) as server:
        listener = await make_listener(server.port, FactLog(), secret=secret)
        await eventually(lambda: server.connections >= 3, what="retries")
        status = listener.status()
    assert not status.connected and status.connects == 0
    assert status.last_error == "login rejected: Authentication failed"
    assert server.logins == 0
    assert secret not in caplog.text
    assert "login rejected" in caplog.text


async def test_full_queue_drops_are_counted_logged_and_repaired(
    make_listener: MakeListener, caplog: pytest.LogCaptureFixture
) -> None:
    # The stream starts after the login snapshot, so the drops come after it too.
    server = AmiReplayServer.from_trace(trace("answered"), stream_after_snapshot=True)
    async with server:
        sink = FactLog()
        listener = await make_listener(server.port, sink, queue_size=8)
        await eventually(server.finished.is_set, what="the whole trace streamed")
        await eventually(lambda: len(sink.ended) == 1, what="CallEnded despite the drops")
        await eventually(lambda: listener.metrics()["queue_depth"] == 0)
    metrics = listener.metrics()
    assert metrics["events_dropped"] > 0
    assert metrics["backpressure_pauses"] >= 1
    assert_accounted(listener)
    assert "ami_queue_full" in caplog.text
    # Once the queue drained, a snapshot was asked for to repair what the drops broke.
    assert len(server.actions_named("CoreShowChannels")) == 2
    assert len(sink.ended) == 1


async def test_asterisk_shutdown_event_is_reported_and_reconnected(
    make_listener: MakeListener,
) -> None:
    shutdown = b"Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: True"
    stream = [*trace("busy").stream, TraceBlock(shutdown, parse_block(shutdown), 3.0)]
    async with AmiReplayServer(stream) as server:
        sink = FactLog()
        listener = await make_listener(server.port, sink)
        await eventually(lambda: server.logins >= 2, what="a login after the shutdown")
    assert listener.status().last_error == "connection lost: Asterisk shut down"
    assert [e.status for e in sink.ended] == [CallStatus.BUSY]


async def test_silent_peer_is_detected_by_ping_and_reconnected(make_listener: MakeListener) -> None:
    server = AmiReplayServer.from_trace(trace("busy"), answer_pings=False)
    async with server:
        listener = await make_listener(server.port, FactLog(), ping_interval=0.1, ping_timeout=0.1)
        await eventually(lambda: server.connections >= 2, what="a reconnect after no Pong")
        assert "no answer to Ping" in listener.status().last_error


async def test_failing_sink_is_counted_and_does_not_stop_the_consumer(
    make_listener: MakeListener,
) -> None:
    async with AmiReplayServer(concat_blocks([trace("busy"), trace("noanswer")])) as server:
        sink = FactLog()
        sink.fail_on = CallStarted
        listener = await make_listener(server.port, sink)
        await eventually(lambda: len(sink.ended) == 2, what="both calls despite the sink")
    assert listener.oddities["sink_error"] == 2
    assert not any(isinstance(f, CallStarted) for f in sink.facts)


class FlakyTracker(CallTracker):
    """A tracker with a bug that fires on one kind of event."""

    def feed(self, event: Mapping[str, str], received_at: float) -> list[CallFact]:
        if event.get("Event") == "MixMonitorStart":
            raise RuntimeError("bug on purpose")
        return super().feed(event, received_at)


async def test_event_the_tracker_chokes_on_is_counted_and_the_call_goes_on(
    make_listener: MakeListener,
) -> None:
    async with AmiReplayServer.from_trace(trace("answered")) as server:
        sink = FactLog()
        tracker = FlakyTracker("from-trunk", is_tracked)
        listener = await make_listener(server.port, sink, tracker=tracker)
        await eventually(lambda: len(sink.ended) == 1, what="CallEnded despite the bug")
    assert listener.oddities["tracker_error"] == 1
    assert_matches(sink.ended[0], EXPECTED["answered"][0])


async def test_close_stops_every_task_and_reports_disconnected(make_listener: MakeListener) -> None:
    async with AmiReplayServer.from_trace(trace("busy")) as server:
        sink = FactLog()
        listener = await make_listener(server.port, sink)
        await eventually(lambda: listener.connected)
        await listener.close()
        await listener.close()  # idempotent
    assert not listener.status().connected
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not names & {"ami-consumer", "ami-connection"}


def test_listener_refuses_settings_without_a_host() -> None:
    with pytest.raises(ValueError, match="AMI_HOST"):
        AmiListener(AmiSettings(), new_tracker(), FactLog())
