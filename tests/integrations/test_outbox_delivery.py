"""The outbox end to end against the fake CRMs: one lead per call, whatever fails on the way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from calltracker.integrations import config as integration_config
from calltracker.integrations.base import DeliveryResult
from calltracker.integrations.outbox import lead, policy, store
from calltracker.integrations.outbox.policy import AUTH_MESSAGE, RetryPolicy
from calltracker.integrations.outbox.worker import OutboxWorkers
from calltracker.integrations.webhook import generate_secret
from calltracker.settings import Settings
from calltracker.telephony.recording_links import signature

from .fakes.amocrm import FakeAmoCrm
from .fakes.bitrix24 import FakeBitrix24
from .fakes.metrica import FakeMetrica
from .fakes.webhook_receiver import FakeWebhookReceiver
from .outbox_support import (  # noqa: F401  (fixtures)
    PUBLIC_URL,
    World,
    amo_config,
    bitrix_config,
    db_url_fixture,
    http_fixture,
    outbox_pg_database,
    pg_db_url_fixture,
    running_fixture,
    wait_until,
    world_fixture,
)

Start = Callable[[OutboxWorkers], OutboxWorkers]


def values_by_code(entity: dict[str, Any]) -> dict[str, str]:
    return {
        f["field_code"]: f["values"][0]["value"] for f in entity.get("custom_fields_values", [])
    }


async def all_in(world: World, *states: str) -> bool:
    current = await world.states()
    return bool(current) and all(state in states for state in current)


async def test_a_finished_call_makes_exactly_one_lead_in_bitrix24_and_amocrm(
    world: World,
    http: aiohttp.ClientSession,
    running: Start,
    bitrix: FakeBitrix24,
    amo: FakeAmoCrm,
) -> None:
    await world.integration("bitrix24", bitrix_config(bitrix))
    await world.integration("amocrm", amo_config(amo))
    await world.call(caller="+79991234567")
    running(world.workers(http))

    await wait_until(lambda: all_in(world, "done"), what="both rows done")

    (b_lead,) = bitrix.leads.values()
    assert b_lead["PHONE"] == [{"VALUE": "+79991234567", "VALUE_TYPE": "WORK"}]
    assert (b_lead["UTM_SOURCE"], b_lead["UTM_CAMPAIGN"], b_lead["UTM_TERM"]) == (
        "yandex",
        "brand_msk",
        "купить диван",
    )
    (a_lead,) = amo.leads.values()
    fields = values_by_code(a_lead)
    assert (fields["UTM_SOURCE"], fields["UTM_CAMPAIGN"], fields["UTM_TERM"]) == (
        "yandex",
        "brand_msk",
        "купить диван",
    )
    contact = amo.contacts[a_lead["contact_id"]]
    assert values_by_code(contact)["PHONE"] == "+79991234567"
    rows = await world.rows()
    assert {r.remote_ids.get("lead_id") for r in rows} == {str(b_lead["ID"]), str(a_lead["id"])}
    assert all(r.attempts == 1 and r.sent_at is not None for r in rows)


async def test_a_crm_that_is_down_for_a_while_gets_every_lead_once_when_it_is_back(
    world: World, http: aiohttp.ClientSession, running: Start, bitrix: FakeBitrix24
) -> None:
    await world.integration("bitrix24", bitrix_config(bitrix))
    await bitrix.down()
    calls = [await world.call() for _ in range(3)]
    running(world.workers(http))

    async def retried_twice() -> bool:
        rows = await world.rows()
        return all(r.state == "failed" and r.attempts >= 2 for r in rows)

    await wait_until(retried_twice, what="rows failing while the CRM is down")
    assert "network error" in (await world.rows())[0].last_error
    await bitrix.up()
    await wait_until(lambda: all_in(world, "done"), what="all delivered")

    assert len(bitrix.leads) == 3
    origins = sorted(lead["ORIGIN_ID"] for lead in bitrix.leads.values())
    assert len(set(origins)) == 3
    assert sorted(r.call_id for r in await world.rows()) == sorted(calls)


async def test_query_limit_exceeded_is_retried_later_and_delivered_once(
    world: World, http: aiohttp.ClientSession, running: Start, bitrix: FakeBitrix24
) -> None:
    await world.integration("bitrix24", bitrix_config(bitrix))
    bitrix.fail_next(
        1, 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    )
    await world.call()
    running(world.workers(http))

    await wait_until(lambda: all_in(world, "done"), what="delivered after the 503")

    (row,) = await world.rows()
    assert row.attempts == 2
    assert len(bitrix.leads) == 1


async def test_a_permanent_rejection_is_dead_at_once_with_the_remotes_message(
    world: World, http: aiohttp.ClientSession, running: Start, bitrix: FakeBitrix24
) -> None:
    await world.integration("bitrix24", bitrix_config(bitrix))
    bitrix.denied_methods.add("crm.lead.add")
    await world.call()
    running(world.workers(http))

    await wait_until(lambda: all_in(world, "dead"), what="the row dead")

    (row,) = await world.rows()
    assert row.attempts == 1
    assert row.error_kind == "permanent"
    assert "Access denied." in row.last_error
    assert bitrix.leads == {}


async def test_a_worker_that_died_mid_send_is_retried_after_its_lease_and_makes_one_lead(
    world: World, http: aiohttp.ClientSession, running: Start, bitrix: FakeBitrix24
) -> None:
    integration_id = await world.integration("bitrix24", bitrix_config(bitrix))
    await world.call()
    # Worker A: claims the row, gets the lead into the CRM, and dies before recording it.
    workers_a = world.workers(http, lease_seconds=0.3)
    now = datetime.now(UTC)
    async with world.sessionmaker.begin() as session:
        (claimed,) = await store.claim(
            session, integration_id, now=now, lease_until=now + timedelta(seconds=0.3), limit=1
        )
        stored = (await lead.load_calls(session, [claimed.call_id]))[claimed.call_id]
    async with world.sessionmaker() as session:
        integration = await integration_config.get_integration(session, integration_id)
    adapter = workers_a.adapters.get(integration)
    await adapter.deliver(lead.lead_call(stored, "hangup", lambda c: ""), claimed.key)
    assert await world.states() == ["sending"] and len(bitrix.leads) == 1

    running(world.workers(http))
    await wait_until(lambda: all_in(world, "done"), what="the row retried after the lease")

    (row,) = await world.rows()
    assert row.attempts == 2
    assert len(bitrix.leads) == 1  # found by ORIGIN_ID, not added again


async def test_an_auth_failure_waits_for_new_credentials_and_then_goes_out(
    world: World, http: aiohttp.ClientSession, running: Start, amo: FakeAmoCrm
) -> None:
    integration_id = await world.integration("amocrm", amo_config(amo, access_token="expired"))
    await world.call()
    running(world.workers(http))

    await wait_until(lambda: all_in(world, "failed"), what="the auth failure")
    (row,) = await world.rows()
    assert row.error_kind == "auth"
    assert row.last_error.startswith(AUTH_MESSAGE)
    assert row.attempts == 0  # not counted against max_attempts
    assert row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=30)  # long delay
    async with world.sessionmaker() as session:
        assert (await store.counts(session))[integration_id].auth_failed == 1

    async with world.sessionmaker.begin() as session:
        integration = await integration_config.get_integration(session, integration_id)
        await integration_config.update_integration(
            session, integration, config_patch={"access_token": amo.token}
        )
    await wait_until(lambda: all_in(world, "done"), what="delivered with the new token")
    assert len(amo.leads) == 1


async def test_temporary_failures_end_dead_after_max_attempts(
    world: World, http: aiohttp.ClientSession, running: Start, bitrix: FakeBitrix24
) -> None:
    await world.integration("bitrix24", bitrix_config(bitrix))
    await bitrix.down()
    await world.call()
    running(world.workers(http, retry=RetryPolicy(max_attempts=3, base=0.01, cap=0.02)))

    await wait_until(lambda: all_in(world, "dead"), what="the row dead")

    (row,) = await world.rows()
    assert row.attempts == 3
    assert row.last_error.startswith("gave up after 3 attempts")


async def test_a_gone_webhook_receiver_is_dead_and_its_integration_disabled(
    world: World,
    http: aiohttp.ClientSession,
    running: Start,
    receiver: FakeWebhookReceiver,
) -> None:
    config = {"url": receiver.hook_url, "secret": generate_secret(), "allow_private_network": True}
    integration_id = await world.integration("webhook", config)
    receiver.answer(410)
    await world.call()
    running(world.workers(http))

    await wait_until(lambda: all_in(world, "dead"), what="the row dead")
    async with world.sessionmaker() as session:
        integration = await integration_config.get_integration(session, integration_id)
    assert integration.enabled is False
    (row,) = await world.rows()
    assert row.error_kind == "gone"


async def test_a_stop_mid_send_releases_the_row_and_the_next_start_sends_it_with_the_same_body(
    world: World,
    http: aiohttp.ClientSession,
    running: Start,
    receiver: FakeWebhookReceiver,
) -> None:
    config = {"url": receiver.hook_url, "secret": generate_secret(), "allow_private_network": True}
    await world.integration("webhook", config)
    receiver.hang = True
    await world.call(recording="2026/11/call.mp3")
    first = world.workers(http, shutdown_grace=0.1)
    first.start()
    await wait_until(lambda: _has(receiver), what="the first delivery to hang")
    await first.stop()

    (row,) = await world.rows()
    assert row.state == "failed" and "interrupted" in row.last_error
    receiver.hang = False
    running(world.workers(http))
    await wait_until(lambda: all_in(world, "done"), what="sent after the restart")

    hung, sent = receiver.deliveries
    assert hung.headers["webhook-id"] == sent.headers["webhook-id"] == row.idempotency_key
    assert hung.body == sent.body  # the signed recording link is the same on every retry


async def _has(receiver: FakeWebhookReceiver) -> bool:
    return bool(receiver.deliveries)


async def test_the_lead_carries_an_absolute_signed_recording_link(
    world: World,
    http: aiohttp.ClientSession,
    running: Start,
    receiver: FakeWebhookReceiver,
) -> None:
    config = {"url": receiver.hook_url, "secret": generate_secret(), "allow_private_network": True}
    await world.integration("webhook", config)
    call_id = await world.call(recording="2026/11/call.mp3")
    running(world.workers(http))
    await wait_until(lambda: all_in(world, "done"), what="delivered")

    url = json.loads(receiver.deliveries[0].body)["data"]["call"]["recording_url"]
    parts = urlsplit(url)
    assert url.startswith(f"{PUBLIC_URL}/recordings/{call_id}.mp3?")
    query = parse_qs(parts.query)
    expires = int(query["expires"][0])
    assert expires > datetime.now(UTC).timestamp() + 80 * 86400
    assert query["sig"][0] == signature(Settings().secret_key, call_id, expires)


async def test_metrica_rows_go_in_one_upload_once_enough_are_due(
    world: World, http: aiohttp.ClientSession, running: Start
) -> None:
    metrica = FakeMetrica()
    await metrica.start()
    try:
        config = {"counter_id": metrica.counter_id, "oauth_token": metrica.token}
        await world.integration("metrica", {**config, "base_url": metrica.url})
        workers = world.workers(http, batch_size=3, batch_interval=60.0)
        await world.call()
        await world.call()
        assert await workers.run_once() == 0  # two due, fewer than a batch, none waited long
        call_id = await world.call()
        assert await workers.run_once() == 3

        (upload,) = metrica.uploads
        assert len(upload.rows) == 3
        rows = await world.rows()
        assert {r.state for r in rows} == {"done"}
        assert {r.remote_ids["upload_id"] for r in rows} == {str(upload.id)}
        assert call_id in {r.call_id for r in rows}
    finally:
        await metrica.close()


async def test_a_lone_metrica_row_goes_once_it_waited_the_batch_interval(
    world: World, http: aiohttp.ClientSession, running: Start
) -> None:
    metrica = FakeMetrica()
    await metrica.start()
    try:
        config = {"counter_id": metrica.counter_id, "oauth_token": metrica.token}
        await world.integration("metrica", {**config, "base_url": metrica.url})
        await world.call()
        running(world.workers(http, batch_size=100, batch_interval=0.3))

        await wait_until(lambda: all_in(world, "done"), what="the scheduled upload")
        assert len(metrica.uploads) == 1
    finally:
        await metrica.close()


async def test_one_integration_has_one_delivery_in_flight_at_a_time(
    world: World, bitrix: FakeBitrix24
) -> None:
    integration_id = await world.integration("bitrix24", bitrix_config(bitrix))
    await world.call()
    await world.call()
    now = datetime.now(UTC)
    lease = now + timedelta(seconds=30)

    async def claim() -> list[store.Claimed]:
        async with world.sessionmaker.begin() as session:
            return await store.claim(session, integration_id, now=now, lease_until=lease, limit=1)

    (first,) = await claim()
    assert await claim() == []  # the other row waits: its remote is busy with the first
    async with world.sessionmaker.begin() as session:
        assert await store.finish(session, first, policy.delivered(DeliveryResult()), now)
    (second,) = await claim()
    assert second.row_id != first.row_id


async def test_zero_workers_send_nothing(
    world: World, http: aiohttp.ClientSession, running: Start, bitrix: FakeBitrix24
) -> None:
    await world.integration("bitrix24", bitrix_config(bitrix))
    workers = running(world.workers(http, workers=0))
    await world.call()
    workers.wake()
    await asyncio.sleep(0.2)  # ten polls' worth

    assert await world.states() == ["pending"]
    assert bitrix.requests == []
