"""Reading deals from a CRM (its fake): what webhooks named, leads that became deals, the
polling backstop with one poller at a time, and a CRM outage that only delays a deal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import select

from calltracker.db.deal_models import CrmFetch, Deal
from calltracker.deals.sync import DealSync, DealSyncSettings, name_records
from calltracker.integrations.outbox.adapters import AdapterCache
from tests.integrations.fakes.bitrix24 import FakeBitrix24
from tests.integrations.outbox_support import (  # noqa: F401  (fixtures)
    World,
    bitrix_config,
    db_url_fixture,
    http_fixture,
    outbox_pg_database,
    pg_db_url_fixture,
    world_fixture,
)


@pytest.fixture
async def portal() -> AsyncIterator[FakeBitrix24]:
    fake = FakeBitrix24()
    await fake.start()
    yield fake
    await fake.close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def setup(world: World, portal: FakeBitrix24) -> int:
    return await world.integration(
        "bitrix24", bitrix_config(portal, deals={"application_token": "t"})
    )


def syncer(world: World, http: aiohttp.ClientSession, clock: Clock | None = None) -> DealSync:
    return DealSync(
        world.sessionmaker, AdapterCache(http), DealSyncSettings(), clock=clock or Clock()
    )


async def deals(world: World) -> list[Deal]:
    async with world.sessionmaker() as session:
        return list(await session.scalars(select(Deal).order_by(Deal.id)))


async def test_a_lead_event_reads_the_deals_the_lead_became(
    world: World, http: aiohttp.ClientSession, portal: FakeBitrix24
) -> None:
    crm = await setup(world, portal)
    lead = portal.add_lead("+79160000001")
    deal = portal.convert_lead(lead, amount=1200)
    async with world.sessionmaker.begin() as session:
        await name_records(session, crm, [("lead", str(lead))], datetime.now(UTC))

    assert await syncer(world, http).fetch_named() == 1

    (stored,) = await deals(world)
    assert (stored.remote_id, stored.lead_remote_id, stored.amount) == (
        str(deal),
        str(lead),
        120_000,
    )


async def test_only_one_of_two_processes_polls_a_crm(
    world: World, http: aiohttp.ClientSession, portal: FakeBitrix24
) -> None:
    crm = await setup(world, portal)
    for n in range(3):
        portal.add_deal(title=f"d{n}")
    first, second = syncer(world, http), syncer(world, http)

    read = await asyncio.gather(first.poll(crm), second.poll(crm))

    assert sorted(read) == [0, 3]
    assert len([m for m, _ in portal.calls_log if m == "crm.deal.list"]) == 1
    assert len(await deals(world)) == 3
    assert await first.poll(crm) == 0  # not due again before poll_minutes


async def test_a_crm_outage_delays_a_named_deal_and_loses_nothing(
    world: World, http: aiohttp.ClientSession, portal: FakeBitrix24
) -> None:
    crm = await setup(world, portal)
    deal = portal.add_deal(title="during the outage")
    clock = Clock()
    sync = syncer(world, http, clock)
    async with world.sessionmaker.begin() as session:
        await name_records(session, crm, [("deal", str(deal))], clock())
    await portal.down()

    assert await sync.fetch_named() == 0
    async with world.sessionmaker() as session:
        (waiting,) = (await session.scalars(select(CrmFetch))).all()
    assert waiting.attempts == 1 and "network error" in waiting.last_error

    await portal.up()
    clock.now += timedelta(hours=2)
    assert await sync.fetch_named() == 1
    assert [d.remote_id for d in await deals(world)] == [str(deal)]
    async with world.sessionmaker() as session:
        assert (await session.scalars(select(CrmFetch))).all() == []
