"""`calltracker call simulate`: an Originate over AMI, or made-up trace-shaped events offline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from calltracker.app import create_app
from calltracker.settings import Settings
from calltracker.telephony.calls import CallEnded, CallStatus
from calltracker.telephony.synth import Outcome, SimulatedCall, events
from tests.conftest import seed

from .ami_server import AmiReplayServer
from .app_support import (
    Client,
    flush_leases,
    point_cli_at,
    run_cli,
    stored_calls,
    visit,
    with_ami,
)
from .conftest import feed_all, new_tracker, trace

LAB = {Outcome.ANSWERED: "answered", Outcome.NOANSWER: "noanswer", Outcome.BUSY: "busy"}


@pytest.mark.parametrize("outcome", list(Outcome))
def test_made_up_events_are_shaped_like_the_trace_and_track_the_same(outcome: Outcome) -> None:
    lab = trace(LAB[outcome])
    lab_headers: dict[str, set[str]] = {}
    for block in lab.stream:
        lab_headers.setdefault(block.event, set()).update(block.headers)
    operator = {"answered": "101", "noanswer": "102", "busy": "103"}[LAB[outcome]]
    call = SimulatedCall(
        did="74951234568",
        caller="79037654321",
        outcome=outcome,
        operator=operator,
        ring_seconds=8.0 if outcome is Outcome.NOANSWER else 2.0,
        talk_seconds=3.0,
        started_at=1_800_000_000.0,
    )
    made_up = events(call)
    for event in made_up:  # every header is one Asterisk sends in that event (+ Timestamp)
        assert set(event) - {"Timestamp"} <= lab_headers[event["Event"]], event["Event"]

    def kinds_and_end(facts: list[Any]) -> tuple[list[str], CallEnded]:
        ended = [f for f in facts if isinstance(f, CallEnded)]
        assert len(ended) == 1
        return [type(f).__name__ for f in facts], ended[0]

    got_kinds, got = kinds_and_end(
        feed_all(new_tracker(), [(float(e["Timestamp"]), e) for e in made_up])
    )
    want_kinds, want = kinds_and_end(feed_all(new_tracker(), lab.events()))
    assert got_kinds == want_kinds
    answerer = operator if outcome is Outcome.ANSWERED else ""
    assert (got.status, got.dial_status, got.operator) == (want.status, want.dial_status, answerer)
    assert got.operators_rung == (operator,)
    assert (got.did, got.caller, got.linkedid.startswith("sim-")) == (
        "74951234568",
        "79037654321",
        True,
    )
    assert abs(got.wait_seconds - want.wait_seconds) <= 0.6
    assert got.talk_seconds == (3.0 if outcome is Outcome.ANSWERED else 0.0)
    assert not got.recording  # no audio was made up


Start = Callable[..., Awaitable[Client]]


@pytest.fixture
async def start(settings: Settings, tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Start]:
    servers: list[AmiReplayServer] = []

    async def start(server: AmiReplayServer | None = None) -> Client:
        app_settings = settings
        if server is not None:
            await server.start()
            servers.append(server)
            app_settings = with_ami(settings, server.port, tmp_path / "rec")
        client = await aiohttp_client(create_app(app_settings))
        await seed(client.app, numbers=("+74951234567",))
        return client

    yield start
    for server in servers:
        await server.close()


async def test_without_ami_the_made_up_call_is_attributed_to_the_visit_holding_the_number(
    start: Start,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = await start()
    held = await visit(client, "spring", "divan")
    await flush_leases(client.app)
    point_cli_at(monkeypatch, settings, tmp_path)
    args = ("call", "simulate", "--to", "+7 495 123-45-67", "--from", "+79161234567")

    assert await run_cli(*args, "--talk", "40") == 0
    out = capsys.readouterr().out
    assert "AMI is not configured" in out
    assert "attribution exact" in out and "yandex / cpc / spring; keyword: divan" in out
    assert await run_cli(*args, "--status", "busy") == 0
    first, second = sorted(await stored_calls(client.app), key=lambda c: c.started_at)
    assert (first.status, first.talk_seconds, first.operator, first.target) == (
        "answered",
        40,
        "101",
        True,
    )
    assert (second.status, second.operator, second.unique) == ("busy", "", False)
    for call in (first, second):
        assert (call.attribution, call.visit_id, call.caller) == (
            "exact",
            held["visit_id"],
            "+79161234567",
        )

    assert await run_cli("call", "simulate", "--to", "+74959999999", "--from", "+79161234567") == 1
    assert "not a tracked number" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["embedded"], indirect=True)
async def test_with_ami_asterisk_is_asked_to_originate_and_the_recorded_call_is_printed(
    start: Start,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The replay server plays the answered trace only once it receives the Originate.
    server = AmiReplayServer.from_trace(trace("answered"), hold=True)
    client = await start(server)
    held = await visit(client, "spring")
    point_cli_at(monkeypatch, settings, tmp_path)
    monkeypatch.setenv("CALLTRACKER_AMI_HOST", "127.0.0.1")
    monkeypatch.setenv("CALLTRACKER_AMI_PORT", str(server.port))
    monkeypatch.setenv("CALLTRACKER_AMI_SECRET", "calltracker")

    code = await run_cli(
        "call", "simulate", "--to", "+74951234567", "--from", "+79161234567", "--talk", "60"
    )
    out = capsys.readouterr().out
    assert code == 0, out
    (originate,) = server.actions_named("Originate")
    assert {k: v for k, v in originate.items() if k != "ActionID"} == {
        "Action": "Originate",
        "Channel": "Local/74951234567@from-trunk",
        "Application": "Wait",
        "Data": "60",
        "CallerID": '"Caller" <79161234567>',
        "Timeout": "30000",
        "Async": "true",
    }
    logins = server.actions_named("Login")
    assert [a.get("Events", "on") for a in logins] == ["call,dialplan,cdr,agent,system", "off"]
    assert "call 1 linkedid=1795342603.59" in out and f"visit {held['visit_id']}" in out
    (call,) = await stored_calls(client.app)
    assert (call.status, call.attribution, call.visit_id) == (
        str(CallStatus.ANSWERED),
        "exact",
        held["visit_id"],
    )
