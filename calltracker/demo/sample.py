"""Demo report data: a month of visits, calls, spend and deals for a site, the same every run."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.db.deal_models import Deal
from calltracker.db.models import Call, Site, Visit
from calltracker.db.report_models import AdSpend
from calltracker.reports import money, visit_rollup

CURRENCY = "RUB"
# source, medium, campaign, keywords, visits a day, calls per visit, spend a day (roubles)
CHANNELS = [
    ("yandex", "cpc", "brand", ("divan", "divan kupit"), 60, 0.06, 4000),
    ("yandex", "cpc", "generic", ("mebel", "kreslo", "stol"), 90, 0.03, 6500),
    ("google", "cpc", "spring-sale", ("sofa", "armchair"), 40, 0.04, 3000),
    ("google", "organic", "", ("",), 70, 0.02, 0),
    ("vk", "social", "retarget", ("",), 30, 0.015, 1200),
    ("(direct)", "(none)", "", ("",), 50, 0.05, 0),
]
# Static numbers' labels: calls without visits (see calltracker demo's static numbers).
OFFLINE = [
    ("billboard", "outdoor", "tverskaya-2026", 3, 2500),
    ("radio", "offline", "europa-plus-spring", 2, 1800),
]


@dataclass(frozen=True)
class DemoSummary:
    visits: int
    calls: int
    spend_rows: int
    deals: int
    first_day: date
    last_day: date


async def seed_demo(
    session: AsyncSession,
    site: Site,
    *,
    days: int = 30,
    now: datetime | None = None,
    seed: int = 7,
) -> DemoSummary:
    """Add demo traffic for the `days` local days up to `now`, none of it later; skip if the
    site has calls."""
    tz = ZoneInfo(site.timezone)
    now = now or datetime.now(UTC)
    last = now.astimezone(tz).date()
    first = last - timedelta(days=days - 1)
    if await session.scalar(select(func.count()).select_from(Call).where(Call.site_id == site.id)):
        return DemoSummary(0, 0, 0, 0, first, last)
    await money.lock_currency(session, site.id, CURRENCY)
    rng = random.Random(seed)
    visits: list[Visit] = []
    calls: list[Call] = []
    spend: list[AdSpend] = []

    def moment(day: date) -> datetime:
        # Daytime-weighted: most traffic between 8:00 and 23:00 local.
        minute = int(rng.triangular(8 * 60, 23 * 60 + 59, 14 * 60))
        local = datetime.combine(day, time(minute // 60, minute % 60, rng.randrange(60)), tz)
        at = local.astimezone(UTC)
        if at <= now:
            return at
        # Today's traffic so far: a call at 22:00 must not show before it has happened.
        midnight = datetime.combine(day, time(0), tz).astimezone(UTC)
        return midnight + (now - midnight) * rng.random()

    def add_call(day: date, label: tuple[str, str, str, str], visit_id: str | None) -> None:
        answered = rng.random() > 0.15
        talk = rng.randrange(5, 400) if answered else 0
        caller = f"+7916{rng.randrange(10**7):07d}"
        calls.append(
            Call(
                linkedid=f"demo-{site.id}-{len(calls)}",
                site_id=site.id,
                tracking_number=site.default_number,
                caller=caller,
                started_at=moment(day),
                talk_seconds=talk,
                status="answered" if answered else rng.choice(("missed", "busy")),
                visit_id=visit_id,
                source=label[0],
                medium=label[1],
                campaign=label[2],
                keyword=label[3],
                attribution="exact",
                unique=rng.random() > 0.2,
                target=answered and talk >= site.target_min_talk_seconds,
            )
        )

    for n in range(days):
        day = first + timedelta(days=n)
        weekday_factor = 0.7 if day.weekday() >= 5 else 1.0
        for source, medium, campaign, keywords, per_day, call_rate, cost in CHANNELS:
            for _ in range(int(per_day * weekday_factor * rng.uniform(0.7, 1.3))):
                keyword = rng.choice(keywords)
                visit = Visit(
                    id=f"demo{site.id}v{len(visits)}",
                    site_id=site.id,
                    visitor_key=f"demo-visitor-{rng.randrange(10**9)}",
                    started_at=moment(day),
                    url="https://demo.example/",
                    source=source,
                    medium=medium,
                    campaign=campaign,
                    keyword=keyword,
                    touch_source=source,
                    touch_medium=medium,
                    number=site.default_number,
                    number_kind="pool",
                    is_bot=rng.random() < 0.03,
                )
                visits.append(visit)
                if not visit.is_bot and rng.random() < call_rate:
                    add_call(day, (source, medium, campaign, keyword), visit.id)
            for keyword in keywords if cost else ():
                amount = cost * weekday_factor * rng.uniform(0.8, 1.2) / len(keywords)
                spend.append(_spend(site.id, day, (source, medium, campaign, keyword), amount))
        for source, medium, campaign, per_day, cost in OFFLINE:
            for _ in range(rng.randrange(per_day + 1)):
                add_call(day, (source, medium, campaign, ""), None)
            spend.append(_spend(site.id, day, (source, medium, campaign, ""), cost))
    session.add_all(visits)
    session.add_all(spend)
    session.add_all(calls)
    await session.flush()
    deals = []
    for call in calls:
        if not call.target or rng.random() >= 0.3:
            continue
        won_at = min(now, call.started_at + timedelta(days=rng.randrange(0, 5)))
        deals.append(
            Deal(
                site_id=site.id,
                origin="api",
                crm="api",
                remote_id=f"demo-deal-{call.id}",
                title=f"Demo deal {call.id}",
                stage_id="WON",
                stage_name="Won",
                status="won",
                amount=rng.randrange(5_000, 60_000) * money.MINOR_PER_MAJOR,
                currency=CURRENCY,
                opened_at=call.started_at,
                closed_at=won_at,
                phones=[call.caller],
                call_id=call.id,
                visit_id=call.visit_id,
                match="call",
                attributed_at=call.started_at,
                source=call.source,
                medium=call.medium,
                campaign=call.campaign,
                keyword=call.keyword,
            )
        )
    session.add_all(deals)
    await session.flush()
    # Visits now fill days that may be rolled up already (a running server's background task).
    await visit_rollup.forget_site(session, site.id)
    return DemoSummary(len(visits), len(calls), len(spend), len(deals), first, last)


def _spend(site_id: int, day: date, label: tuple[str, str, str, str], roubles: float) -> AdSpend:
    return AdSpend(
        site_id=site_id,
        spend_date=day,
        source=label[0],
        medium=label[1],
        campaign=label[2],
        keyword=label[3],
        amount=round(roubles * money.MINOR_PER_MAJOR),
        currency=CURRENCY,
    )
