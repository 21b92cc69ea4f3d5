"""Visits per local day and label, counted once a day is over (the VisitDay tables).

Counting visits is most of a long report's time: a year is millions of rows, each read on
every report. A day that is over never changes (a visit's start is the moment it was
recorded), so its counts are kept: a background task rolls up every site's finished days,
and reports add up those rows, counting from `visit` only the days not rolled up yet.
Calls are not rolled up: they change after their day (hangup, CDR import), and are a
fifth as many.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Date, String, delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.clock import as_date, local_midnight
from calltracker.db.engine import SessionMaker
from calltracker.db.models import Site, Visit
from calltracker.db.report_models import VisitDay, VisitDayDone
from calltracker.db.upsert import insert_for
from calltracker.reports.model import LEVELS

log = logging.getLogger(__name__)

# A day is rolled up this long after its local midnight: visits are stamped when they are
# recorded, and several workers' clocks may differ a little.
SETTLE = timedelta(minutes=10)
LOOKBACK_DAYS = 800  # more than a report may span (query.MAX_DAYS)
INTERVAL_SECONDS = 600
DAYS_PER_TRANSACTION = 7  # bounds how long SQLite's write lock is held from visits


def finished_days(tz: ZoneInfo, now: datetime, lookback_days: int) -> list[date]:
    """The local days, newest last, whose visits can no longer change at `now`."""
    today = now.astimezone(tz).date()
    days = [today - timedelta(days=n) for n in range(lookback_days, -1, -1)]
    return [d for d in days if local_midnight(tz, d + timedelta(days=1)) + SETTLE <= now]


async def rolled_days(
    session: AsyncSession, site_id: int, tz: str, first: date, last: date
) -> set[date]:
    query = select(VisitDayDone.day).where(
        VisitDayDone.site_id == site_id,
        VisitDayDone.tz == tz,
        VisitDayDone.day >= first,
        VisitDayDone.day <= last,
    )
    return {as_date(d) for d in await session.scalars(query)}


async def roll_up_day(session: AsyncSession, site_id: int, tz_name: str, day: date) -> bool:
    """Count one finished day's visits into VisitDay; False when it was rolled up already.

    The VisitDayDone row goes first: a second worker rolling up the same day waits on its
    key (PostgreSQL) or on the write lock (SQLite), then inserts nothing and skips the day.
    """
    claim = (
        insert_for(session)(VisitDayDone)
        .values(site_id=site_id, tz=tz_name, day=day, rolled_at=datetime.now(UTC))
        .on_conflict_do_nothing()
    )
    claimed = await session.execute(claim)
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return False
    tz = ZoneInfo(tz_name)
    labels = [getattr(Visit, name) for name in LEVELS]
    counted = (
        select(
            literal(site_id),
            literal(tz_name, String()),
            literal(day, Date()),
            *labels,
            func.count(),
        )
        .where(
            Visit.site_id == site_id,
            Visit.started_at >= local_midnight(tz, day),
            Visit.started_at < local_midnight(tz, day + timedelta(days=1)),
            Visit.is_bot.is_(False),
        )
        .group_by(*labels)
    )
    columns = ["site_id", "tz", "day", *LEVELS, "visits"]
    await session.execute(insert(VisitDay).from_select(columns, counted))
    return True


async def roll_up_site(
    sessionmaker: SessionMaker,
    site_id: int,
    tz_name: str,
    now: datetime,
    lookback_days: int = LOOKBACK_DAYS,
) -> int:
    """Roll up the site's finished days not rolled up yet; returns how many it did."""
    tz = ZoneInfo(tz_name)
    async with sessionmaker() as session:
        first_visit = await session.scalar(
            select(func.min(Visit.started_at)).where(Visit.site_id == site_id)
        )
        if first_visit is None:
            return 0  # nothing to count; days before the first visit are counted as empty
        first_day = first_visit.astimezone(tz).date()
        days = [d for d in finished_days(tz, now, lookback_days) if d >= first_day]
        if not days:
            return 0
        done = await rolled_days(session, site_id, tz_name, days[0], days[-1])
    todo = [d for d in days if d not in done]
    rolled = 0
    for chunk in _chunks(todo, DAYS_PER_TRANSACTION):
        async with sessionmaker.begin() as session:
            for day in chunk:
                rolled += await roll_up_day(session, site_id, tz_name, day)
    return rolled


async def roll_up_all(sessionmaker: SessionMaker, now: datetime) -> int:
    async with sessionmaker() as session:
        sites = (await session.execute(select(Site.id, Site.timezone))).all()
    total = 0
    for site_id, tz_name in sites:
        total += await roll_up_site(sessionmaker, site_id, tz_name, now)
    return total


async def forget_site(session: AsyncSession, site_id: int) -> None:
    """Drop a site's rolled-up days, after visits were added to days already over (demo data)."""
    await session.execute(delete(VisitDay).where(VisitDay.site_id == site_id))
    await session.execute(delete(VisitDayDone).where(VisitDayDone.site_id == site_id))


def _chunks(items: list[date], size: int) -> Iterable[list[date]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
