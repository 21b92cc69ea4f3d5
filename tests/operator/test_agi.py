"""FastAGI as Asterisk speaks it, over a real socket to the real app: tags, silence, deadline."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import event, select
from sqlalchemy.util import await_

from calltracker.app import create_app
from calltracker.db.models import Call
from calltracker.keys import agi_key, engine_key, sessionmaker_key
from calltracker.settings import AmiSettings, Secret, Settings
from calltracker.telephony import agi
from calltracker.telephony.agi import AgiRequest, CallerTag, agi_text, commands_for
from tests.admin.conftest import embedded_only
from tests.conftest import with_settings
from tests.operator.conftest import CALLER, DIALLED, Client, FakeCall, make_visit, seed_site

LINKEDID = "1795342603.59"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """FastAGI as deployed: next to an AMI listener (here one that finds no PBX to reach)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    return with_settings(
        settings,
        ami=AmiSettings(host="127.0.0.1", port=closed, secret=Secret("x"), reconnect_max_seconds=5),
    )


def asterisk_headers(**changes: str) -> dict[str, str]:
    """The block Asterisk 22 sends a FastAGI server, in its order (res_agi.c setup_env)."""
    headers = {
        "agi_network": "yes",
        "agi_network_script": "incoming",
        "agi_request": "agi://127.0.0.1:4573/incoming",
        "agi_channel": "PJSIP/trunk-00000001",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1795342603.60",
        "agi_version": "22.10.1",
        "agi_callerid": CALLER,
        "agi_calleridname": "Ivan",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": DIALLED,
        "agi_rdnis": "unknown",
        "agi_context": "from-trunk",
        "agi_extension": DIALLED,
        "agi_priority": "10",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140245069391552",
    }
    headers.update(changes)
    return headers


@dataclass
class AgiRun:
    commands: list[str]  # every line calltracker sent, in order
    seconds: float  # from connect until calltracker closed the socket


async def run_agi(
    port: int,
    headers: dict[str, str] | None = None,
    *,
    hang_up: bool = False,
    send_headers: bool = True,
    timeout: float = 5.0,
) -> AgiRun:
    """Play Asterisk's side of AGI(agi://...): headers, then answer each command until EOF."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if send_headers:
        block = "".join(f"{k}: {v}\n" for k, v in (headers or asterisk_headers()).items())
        writer.write(block.encode() + b"\n")
    commands: list[str] = []
    try:
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                break  # calltracker closed: AGI() returns and the dialplan goes on
            command = line.decode().rstrip("\n")
            commands.append(command)
            if command == "GET VARIABLE CHANNEL(linkedid)":
                writer.write(f"200 result=1 ({LINKEDID})\n".encode())
            elif hang_up:
                # The caller left: Asterisk says HANGUP once, then refuses on the dead channel.
                writer.write(
                    b"HANGUP\n511 Command Not Permitted on a dead channel or intercept routine\n"
                )
            else:
                writer.write(b"200 result=1\n")
            await writer.drain()
    finally:
        writer.close()
    return AgiRun(commands, time.monotonic() - started)


def agi_port(client: Client) -> int:
    server: agi.AgiServer = client.app[agi_key]
    return server.port


GET_LINKEDID = "GET VARIABLE CHANNEL(linkedid)"
# How late an event loop on a loaded 2-core machine may wake; well under run_agi's own
# 5 s timeout. (With a slow lookup, the server's counts tell its deadline from a lookup
# that finished.)
SCHEDULING_SLACK = 1.0
YANDEX_COMMANDS = [
    'SET VARIABLE CALLTRACKER_SOURCE "yandex"',
    'SET VARIABLE CALLTRACKER_MEDIUM "cpc"',
    'SET VARIABLE CALLTRACKER_CAMPAIGN "spring"',
    'SET VARIABLE CALLTRACKER_KEYWORD "sofa"',
    'SET VARIABLE CALLERID(name) "[yandex/cpc] Ivan"',
]


async def test_a_call_to_a_number_a_yandex_visitor_holds_is_tagged(client: Client) -> None:
    await seed_site(client.app)
    await make_visit(client)
    run = await run_agi(agi_port(client))
    # The AMI listener has not stored this call (there is none here): FastAGI makes its row,
    # which the listener's facts then find by the Linkedid.
    call = await stored(client, LINKEDID)
    assert (call.status, call.source, call.caller) == ("ringing", "yandex", "+79161234567")
    assert run.commands == [
        GET_LINKEDID,
        f'SET VARIABLE CALLTRACKER_CALL_ID "{call.id}"',
        *YANDEX_COMMANDS,
    ], client.app[agi_key].counts


async def stored(client: Client, linkedid: str) -> Call:
    async with client.app[sessionmaker_key]() as session:
        call = await session.scalar(select(Call).where(Call.linkedid == linkedid))
    assert call is not None
    return call


@embedded_only
async def test_a_call_already_stored_gets_its_id_and_its_stored_labels(client: Client) -> None:
    await seed_site(client.app)
    await make_visit(client)
    await FakeCall(client.app, linkedid=LINKEDID).start()
    async with client.app[sessionmaker_key]() as session:
        call_id = await session.scalar(select(Call.id).where(Call.linkedid == LINKEDID))
    run = await run_agi(agi_port(client))
    assert run.commands == [
        GET_LINKEDID,
        f'SET VARIABLE CALLTRACKER_CALL_ID "{call_id}"',
        *YANDEX_COMMANDS,
    ], client.app[agi_key].counts


@embedded_only
async def test_a_tracked_number_nobody_holds_sets_nothing(client: Client) -> None:
    await seed_site(client.app)  # no visit: the pooled DID is free
    run = await run_agi(agi_port(client))
    call = await stored(client, LINKEDID)  # still a call to a tracked number, unattributed
    assert (call.attribution, call.source) == ("none", "")
    assert run.commands == [GET_LINKEDID, f'SET VARIABLE CALLTRACKER_CALL_ID "{call.id}"']


@embedded_only
async def test_an_untracked_number_is_not_even_looked_up(client: Client) -> None:
    await seed_site(client.app)
    run = await run_agi(
        agi_port(client), asterisk_headers(agi_extension="74990000000", agi_dnid="74990000000")
    )
    assert run.commands == []


@embedded_only
async def test_a_static_number_tags_the_callers_number_when_there_is_no_name(
    client: Client,
) -> None:
    seeded = await seed_site(client.app)
    static = seeded.static_number.lstrip("+")
    run = await run_agi(
        agi_port(client),
        asterisk_headers(agi_extension=static, agi_dnid=static, agi_calleridname="unknown"),
    )
    assert run.commands[-1] == f'SET VARIABLE CALLERID(name) "[billboard/outdoor] {CALLER}"'
    assert 'SET VARIABLE CALLTRACKER_CAMPAIGN "tverskaya-2026"' in run.commands


@embedded_only
async def test_a_caller_who_hangs_up_during_the_agi_gets_no_more_commands(
    client: Client,
) -> None:
    await seed_site(client.app)
    await make_visit(client)
    run = await run_agi(agi_port(client), hang_up=True)
    call = await stored(client, LINKEDID)
    assert run.commands == [GET_LINKEDID, f'SET VARIABLE CALLTRACKER_CALL_ID "{call.id}"']
    assert client.app[agi_key].counts.get("hangup") == 1


@embedded_only
async def test_another_agi_script_gets_no_commands(client: Client) -> None:
    await seed_site(client.app)
    await make_visit(client)
    run = await run_agi(
        agi_port(client),
        asterisk_headers(agi_network_script="other", agi_request="agi://127.0.0.1/other"),
    )
    assert run.commands == []


@embedded_only
async def test_an_asterisk_that_sends_nothing_is_dropped_at_the_deadline(
    client: Client,
) -> None:
    run = await run_agi(agi_port(client), send_headers=False)
    assert run.commands == []
    # calltracker hung up (EOF, not run_agi's 5 s timeout) about at its deadline; the margin
    # is for a busy CI machine, where the loop may wake late.
    assert run.seconds < agi.DEADLINE_SECONDS + SCHEDULING_SLACK


@asynccontextmanager
async def stalled_database(client: Client) -> AsyncIterator[None]:
    """Queries that hang without blocking the event loop, as on a database under load:
    SQLite statements wait in aiosqlite's thread; PostgreSQL ones wait for a table lock."""
    engine = client.app[engine_key]
    if engine.dialect.name == "sqlite":
        stalled = [True]

        def stall(_statement: str) -> None:
            if stalled[0]:
                time.sleep(1.5)  # in the connection's own thread: only the database waits

        def on_checkout(_dbapi: Any, _record: Any, proxy: Any) -> None:
            await_(proxy.driver_connection.set_trace_callback(stall))

        event.listen(engine.sync_engine, "checkout", on_checkout)
        try:
            yield
        finally:
            stalled[0] = False
            event.remove(engine.sync_engine, "checkout", on_checkout)
        return
    conn = await asyncpg.connect(engine.url.set(drivername="postgresql").render_as_string(False))
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE call IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def test_a_slow_database_never_holds_the_call(client: Client) -> None:
    await seed_site(client.app)
    await make_visit(client)
    server = client.app[agi_key]
    async with stalled_database(client):
        run = await run_agi(agi_port(client))
        # Ended within the deadline, having set nothing: the dialplan routes the call as is.
        assert run.commands == [GET_LINKEDID]
        assert run.seconds < agi.DEADLINE_SECONDS + SCHEDULING_SLACK
        assert server.counts.get("slow") == 1, server.counts
        # The lookup was left to finish on its own, not cancelled mid-query.
        assert server.pending_lookups == 1
    deadline = time.monotonic() + 10
    while server.pending_lookups and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert server.pending_lookups == 0


@embedded_only
async def test_agi_is_off_when_the_port_says_so(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(with_settings(settings, agi_port=-1)))
    assert agi_key not in client.app
    assert Settings.from_env({"CALLTRACKER_AGI_PORT": "off"}).agi_port == -1
    env = {"CALLTRACKER_AGI_PORT": "4574", "CALLTRACKER_AGI_HOST": "0.0.0.0"}
    assert (Settings.from_env(env).agi_host, Settings.from_env(env).agi_port) == ("0.0.0.0", 4574)


@embedded_only
async def test_a_port_in_use_leaves_the_server_up_without_agi(
    aiohttp_client: Any, settings: Settings
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        client = await aiohttp_client(create_app(with_settings(settings, agi_port=port)))
        assert agi_key not in client.app
        assert (await client.get("/healthz")).status == 200


# -- the commands themselves ---------------------------------------------------------------


def request(**changes: str) -> AgiRequest:
    return AgiRequest(asterisk_headers(**changes))


def test_visitor_sent_labels_cannot_break_out_of_the_command() -> None:
    tag = CallerTag(None, 'ya"ndex\nEXEC System(rm -rf /)', "cpc\\", "c\r\nHANGUP", "k\x00w")
    commands = commands_for(tag, request(agi_calleridname='Iv"an\n'))
    for line in commands:
        assert "\n" not in line and "\r" not in line and "\x00" not in line
        assert line.count('"') == 2 and line.endswith('"')
        assert "\\" not in line
    assert commands[0] == 'SET VARIABLE CALLTRACKER_SOURCE "yandex EXEC System(rm -rf /)"'
    assert commands[-1].startswith('SET VARIABLE CALLERID(name) "[yandex EXEC System(rm')
    assert commands[-1].endswith(' Ivan"')


def test_the_tag_is_capped_for_a_phone_display() -> None:
    tag = CallerTag(None, "s" * 200, "m" * 200)
    name = commands_for(tag, request())[-1].split('"')[1]
    assert len(name) <= agi.NAME_MAX
    assert name.startswith("[sss") and name.endswith(" Ivan")
    assert len(name) - len(" Ivan") <= agi.PREFIX_MAX


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("[{source}/{medium}] ", "[yandex/cpc] Ivan"),
        ("{source}: ", "yandex: Ivan"),
        ("{campaign}|", "spring|Ivan"),
        # Not a template we fill: attribute access, indexes, unknown fields, broken braces.
        ("{source.__class__} ", "[yandex/cpc] Ivan"),
        ("{source[0]} ", "[yandex/cpc] Ivan"),
        ("{secret_key} ", "[yandex/cpc] Ivan"),
        ("{source ", "[yandex/cpc] Ivan"),
    ],
)
def test_the_sites_template_is_filled_only_with_labels(template: str, name: str) -> None:
    tag = CallerTag(None, "yandex", "cpc", "spring", "sofa", template)
    assert commands_for(tag, request())[-1] == f'SET VARIABLE CALLERID(name) "{name}"'


def test_a_name_tagged_already_is_not_tagged_twice() -> None:
    tag = CallerTag(None, "yandex", "cpc")
    commands = commands_for(tag, request(agi_calleridname="[yandex/cpc] Ivan"))
    assert commands[-1] == 'SET VARIABLE CALLERID(name) "[yandex/cpc] Ivan"'


def test_an_unattributed_call_gets_only_its_id() -> None:
    assert commands_for(CallerTag(7), request()) == ['SET VARIABLE CALLTRACKER_CALL_ID "7"']
    assert commands_for(CallerTag(None), request()) == []


def test_agi_text_drops_control_and_format_characters() -> None:
    assert agi_text("a\u202eb\u200bc\td") == "abc d"
    assert agi_text("  spaced   out  ") == "spaced out"


@pytest.mark.parametrize(
    ("headers", "script"),
    [
        ({"agi_network_script": "incoming"}, "incoming"),
        ({"agi_request": "agi://10.0.0.5:4573/incoming?x=1"}, "incoming"),
        ({"agi_request": "agi://10.0.0.5/incoming/"}, "incoming"),
    ],
)
def test_the_script_is_read_from_either_header(headers: dict[str, str], script: str) -> None:
    assert AgiRequest(headers).script == script


async def test_replies_with_a_usage_text_and_a_value_in_parentheses_are_read() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b"Usage: SET VARIABLE <variablename> <value>\n"
        b"520 End of proper usage.\n"
        b"200 result=1 (a (b) c)\n"
    )

    class Sink:
        def write(self, data: bytes) -> None:
            pass

        async def drain(self) -> None:
            pass

    writer: Any = Sink()
    first, _ = await agi.command(reader, writer, "SET VARIABLE")
    second, _ = await agi.command(reader, writer, "GET VARIABLE X")
    assert (first.code, second.code, second.value) == (520, 200, "a (b) c")


@embedded_only
async def test_without_ami_fastagi_makes_no_call_row(
    settings: Settings, aiohttp_client: Any
) -> None:
    """Only the listener ends calls: a row FastAGI made without one would ring forever."""
    client = await aiohttp_client(create_app(with_settings(settings, ami=AmiSettings())))
    await seed_site(client.app)
    await make_visit(client)
    run = await run_agi(agi_port(client))
    assert run.commands == [GET_LINKEDID, *YANDEX_COMMANDS]
    async with client.app[sessionmaker_key]() as session:
        assert await session.scalar(select(Call)) is None
