"""`calltracker demo`'s sample traffic: a month up to now, and nothing after it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from calltracker.catalog import sites
from calltracker.db.deal_models import Deal
from calltracker.db.engine import create_engine, create_sessionmaker
from calltracker.db.models import Call, Visit
from calltracker.demo import sample as demo
from calltracker.demo import site as demo_site


async def test_demo_traffic_runs_up_to_now_and_never_past_it(sqlite_url: str) -> None:
    now = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)  # 12:30 in Moscow, the demo site's zone
    engine = create_engine(sqlite_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await demo_site.create_demo(session, sample_data=False)
            site = await sites.get_site(session, demo_site.DEMO_SITE_KEY)
            summary = await demo.seed_demo(session, site, days=30, now=now)
            latest = {
                name: await session.scalar(select(func.max(column)))
                for name, column in (
                    ("visit", Visit.started_at),
                    ("call", Call.started_at),
                    ("deal", Deal.closed_at),
                )
            }
            today = datetime(2026, 11, 21, 21, 0, tzinfo=UTC)  # Moscow midnight
            visits_today = await session.scalar(
                select(func.count()).select_from(Visit).where(Visit.started_at >= today)
            )
    finally:
        await engine.dispose()
    assert summary.calls > 100 and summary.first_day.isoformat() == "2026-10-24"
    assert all(at is not None and at <= now for at in latest.values()), latest
    assert visits_today > 50  # this morning's traffic is there, squeezed before 12:30
