"""The console's websocket against the real app: auth, who gets which card, what a card says."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from calltracker.app import create_app
from calltracker.db.auth_models import User
from calltracker.db.integration_models import Integration, OutboxRow
from calltracker.db.models import Call
from calltracker.keys import card_maker_key, operator_hub_key, sessionmaker_key
from calltracker.settings import Settings
from calltracker.web import operator
from tests.admin.conftest import csrf_of, embedded_only, login
from tests.operator.conftest import (
    LANDING,
    REFERRER,
    Client,
    FakeCall,
    add_operators,
    eventually,
    make_visit,
    seed_site,
)

WS = aiohttp.ClientWebSocketResponse


def origin(client: Client) -> str:
    return str(client.make_url("/").origin())


async def console(client: Client, username: str) -> WS:
    """A logged-in console's socket, past its hello."""
    await login(client, username)
    ws = await client.ws_connect("/operator/ws", origin=origin(client))
    hello = await receive(ws)
    assert hello["type"] == "hello"
    return ws


async def receive(ws: WS, timeout: float = 5.0) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = msg.json()
    return data


async def next_card(ws: WS) -> dict[str, Any]:
    msg = await receive(ws)
    assert msg["type"] == "card", msg
    card: dict[str, Any] = msg["card"]
    return card


async def assert_nothing_queued(ws: WS) -> None:
    """The console got no card: a ping is answered before anything else arrives."""
    await ws.send_str("ping")
    assert await receive(ws) == {"type": "pong"}


@pytest.fixture
async def site(client: Client) -> None:
    await seed_site(client.app)
    await add_operators(client.app)


@embedded_only
async def test_an_anonymous_websocket_is_refused(client: Client, site: None) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/operator/ws", origin=origin(client))


@embedded_only
async def test_another_sites_page_may_not_open_the_websocket(client: Client, site: None) -> None:
    await login(client, "op101")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/operator/ws", origin="https://evil.example")
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/operator/ws")  # no Origin at all


@embedded_only
async def test_a_marketer_without_an_extension_gets_no_console(client: Client, site: None) -> None:
    await login(client, "mkt")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/operator/ws", origin=origin(client))
    assert refused.value.status == 403


async def test_a_call_pops_up_only_where_it_rings_with_where_the_caller_came_from(
    client: Client, site: None
) -> None:
    visit = await make_visit(client)
    op102 = await console(client, "op102")
    nobody = await console(client, "op-none")
    op101 = await console(client, "op101")  # last: the client's cookie jar holds one login
    call = FakeCall(client.app)
    await call.start()
    await call.ring("101")
    card = await next_card(op101)
    assert card["state"] == "ringing"
    assert card["caller"] == "+79161234567"
    assert (card["source"], card["medium"], card["campaign"], card["keyword"]) == (
        "yandex",
        "cpc",
        "spring",
        "sofa",
    )
    assert card["attribution"] == "exact"
    assert card["visit"]["url"] == LANDING and card["visit"]["referrer"] == REFERRER
    assert card["visit"]["started_at"] is not None
    assert card["history"] == {"total": 0, "calls": []}
    assert card["lead"] is None
    assert card["call_id"] is not None and visit["number"] == "+74951234567"
    await assert_nothing_queued(op102)
    await assert_nothing_queued(nobody)


async def test_the_card_follows_the_call_to_its_end(client: Client, site: None) -> None:
    await make_visit(client)
    op101 = await console(client, "op101")
    call = FakeCall(client.app)
    await call.start()
    await call.ring("101")
    assert (await next_card(op101))["state"] == "ringing"
    await call.answer("101")
    answered = await next_card(op101)
    assert (answered["state"], answered["answered_by"]) == ("answered", "101")
    await call.end("101", talk=42)
    ended = await next_card(op101)
    assert (ended["state"], ended["status"], ended["talk_seconds"]) == ("ended", "answered", 42)
    assert ended["version"] > answered["version"]


@embedded_only
async def test_ring_all_pops_up_for_every_ringing_operator(client: Client, site: None) -> None:
    await login(client, "op101")
    op101 = await client.ws_connect("/operator/ws", origin=origin(client))
    await receive(op101)
    both = await console(client, "op-both")  # 101 and 103
    await login(client, "op102")
    op102 = await client.ws_connect("/operator/ws", origin=origin(client))
    await receive(op102)
    call = FakeCall(client.app)
    await call.start()
    await call.ring("101")
    await call.ring("102")
    # 101's consoles hear the first ring, and the second as an update of the same card.
    for ws in (op101, both):
        assert [(await next_card(ws))["id"] for _ in range(2)] == [call.linkedid] * 2
    assert (await next_card(op102))["id"] == call.linkedid
    await call.answer("102")
    for ws in (op101, op102):
        card = await next_card(ws)
        assert (card["state"], card["answered_by"]) == ("answered", "102")


@embedded_only
async def test_a_repeat_caller_shows_their_earlier_calls(client: Client, site: None) -> None:
    async with client.app[sessionmaker_key].begin() as session:
        session.add(
            Call(
                linkedid="earlier-1",
                site_id=1,
                tracking_number="+74951234568",
                caller="+79161234567",
                started_at=datetime.now(UTC) - timedelta(days=3),
                status="missed",
                source="google",
                medium="organic",
            )
        )
    op101 = await console(client, "op101")
    call = FakeCall(client.app)
    await call.start()
    await call.ring("101")
    card = await next_card(op101)
    assert card["history"]["total"] == 1
    (earlier,) = card["history"]["calls"]
    assert (earlier["source"], earlier["medium"], earlier["status"]) == (
        "google",
        "organic",
        "missed",
    )
    assert card["unique"] is False


@embedded_only
async def test_a_reconnecting_console_gets_the_call_still_in_progress(
    client: Client, site: None
) -> None:
    await make_visit(client)
    op101 = await console(client, "op101")
    call = FakeCall(client.app)
    await call.start()
    await call.ring("101")
    await next_card(op101)
    await op101.close()
    await call.answer("101")  # while the console is away
    again = await client.ws_connect("/operator/ws", origin=origin(client))
    hello = await receive(again)
    (card,) = hello["cards"]
    assert (card["id"], card["state"], card["source"]) == (call.linkedid, "answered", "yandex")


@embedded_only
async def test_a_server_side_drop_tells_the_page_to_reconnect(client: Client, site: None) -> None:
    op101 = await console(client, "op101")
    client.app[operator_hub_key].disconnect_all()
    msg = await asyncio.wait_for(op101.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert op101.close_code == operator.CLOSE_RECONNECT


@embedded_only
async def test_a_console_closes_when_its_login_ends(
    client: Client, site: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operator, "RECHECK_SECONDS", 0.05)
    op101 = await console(client, "op101")
    resp = await client.post("/logout", data={"csrf_token": await csrf_of(client)})
    assert resp.status == 200  # followed to the login page
    msg = await asyncio.wait_for(op101.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert op101.close_code == operator.CLOSE_LOGGED_OUT


@embedded_only
async def test_a_new_extension_makes_the_console_start_over(
    client: Client, site: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operator, "RECHECK_SECONDS", 0.05)
    op101 = await console(client, "op101")
    async with client.app[sessionmaker_key].begin() as session:
        user = await session.scalar(select(User).where(User.username == "op101"))
        assert user is not None
        user.extension = "104"
    msg = await asyncio.wait_for(op101.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert op101.close_code == operator.CLOSE_RECONNECT


async def add_lead(client: Client, call_id: int, remote_ids: dict[str, str]) -> None:
    async with client.app[sessionmaker_key].begin() as session:
        integration = Integration(
            site_id=1,
            kind="bitrix24",
            name="portal",
            config={"webhook_url": "https://b24.example.ru/rest/1/s3cr3t/"},
        )
        session.add(integration)
        await session.flush()
        session.add(
            OutboxRow(
                integration_id=integration.id,
                call_id=call_id,
                stage="ring",
                idempotency_key=f"{integration.id}:{call_id}:ring",
                state="done",
                remote_ids=remote_ids,
            )
        )


@embedded_only
async def test_the_crm_lead_link_appears_once_the_outbox_has_sent_the_lead(
    client: Client, site: None
) -> None:
    op101 = await console(client, "op101")
    call = FakeCall(client.app)
    await call.start()
    await call.ring("101")
    card = await next_card(op101)
    assert card["lead"] is None
    maker = client.app[card_maker_key]
    assert await maker.refresh_leads() == 0  # nothing sent yet: no update either
    await add_lead(client, card["call_id"], {"lead_id": "42"})
    assert await maker.refresh_leads() == 1
    updated = await next_card(op101)
    assert updated["lead"] == {
        "url": "https://b24.example.ru/crm/lead/details/42/",
        "label": "Bitrix24 lead 42",
    }
    assert updated["state"] == "ringing" and updated["version"] > card["version"]
    await call.end("101")
    assert (await next_card(op101))["lead"] == updated["lead"]  # kept on later updates


@embedded_only
async def test_the_old_console_address_leads_to_the_new_page(client: Client, site: None) -> None:
    await login(client, "op-none")
    resp = await client.get("/console")
    assert resp.url.path == "/operator"
    html = await resp.text()
    assert 'data-ws="/operator/ws"' in html and 'id="no-extension"' in html
    assert '<script src="/static/operator.js" defer></script>' in html
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    js = await client.get("/static/operator.js")
    assert js.status == 200 and "innerHTML" not in await js.text()


@embedded_only
async def test_cards_stop_when_the_operator_leaves(client: Client, site: None) -> None:
    op101 = await console(client, "op101")
    hub = client.app[operator_hub_key]
    assert hub.consoles == 1
    await op101.close()
    await eventually(lambda: hub.consoles == 0, what="the console to unsubscribe")


@pytest.mark.parametrize("mode", ["scale"], indirect=True)
async def test_a_console_on_another_worker_gets_the_leaders_cards(
    aiohttp_client: Any, settings: Settings
) -> None:
    # Two servers on one PostgreSQL and Redis, as two workers: the call facts are stored
    # by one (the AMI leader), the operator's websocket is held by the other.
    leader = await aiohttp_client(create_app(settings))
    worker = await aiohttp_client(create_app(settings))
    await seed_site(leader.app)
    await add_operators(leader.app)
    await make_visit(leader)
    op101 = await console(worker, "op101")
    call = FakeCall(leader.app)
    await call.start()
    await call.ring("101")
    card = await next_card(op101)
    assert (card["id"], card["state"], card["source"]) == (call.linkedid, "ringing", "yandex")
    await call.end("101")
    assert (await next_card(op101))["state"] == "ended"
