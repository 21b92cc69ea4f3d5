"""Calls the listener missed, recovered from CDRs: the Cdr AMI event, and `calls import-cdr`."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from calltracker.app import create_app
from calltracker.settings import Settings
from calltracker.telephony.calls import CDR_TIME_FORMAT
from tests.conftest import seed

from .ami_server import AmiReplayServer
from .app_support import (
    Client,
    flush_leases,
    point_cli_at,
    run_cli,
    stored_calls,
    visit,
    wait_for_ended_calls,
    with_ami,
)
from .conftest import eventually, trace

MOSCOW = ZoneInfo("Europe/Moscow")
# cdr_manager's Cdr headers in Master.csv's column order, then our three custom fields.
CSV_FROM_CDR = (
    "AccountCode",
    "Source",
    "Destination",
    "DestinationContext",
    "CallerID",
    "Channel",
    "DestinationChannel",
    "LastApplication",
    "LastData",
    "StartTime",
    "AnswerTime",
    "EndTime",
    "Duration",
    "BillableSeconds",
    "Disposition",
    "AMAFlags",
    "UniqueID",
    "UserField",
    "TrackingNumber",
    "CallerNumber",
    "RecordingFile",
)
FIRST_LAB_START = datetime(2026, 11, 22, 10, 16, 43, tzinfo=UTC)  # the answered trace's

Open = Callable[..., Awaitable[Client]]


@pytest.fixture
async def open_app(settings: Settings, tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Open]:
    """The app, optionally on a replay server; closed before the database is dropped."""
    servers: list[AmiReplayServer] = []

    async def open_app(server: AmiReplayServer | None = None) -> Client:
        app_settings = settings
        if server is not None:
            await server.start()
            servers.append(server)
            app_settings = with_ami(settings, server.port, tmp_path / "rec")
        return await aiohttp_client(create_app(app_settings))

    yield open_app
    for server in servers:
        await server.close()


def master_csv_rows(scenarios: tuple[str, ...], starts_at: datetime) -> list[list[Any]]:
    """The traces' CDRs as cdr_csv (+ our custom fields) would have written them, moved so
    that the first call starts at `starts_at`, on a PBX keeping Moscow time."""
    shift = starts_at - FIRST_LAB_START
    rows = []
    for scenario in scenarios:
        for block in trace(scenario).stream:
            if block.event != "Cdr":
                continue
            row: list[Any] = []
            for name in CSV_FROM_CDR:
                value = block.headers[name]
                if name.endswith("Time") and value:
                    lab = datetime.strptime(value, CDR_TIME_FORMAT).replace(tzinfo=UTC)
                    value = (lab + shift).astimezone(MOSCOW).strftime(CDR_TIME_FORMAT)
                row.append(int(value) if name in ("Duration", "BillableSeconds") else value)
            rows.append(row)
    return rows


def write_csv(path: Path, rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f, quoting=csv.QUOTE_NONNUMERIC).writerows(rows)
    return path


async def test_calls_missed_while_away_are_imported_once_with_bad_lines_reported(
    open_app: Open,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = await open_app()
    await seed(client.app, numbers=("+74951234567", "+74951234568", "+74951234569"))
    holder = {}
    for campaign in ("a", "b", "c"):
        body = await visit(client, campaign)
        holder[body["number"]] = body
    await flush_leases(client.app)
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    rows = master_csv_rows(("answered", "noanswer", "busy"), starts_at)
    good = len(rows)
    bad_date = [*rows[2][:9], "yesterday", *rows[2][10:]]
    odd = [*rows[2][:14], "WEIRD", *rows[2][15:16], "1795342699.1", *rows[2][17:]]
    no_uniqueid = [*rows[2][:16], "", *rows[2][17:]]
    rows[3:3] = [["too", "few", "columns"], bad_date, odd, no_uniqueid]  # lines 4 to 7
    path = write_csv(tmp_path / "Master.csv", rows)
    point_cli_at(monkeypatch, settings, tmp_path)

    assert await run_cli("calls", "import-cdr", str(path), "--timezone", "Europe/Moscow") == 1
    out, err = capsys.readouterr()
    assert f"imported 3 calls, 0 already recorded, {good - 3} other lines" in out
    assert "4 errors" in out
    errors = [line for line in err.splitlines() if line.startswith(str(path))]
    assert [e.split(":")[1] for e in errors] == ["4", "5", "6", "7"]
    assert "got 3" in errors[0] and "'yesterday'" in errors[1]
    assert "'WEIRD'" in errors[2] and "loguniqueid" in errors[3]

    calls = {c.linkedid: c for c in await stored_calls(client.app)}
    assert sorted(calls) == ["1795342603.60", "1795342612.67", "1795342623.75"]
    for linkedid, status, number, wait, talk, operator in [
        ("1795342603.60", "answered", "+74951234567", 2, 3, "101"),
        ("1795342612.67", "missed", "+74951234568", 8, 0, ""),
        ("1795342623.75", "busy", "+74951234569", 0, 0, ""),
    ]:
        call = calls[linkedid]
        held = holder[number]
        assert (call.status, call.tracking_number, call.caller) == (status, number, "+79161234567")
        assert (call.wait_seconds, call.talk_seconds, call.operator) == (wait, talk, operator)
        assert (call.attribution, call.visit_id, call.campaign) == (
            "exact",
            held["visit_id"],
            held["campaign"],
        )
    # Moscow local time in the file, UTC in the database.
    assert calls["1795342603.60"].started_at == starts_at

    assert await run_cli("calls", "import-cdr", str(path), "--timezone", "Europe/Moscow") == 1
    assert "imported 0 calls, 3 already recorded" in capsys.readouterr().out
    assert len(await stored_calls(client.app)) == 3


async def test_a_cdr_of_a_call_the_listener_recorded_is_skipped(
    open_app: Open,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = AmiReplayServer.from_trace(trace("answered"), hold=True)
    client = await open_app(server)
    await seed(client.app, numbers=("+74951234567", "+74951234569"))
    await visit(client, "a")
    await visit(client, "b")
    await flush_leases(client.app)
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    server.release(epoch=starts_at.timestamp() - 0.5)  # its Newchannel comes 0.5 s in
    (recorded,) = await wait_for_ended_calls(client.app, 1)
    assert recorded.linkedid == "1795342603.59"  # A1's uniqueid; the CDR names A2 (.60)
    path = write_csv(tmp_path / "Master.csv", master_csv_rows(("answered", "busy"), starts_at))
    point_cli_at(monkeypatch, settings, tmp_path)

    assert await run_cli("calls", "import-cdr", str(path), "--timezone", "Europe/Moscow") == 0
    assert "imported 1 calls, 1 already recorded" in capsys.readouterr().out
    calls = await stored_calls(client.app)
    assert [(c.linkedid, c.status) for c in calls] == [
        ("1795342603.59", "answered"),
        ("1795342623.75", "busy"),
    ]


@pytest.mark.parametrize("mode", ["embedded"], indirect=True)
async def test_the_cdr_event_of_a_call_never_seen_records_the_call(open_app: Open) -> None:
    # Everything of the busy call up to its last Hangup happens while we are away; its
    # CDRs come after (as in the trace). The snapshot after the reconnect is empty.
    stream = trace("busy").stream
    first = next(i for i, b in enumerate(stream) if b.event == "Newchannel")
    last_hangup = max(i for i, b in enumerate(stream) if b.event == "Hangup")
    server = AmiReplayServer.from_trace(
        trace("busy"), hold=True, drop_after=first, lost_on_drop=last_hangup + 1 - first
    )
    client = await open_app(server)
    await seed(client.app, numbers=("+74951234569",))
    held = await visit(client, "spring")
    # CDR times have whole seconds: start the PBX's clock clearly after the visit.
    server.release(epoch=datetime.now(UTC).timestamp() + 1.5)
    (call,) = await wait_for_ended_calls(client.app, 1)
    await eventually(server.finished.is_set, what="the whole trace streamed")
    assert server.connections == 2
    assert (call.linkedid, call.status, call.operator) == ("1795342623.75", "busy", "")
    assert (call.attribution, call.visit_id, call.caller) == (
        "exact",
        held["visit_id"],
        "+79161234567",
    )
    assert "CDR" in call.attribution_detail["incomplete"]
    assert len(await stored_calls(client.app)) == 1
