"""Finished days' visit counts (reports/visit_rollup.py): reports read them, cell for cell the
same as counting every visit, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from calltracker.app import create_app
from calltracker.db.models import Site
from calltracker.db.report_models import VisitDay
from calltracker.keys import sessionmaker_key
from calltracker.reports import visit_rollup
from calltracker.settings import Settings
from tests.reports.conftest import Client, Loaded

RANGE = "site=shop&from=2026-03-01&to=2026-03-03"
QUERIES = [
    RANGE,
    f"{RANGE}&group=keyword",
    f"{RANGE}&group=campaign&source=yandex",
    f"{RANGE}&group=keyword&source=yandex&medium=cpc&campaign=brand",
    "site=shop&from=2026-02-28&to=2026-03-02",
]
MSK = "Europe/Moscow"
AFTER_MARCH = datetime(2026, 4, 2, tzinfo=UTC)


async def reports(client: Client, loaded: Loaded) -> list[Any]:
    out = []
    for query in QUERIES:
        resp = await client.get(f"/api/v1/reports/calls?{query}", headers=loaded.headers)
        assert resp.status == 200, await resp.text()
        out.append(await resp.json())
    return out


async def rollup_rows(client: Client) -> int:
    async with client.app[sessionmaker_key]() as session:
        return int(await session.scalar(select(func.count()).select_from(VisitDay)) or 0)


async def test_reports_read_the_same_from_rolled_up_days(client: Client, loaded: Loaded) -> None:
    counted = await reports(client, loaded)
    site_id = loaded.seeded.site_id

    rolled = await visit_rollup.roll_up_site(
        client.app[sessionmaker_key], site_id, MSK, AFTER_MARCH, lookback_days=45
    )

    assert rolled == 33  # from the first visit's day, 2026-02-28, to 2026-04-01, empty days too
    assert await rollup_rows(client) > 0
    assert await reports(client, loaded) == counted
    # And the rolled-up rows are what the report reads now, not the visits.
    async with client.app[sessionmaker_key].begin() as session:
        await session.execute(
            update(VisitDay)
            .where(VisitDay.day == date(2026, 3, 2), VisitDay.campaign == "generic")
            .values(visits=VisitDay.visits + 100)
        )
    [by_source, *_] = await reports(client, loaded)
    assert by_source["totals"]["visits"] == counted[0]["totals"]["visits"] + 100


async def test_a_range_partly_rolled_up_adds_both_parts(client: Client, loaded: Loaded) -> None:
    counted = await reports(client, loaded)
    async with client.app[sessionmaker_key].begin() as session:
        for day in (date(2026, 2, 28), date(2026, 3, 2)):  # not consecutive on purpose
            assert await visit_rollup.roll_up_day(session, loaded.seeded.site_id, MSK, day)
    assert await reports(client, loaded) == counted


async def test_a_day_rolled_up_twice_counts_once(client: Client, loaded: Loaded) -> None:
    site_id = loaded.seeded.site_id
    async with client.app[sessionmaker_key].begin() as session:
        assert await visit_rollup.roll_up_day(session, site_id, MSK, date(2026, 3, 1))
    rows = await rollup_rows(client)
    async with client.app[sessionmaker_key].begin() as session:
        # Another worker's turn at the same day: claimed already, it adds nothing.
        assert not await visit_rollup.roll_up_day(session, site_id, MSK, date(2026, 3, 1))
    assert await rollup_rows(client) == rows > 0


async def test_a_site_moved_to_another_zone_is_not_summed_by_the_old_zones_days(
    client: Client, loaded: Loaded
) -> None:
    await visit_rollup.roll_up_site(
        client.app[sessionmaker_key], loaded.seeded.site_id, MSK, AFTER_MARCH, lookback_days=45
    )
    async with client.app[sessionmaker_key].begin() as session:
        await session.execute(
            update(Site).where(Site.id == loaded.seeded.site_id).values(timezone="UTC")
        )
    in_utc = await reports(client, loaded)
    async with client.app[sessionmaker_key].begin() as session:
        await visit_rollup.forget_site(session, loaded.seeded.site_id)
    assert await rollup_rows(client) == 0
    assert await reports(client, loaded) == in_utc


def test_a_day_is_finished_ten_minutes_after_its_local_midnight() -> None:
    tz = ZoneInfo(MSK)
    just_after = datetime(2026, 3, 2, 0, 5, tzinfo=tz)  # Moscow
    settled = datetime(2026, 3, 2, 0, 11, tzinfo=tz)
    assert visit_rollup.finished_days(tz, just_after, 3) == [
        date(2026, 2, 27),
        date(2026, 2, 28),
    ]
    assert visit_rollup.finished_days(tz, settled, 3)[-1] == date(2026, 3, 1)


async def test_a_starting_server_rolls_up_the_finished_days_in_the_background(
    client: Client, loaded: Loaded, aiohttp_client: Any, settings: Settings
) -> None:
    counted = await reports(client, loaded)
    # A second server on the same database, as after a restart or an upgrade.
    restarted = await aiohttp_client(create_app(settings))
    for _ in range(200):
        async with restarted.app[sessionmaker_key]() as session:
            march = await visit_rollup.rolled_days(
                session, loaded.seeded.site_id, MSK, date(2026, 3, 1), date(2026, 3, 3)
            )
        if len(march) == 3:
            break
        await asyncio.sleep(0.05)
    assert march == {date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)}
    assert await reports(restarted, loaded) == counted
