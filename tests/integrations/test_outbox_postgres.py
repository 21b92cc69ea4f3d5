"""Several workers on one PostgreSQL database: SKIP LOCKED keeps every row to one of them."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from calltracker.db.engine import create_engine, create_sessionmaker
from calltracker.integrations.outbox import store
from calltracker.integrations.webhook import generate_secret

from .fakes.webhook_receiver import FakeWebhookReceiver
from .outbox_support import (  # noqa: F401  (fixtures)
    World,
    http_fixture,
    make_world,
    outbox_pg_database,
    pg_db_url_fixture,
    wait_until,
)


@pytest.fixture(name="pg_world")
async def pg_world_fixture(pg_db_url: str) -> AsyncIterator[World]:
    async for world in make_world(pg_db_url):
        yield world


def hook(receiver: FakeWebhookReceiver) -> dict[str, object]:
    return {"url": receiver.hook_url, "secret": generate_secret(), "allow_private_network": True}


async def test_a_claimed_integration_is_skipped_not_waited_for_by_another_worker(
    pg_world: World, receiver: FakeWebhookReceiver
) -> None:
    first = await pg_world.integration("webhook", hook(receiver))
    second = await pg_world.integration("webhook", hook(receiver))
    await pg_world.call()
    now = datetime.now(UTC)
    lease = now + timedelta(seconds=30)
    async with pg_world.sessionmaker.begin() as a:
        claimed_a = await store.claim(a, first, now=now, lease_until=lease, limit=10)
        assert len(claimed_a) == 1
        # A second worker, while the first one's claim is still uncommitted (its locks held):
        async with pg_world.sessionmaker.begin() as b:
            same = await asyncio.wait_for(
                store.claim(b, first, now=now, lease_until=lease, limit=10), timeout=2
            )
            other = await store.claim(b, second, now=now, lease_until=lease, limit=10)
    assert same == []  # skipped, not blocked and not doubled
    assert len(other) == 1 and other[0].row_id != claimed_a[0].row_id


async def test_two_workers_with_their_own_connections_send_every_row_exactly_once(
    pg_world: World, http: aiohttp.ClientSession, receiver: FakeWebhookReceiver
) -> None:
    for _ in range(4):
        await pg_world.integration("webhook", hook(receiver))
    for _ in range(6):
        await pg_world.call()
    other_engine = create_engine(pg_world.url)
    # Two processes, in effect: separate pools, adapters and in-process bookkeeping.
    a = pg_world.workers(http, workers=2)
    b = pg_world.workers(http, sessionmaker=create_sessionmaker(other_engine), workers=2)
    a.start()
    b.start()
    try:

        async def all_done() -> bool:
            return set(await pg_world.states()) == {"done"}

        await wait_until(all_done, what="every row sent")
    finally:
        await a.stop()
        await b.stop()
        await other_engine.dispose()

    sent = Counter(d.headers["webhook-id"] for d in receiver.deliveries)
    assert len(sent) == 24
    assert set(sent.values()) == {1}
    assert all(row.attempts == 1 for row in await pg_world.rows())
