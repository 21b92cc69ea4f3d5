"""The pool page's size advice: the pool simulation fed with the pool's observed traffic."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.catalog import simulation as pool_simulation
from calltracker.db.models import Pool, Site, Visit

WINDOW_DAYS = 7
TARGETS = (0.99, 0.995)
# Visits one simulation runs through: about half a second for the whole size search.
VISIT_BUDGET = 20_000


@dataclass(frozen=True)
class PoolAdvice:
    visits: int  # seen in the window
    observed_days: float
    visits_per_hour: tuple[float, ...]  # mean by hour of day (UTC)
    accuracy: float  # expected at the pool's current size
    sizes: dict[float, int | None]  # target accuracy -> pool size (None: out of reach)
    simulated_flat: bool  # traffic too high to simulate whole days: the peak hour, flat


async def observed_visits(
    session: AsyncSession, pool: Pool, live: bool, now: datetime
) -> tuple[list[int], float]:
    """Visits by hour of day that asked this pool for a number, and the days they span.

    Visits that found the pool exhausted got the default number: they count too, when
    this is the site's live pool, as they are the demand a bigger pool would serve.
    """
    since = now - timedelta(days=WINDOW_DAYS)
    wanted = Visit.pool_id == pool.id
    if live:
        site = await session.get(Site, pool.site_id)
        exhausted = (
            (Visit.site_id == pool.site_id)
            & (Visit.number_kind == "default")
            & Visit.is_bot.is_(False)
        )
        if site is not None and site.pooled_mediums:
            exhausted = exhausted & Visit.medium.in_(site.pooled_mediums)
        wanted = or_(wanted, exhausted)
    # The hour in the session's time zone: a shift of the whole day changes nothing here.
    hour = func.extract("hour", Visit.started_at)
    rows = (
        await session.execute(
            select(hour, func.count(), func.min(Visit.started_at))
            .where(Visit.site_id == pool.site_id, Visit.started_at >= since, wanted)
            .group_by(hour)
        )
    ).all()
    by_hour = [0] * 24
    first = now
    for h, count, earliest in rows:
        by_hour[int(h) % 24] += int(count)
        first = min(first, earliest)
    days = min(max((now - first).total_seconds() / 86400, 1 / 24), WINDOW_DAYS)
    return by_hour, days


def advise(
    by_hour: list[int], days: float, size: int, hold_seconds: float, grace_seconds: float
) -> PoolAdvice:
    """Run the model (CPU-bound: call it in a thread)."""
    rates = tuple(count / max(days, 1.0) for count in by_hour)
    per_day = sum(rates)
    flat = per_day > VISIT_BUDGET
    if flat:
        # Too much traffic for whole days: size for the busiest hour, kept up all day.
        peak = max(rates)
        scenario = pool_simulation.Scenario(
            (peak,) * 24, size, hold_seconds, grace_seconds, days=VISIT_BUDGET / (peak * 24)
        )
    else:
        sim_days = min(max(VISIT_BUDGET / max(per_day, 1.0), 1.0), WINDOW_DAYS)
        scenario = pool_simulation.Scenario(rates, size, hold_seconds, grace_seconds, days=sim_days)
    outcome = pool_simulation.simulate(scenario)
    return PoolAdvice(
        visits=sum(by_hour),
        observed_days=days,
        visits_per_hour=rates,
        accuracy=outcome.accuracy,
        sizes=pool_simulation.sizes_for(scenario, TARGETS),
        simulated_flat=flat,
    )


async def pool_advice(
    session: AsyncSession, pool: Pool, size: int, live: bool, grace_seconds: float, now: datetime
) -> PoolAdvice | None:
    """The advice for one pool; None before it has seen any visit."""
    by_hour, days = await observed_visits(session, pool, live, now)
    if not any(by_hour):
        return None
    return await asyncio.to_thread(advise, by_hour, days, size, pool.hold_seconds, grace_seconds)
