"""Real calls while something fails: AMI cut, `manager reload`, calltracker down for a call."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.telephony.app_support import flush_leases, point_cli_at, run_cli

from .conftest import Lab, Tracker, start_tracker, tracker_settings
from .pbx import CONF, PBX_ADDRESS, PBX_TIMEZONE, Pbx, free_tcp_port
from .sipp import ANSWER, CallPlan, caller_for


class AmiCable:
    """A TCP hop between calltracker and the PBX's AMI that a test can cut."""

    def __init__(self, upstream: int) -> None:
        self._upstream = upstream
        self.port = free_tcp_port()
        self.refusing = False
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> AmiCable:
        self._server = await asyncio.start_server(self._accept, PBX_ADDRESS, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every connection now (as a switch rebooting would)."""
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(PBX_ADDRESS, self._upstream)
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            for w in (writer, up_writer):
                w.transport.abort()
                self._links.discard(w)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def cabled(lab: Lab, pbx: Pbx, aiohttp_client: Any, sqlite_url: str, tmp_path: Path) -> Any:
    """calltracker reaching AMI through an AmiCable."""
    async with AmiCable(pbx.ports.ami) as cable:
        settings = tracker_settings(lab, sqlite_url, tmp_path, port=cable.port)
        tracker = await start_tracker(aiohttp_client, settings)
        await tracker.connected()
        yield tracker, cable


async def test_ami_cut_while_the_phones_ring_still_records_the_answered_call_once(
    lab: Lab, cabled: tuple[Tracker, AmiCable], consoles: list[Any]
) -> None:
    tracker, cable = cabled
    visit = await tracker.visit("cut")
    caller = caller_for({"101": ANSWER}, lab.next_serial())
    op101 = await tracker.console("op101")
    consoles.append(op101)
    trunk = await lab.call(CallPlan(visit["number"][1:], caller, talk_ms=5000)).start()
    await op101.until_state(caller, "ringing")
    # Cut, and keep the PBX out of reach while 101 picks up: the answer's events are lost.
    cable.refusing = True
    cable.cut()
    await asyncio.sleep(2.0)
    cable.refusing = False
    await tracker.connected(connects=2)
    await trunk.finished()
    (call,) = await tracker.ended_calls(1)
    # The snapshot after the reconnect showed 101 bridged to the caller.
    assert (call["status"], call["operator"]) == ("answered", "101")
    assert call["visit"]["id"] == visit["visit_id"] and call["campaign"] == "cut"
    assert 2 <= call["talk_seconds"] <= 7, call
    assert call["recording_url"]
    assert len(await tracker.calls()) == 1
    await op101.until_state(caller, "ended")


async def test_the_dialplan_gets_the_call_id_while_the_listener_is_away(
    lab: Lab, pbx: Pbx, cabled: tuple[Tracker, AmiCable]
) -> None:
    tracker, cable = cabled
    visit = await tracker.visit("away")
    cable.refusing = True
    cable.cut()
    caller = caller_for({"101": ANSWER}, lab.next_serial())
    trunk = await lab.call(CallPlan(visit["number"][1:], caller, talk_ms=4000)).start()
    # FastAGI made the row: the dialplan has its id although no AMI event was seen.
    deadline = time.monotonic() + 10
    while not (variables := _trunk_variables(pbx)).get("CALLTRACKER_CALL_ID"):
        assert time.monotonic() < deadline, variables
        await asyncio.sleep(0.1)
    (ringing,) = await tracker.calls()
    assert variables["CALLTRACKER_CALL_ID"] == str(ringing["id"])
    assert ringing["status"] == "ringing" and ringing["campaign"] == "away"
    cable.refusing = False
    await tracker.connected(connects=2)
    await trunk.finished()
    (call,) = await tracker.ended_calls(1)
    assert call["id"] == ringing["id"]  # the listener's facts found FastAGI's row
    assert (call["status"], call["operator"]) == ("answered", "101")


def _trunk_variables(pbx: Pbx) -> dict[str, str]:
    if not any(c.startswith("PJSIP/zadarma-") for c in pbx.channels()):
        return {}
    return pbx.channel_variables("PJSIP/zadarma-")


async def test_manager_reload_during_a_call_changes_nothing_the_user_sees(
    lab: Lab, pbx: Pbx, tracker: Tracker, consoles: list[Any]
) -> None:
    visit = await tracker.visit("reload")
    caller = caller_for({"101": ANSWER}, lab.next_serial())
    op101 = await tracker.console("op101")
    consoles.append(op101)
    trunk = await lab.call(CallPlan(visit["number"][1:], caller, talk_ms=4000)).start()
    await tracker.wait_answered()
    pbx.cli("manager reload")
    await trunk.finished()
    (call,) = await tracker.ended_calls(1)
    assert (call["status"], call["operator"], call["campaign"]) == ("answered", "101", "reload")
    assert 3 <= call["talk_seconds"] <= 7, call
    assert len(await tracker.calls()) == 1
    await op101.until_state(caller, "ended")
    assert op101.states(caller) == ["ringing", "answered", "ended"]


def documented_cdr_file(pbx: Pbx) -> Path:
    """The file asterisk_conf/README.md tells users to import, in this PBX's log folder."""
    readme = (CONF / "README.md").read_text()
    found = re.search(r"calltracker calls import-cdr\s+/var/log/asterisk/(\S+)", readme)
    assert found is not None, "asterisk_conf/README.md names no CDR file to import"
    return pbx.state / "log" / found.group(1)


async def test_calltracker_down_for_a_whole_call_then_import_cdr_recovers_it_with_its_recording(
    lab: Lab,
    pbx: Pbx,
    aiohttp_client: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    consoles: list[Any],
) -> None:
    settings = tracker_settings(lab, sqlite_url, tmp_path)
    before = await start_tracker(aiohttp_client, settings)
    visit = await before.visit("offline")
    await flush_leases(before.app)
    await before.client.close()  # calltracker is down: AMI and FastAGI with it
    # CDR times are whole seconds: a call in the very second the page was shown could
    # date from before the lease. A visitor reads the page a moment before calling.
    await asyncio.sleep(1.2)

    cdr_file = documented_cdr_file(pbx)
    written = cdr_file.stat().st_size if cdr_file.exists() else 0
    caller = caller_for({"101": ANSWER}, lab.next_serial())
    trunk = await lab.call(CallPlan(visit["number"][1:], caller, talk_ms=3000)).start()
    await trunk.finished()  # routed without FastAGI: the call itself never depended on it
    # This call's CDRs: those written while calltracker was away.
    deadline = time.monotonic() + 10
    while not cdr_file.exists() or cdr_file.stat().st_size == written:
        assert time.monotonic() < deadline, f"no CDR written to {cdr_file}"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a ring-all call writes one CDR per phone
    away = tmp_path / cdr_file.name
    away.write_bytes(cdr_file.read_bytes()[written:])

    point_cli_at(monkeypatch, settings, tmp_path)
    code = await run_cli("calls", "import-cdr", str(away), "--timezone", PBX_TIMEZONE)
    assert code == 0

    after = await start_tracker(aiohttp_client, settings, fresh=False)
    (call,) = await after.calls()
    assert (call["status"], call["operator"]) == ("answered", "101")
    assert call["caller"] == "+" + caller
    assert call["visit"]["id"] == visit["visit_id"] and call["campaign"] == "offline"
    assert 2 <= call["talk_seconds"] <= 5, call
    assert len(await after.recording(call)) > 3_000, "the recording was not recovered"
    # Imported later: no live card pops up on a console for a call long over.
    console = await after.console("op101")
    consoles.append(console)
    await asyncio.sleep(0.3)
    assert not console.cards
    assert await run_cli("calls", "import-cdr", str(away), "--timezone", PBX_TIMEZONE) == 0
    assert len(await after.calls()) == 1  # importing again adds nothing
