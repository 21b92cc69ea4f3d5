"""Deals in the database, on both: one row per deal however often it is read, its history,
re-valued and reopened deals, late reads, and matching against the calls stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from calltracker.db.deal_models import CrmFetch, Deal, DealStage
from calltracker.db.integration_models import OutboxRow
from calltracker.deals import store
from calltracker.deals.snapshot import DealSnapshot
from calltracker.deals.sync import name_records
from tests.integrations.outbox_support import (  # noqa: F401  (fixtures)
    World,
    db_url_fixture,
    outbox_pg_database,
    pg_db_url_fixture,
    world_fixture,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def deal(**changes: object) -> DealSnapshot:
    values: dict[str, object] = {
        "remote_id": "759",
        "opened_at": NOW - timedelta(minutes=1),
        "stage_id": "NEW",
        "status": "open",
        "amount": 500_000,
        "currency": "RUB",
        "updated_at": NOW,
    }
    values.update(changes)
    return DealSnapshot(**values)  # type: ignore[arg-type]


async def origin(world: World) -> store.Origin:
    """Posted deals of the site, which has one ad platform taking won deals."""
    await world.integration("metrica", {"counter_id": 1, "oauth_token": "t", "revenue_goal": "won"})
    return store.Origin(site_id=world.site_id, region="RU", crm="api", window=timedelta(days=30))


async def put(world: World, where: store.Origin, snap: DealSnapshot) -> store.Upserted:
    async with world.sessionmaker.begin() as session:
        return await store.upsert(session, where, snap, seen_via="poll", now=NOW)


async def count(world: World, table: type) -> int:
    async with world.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_a_deal_read_again_is_one_row_and_its_history_grows_only_with_changes(
    world: World,
) -> None:
    where = await origin(world)
    first = await put(world, where, deal())
    again = await put(world, where, deal())
    moved = await put(world, where, deal(stage_id="EXECUTING", updated_at=NOW + timedelta(1)))

    assert (first.created, again.changed, moved.changed) == (True, False, True)
    assert await count(world, Deal) == 1
    assert await count(world, DealStage) == 2


async def test_a_late_read_older_than_the_stored_one_changes_nothing(world: World) -> None:
    where = await origin(world)
    await put(world, where, deal(status="won", stage_id="WON", updated_at=NOW))
    late = await put(world, where, deal(updated_at=NOW - timedelta(minutes=5)))

    assert not late.changed
    async with world.sessionmaker() as session:
        row = await session.scalar(select(Deal))
    assert row is not None and row.status == "won"


async def test_a_won_deal_reopened_and_won_again_is_reported_to_the_platforms_once(
    world: World,
) -> None:
    where = await origin(world)
    call_id = await world.call(caller="+79161234567", started=NOW - timedelta(hours=1))
    won = deal(status="won", stage_id="WON", phones=("8 916 123-45-67",), call_id=call_id)

    first = await put(world, where, won)
    await put(
        world, where, deal(phones=("89161234567",), call_id=call_id, updated_at=NOW + timedelta(1))
    )
    again = await put(world, where, deal(status="won", stage_id="WON", amount=700_000,
                                         call_id=call_id, updated_at=NOW + timedelta(2)))  # fmt: skip

    assert (first.won_queued, again.won_queued) == (1, 0)
    async with world.sessionmaker() as session:
        rows = (await session.scalars(select(OutboxRow).where(OutboxRow.stage == "won"))).all()
        stored = await session.scalar(select(Deal))
    assert len(rows) == 1 and rows[0].deal_id == first.deal_id
    assert stored is not None and (stored.amount, stored.status) == (700_000, "won")


async def test_a_deal_the_crm_made_itself_matches_its_callers_call_within_the_window(
    world: World,
) -> None:
    where = await origin(world)
    recent = await world.call(caller="+79160000011", started=NOW - timedelta(hours=1))
    await world.call(caller="+79160000022", started=NOW - timedelta(days=45))

    near = await put(world, where, deal(remote_id="1", phones=("+7 916 000-00-11",)))
    far = await put(world, where, deal(remote_id="2", phones=("+79160000022",)))
    tagged = await put(world, where, deal(remote_id="3", tracking={"utm_source": "vk"}))

    assert (near.match.basis, near.match.call_id) == ("window", recent)
    assert (far.match.basis, far.match.call_id) == ("none", None)
    assert (tagged.match.basis, tagged.match.labels[0]) == ("utm", "vk")


async def test_a_webhook_naming_a_record_twice_queues_one_fetch(world: World) -> None:
    crm = await world.integration("metrica", {"counter_id": 1, "oauth_token": "t"})
    for _ in range(3):
        async with world.sessionmaker.begin() as session:
            await name_records(session, crm, [("deal", "759"), ("deal", "759")], NOW)
    async with world.sessionmaker() as session:
        fetches = (await session.scalars(select(CrmFetch))).all()
    assert [(f.entity, f.remote_id, f.generation) for f in fetches] == [("deal", "759", 3)]


async def test_a_deal_the_crm_deleted_leaves_the_report(world: World) -> None:
    where = await origin(world)
    await put(world, where, deal(status="won", stage_id="WON"))
    async with world.sessionmaker.begin() as session:
        assert await store.forget(session, where, "759")
    assert await count(world, Deal) == 0


async def test_a_report_given_up_because_the_deal_reopened_goes_out_when_it_is_won_again(
    world: World,
) -> None:
    where = await origin(world)
    call_id = await world.call(caller="+79161234568", started=NOW - timedelta(hours=1))
    await put(world, where, deal(status="won", stage_id="WON", call_id=call_id))
    async with world.sessionmaker.begin() as session:
        row = await session.scalar(select(OutboxRow).where(OutboxRow.stage == "won"))
        assert row is not None
        # What the worker does with a deal reopened before its report went out.
        row.state, row.error_kind = "dead", "invalid"
    await put(world, where, deal(call_id=call_id, updated_at=NOW + timedelta(1)))
    won = await put(world, where, deal(status="won", stage_id="WON", call_id=call_id,
                                       updated_at=NOW + timedelta(2)))  # fmt: skip

    assert won.won_queued == 1
    async with world.sessionmaker() as session:
        states = (
            await session.scalars(select(OutboxRow.state).where(OutboxRow.stage == "won"))
        ).all()
    assert list(states) == ["pending"]
