"""The card hub: who gets which card, replay after a reconnect, fan-out across processes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from calltracker.operator.cards import lead_link
from calltracker.operator.hub import LIVE_HASH, LiveCard, OperatorHub, parse_extensions
from tests.operator.conftest import eventually


def card(
    linkedid: str, *extensions: str, version: int = 1, ended: bool = False, **data: Any
) -> LiveCard:
    body = {"id": linkedid, "version": version, "started_at": "2026-11-22T10:00:00+00:00", **data}
    return LiveCard(linkedid, frozenset(extensions), body, ended, version, time.time())


def drain(sub: Any) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


async def test_a_card_goes_only_to_consoles_of_the_extensions_that_rang() -> None:
    hub = OperatorHub()
    s101, s102, s_both = (
        hub.subscribe({"101"}),
        hub.subscribe({"102"}),
        hub.subscribe({"103", "101"}),
    )
    hub.apply(card("c1", "101"))
    assert [m["card"]["id"] for m in drain(s101)] == ["c1"]
    assert drain(s102) == []
    assert [m["card"]["id"] for m in drain(s_both)] == ["c1"]


async def test_ring_all_reaches_each_ringing_operator_as_their_phone_rings() -> None:
    hub = OperatorHub()
    s101, s102 = hub.subscribe({"101"}), hub.subscribe({"102"})
    hub.apply(card("c1", "101", version=1))
    hub.apply(card("c1", "101", "102", version=2))
    assert [m["card"]["version"] for m in drain(s101)] == [1, 2]
    assert [m["card"]["version"] for m in drain(s102)] == [2]


async def test_an_older_version_never_replaces_a_newer_one() -> None:
    hub = OperatorHub()
    sub = hub.subscribe({"101"})
    assert hub.apply(card("c1", "101", version=5, state="answered"))
    assert not hub.apply(card("c1", "101", version=4, state="ringing"))
    assert [m["card"]["state"] for m in drain(sub)] == ["answered"]
    got = hub.get("c1")
    assert got is not None and got.data["state"] == "answered"


async def test_a_reconnecting_console_gets_the_cards_of_its_extensions_again() -> None:
    hub = OperatorHub()
    hub.apply(card("c1", "101"))
    hub.apply(card("c2", "102"))
    assert [c["id"] for c in hub.snapshot({"101"})] == ["c1"]
    assert hub.snapshot(set()) == []


async def test_ended_cards_linger_then_go_and_lost_hangups_expire() -> None:
    hub = OperatorHub(linger_seconds=60, max_age_seconds=3600)
    now = time.time()
    hub.apply(card("ended", "101", ended=True))
    hub.apply(card("live", "101"))
    assert hub.sweep(now + 30) == []
    assert hub.sweep(now + 61) == ["ended"]
    assert hub.sweep(now + 3601) == ["live"]


async def test_a_console_that_cannot_keep_up_is_dropped_not_waited_for() -> None:
    hub = OperatorHub()
    sub = hub.subscribe({"101"})
    for version in range(1, sub.queue.maxsize + 2):
        hub.apply(card("c1", "101", version=version))
    assert sub.closed.is_set()


@pytest.mark.parametrize(
    ("raw", "extensions"),
    [
        ("101", {"101"}),
        ("101, 102", {"101", "102"}),
        ("101;102 103", {"101", "102", "103"}),
        ("", set()),
    ],
)
def test_the_extension_field_may_name_several(raw: str, extensions: set[str]) -> None:
    assert parse_extensions(raw) == extensions


def test_lead_links_use_only_the_portals_host_never_the_webhook_secret() -> None:
    secret = "https://b24.example.ru/rest/1/s3cr3tcode/"
    link = lead_link("bitrix24", {"webhook_url": secret}, {"lead_id": "42"})
    assert link == {
        "url": "https://b24.example.ru/crm/lead/details/42/",
        "label": "Bitrix24 lead 42",
    }
    app = {"webhook_url": secret, "app": {"portal_url": "https://crm.example.ru"}}
    assert lead_link("bitrix24", app, {"contact_id": "7"})["url"] == (
        "https://crm.example.ru/crm/contact/details/7/"
    )
    amo = lead_link("amocrm", {"base_url": "https://shop.amocrm.ru"}, {"lead_id": "9"})
    assert amo["url"] == "https://shop.amocrm.ru/leads/detail/9"
    assert lead_link("webhook", {"url": "https://x"}, {"webhook_id": "1"}) == {}
    assert lead_link("amocrm", {"base_url": "javascript:alert(1)"}, {"lead_id": "9"}) == {}
    assert lead_link("amocrm", {"base_url": "https://a.amocrm.ru"}, {"lead_id": "9/../x"}) == {}


# -- several processes, one Redis ----------------------------------------------------------


async def test_a_card_built_in_one_process_reaches_consoles_of_another(
    redis_url: str, redis_prefix: str
) -> None:
    a_redis, b_redis = Redis.from_url(redis_url), Redis.from_url(redis_url)
    leader = OperatorHub(redis=a_redis, prefix=redis_prefix)
    worker = OperatorHub(redis=b_redis, prefix=redis_prefix)
    await leader.start()
    await worker.start()
    try:
        on_leader, on_worker = leader.subscribe({"101"}), worker.subscribe({"101"})
        await leader.publish(card("c1", "101", version=1, state="ringing"))
        got = await asyncio.wait_for(on_worker.queue.get(), 5)
        assert got["card"]["state"] == "ringing"
        await leader.publish(card("c1", "101", version=2, state="answered"))
        got = await asyncio.wait_for(on_worker.queue.get(), 5)
        assert got["card"]["state"] == "answered"
        # The leader's own console heard each card once, not again from Redis.
        await asyncio.sleep(0.2)
        assert [m["card"]["version"] for m in drain(on_leader)] == [1, 2]
    finally:
        await leader.close()
        await worker.close()
        await a_redis.aclose()
        await b_redis.aclose()


async def test_a_process_started_mid_call_has_the_cards_in_progress(
    redis_url: str, redis_prefix: str
) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(2)]
    leader = OperatorHub(redis=clients[0], prefix=redis_prefix)
    await leader.start()
    late = OperatorHub(redis=clients[1], prefix=redis_prefix)
    try:
        await leader.publish(card("c1", "101", state="ringing"))
        assert await clients[0].hexists(redis_prefix + LIVE_HASH, "c1")
        await late.start()
        assert [c["id"] for c in late.snapshot({"101"})] == ["c1"]
    finally:
        await leader.close()
        await late.close()
        for c in clients:
            await c.aclose()


async def test_swept_cards_leave_the_shared_hash(redis_url: str, redis_prefix: str) -> None:
    client = Redis.from_url(redis_url)
    hub = OperatorHub(redis=client, prefix=redis_prefix, linger_seconds=0.3, sweep_seconds=0.05)
    live = redis_prefix + LIVE_HASH
    await hub.start()
    try:
        await hub.publish(card("c1", "101", ended=True))
        assert await client.hexists(live, "c1")
        await eventually(lambda: hub.get("c1") is None, what="the sweep")
        deadline = time.monotonic() + 5
        while await client.hexists(live, "c1"):
            assert time.monotonic() < deadline, "the swept card stayed in Redis"
            await asyncio.sleep(0.05)
    finally:
        await hub.close()
        await client.aclose()
