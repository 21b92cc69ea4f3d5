"""Local days: UTC bounds of a range, DST stretches, and the by-day trend across a DST change."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from calltracker.clock import day_bounds, utc_bounds
from calltracker.db.models import Call, Site
from calltracker.keys import sessionmaker_key
from tests.conftest import Seeded
from tests.reports.conftest import Client, bearer

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_a_moscow_range_starts_at_local_midnight() -> None:
    start, end = utc_bounds(ZoneInfo("Europe/Moscow"), date(2026, 3, 1), date(2026, 3, 3))
    assert (start, end) == (utc(2026, 2, 28, 21), utc(2026, 3, 3, 21))


def test_the_spring_forward_day_lasts_23_hours_and_the_fall_back_day_25() -> None:
    spring = day_bounds(BERLIN, date(2026, 3, 28), date(2026, 3, 30))
    assert spring == [
        (date(2026, 3, 28), utc(2026, 3, 27, 23), utc(2026, 3, 28, 23)),
        (date(2026, 3, 29), utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)),
        (date(2026, 3, 30), utc(2026, 3, 29, 22), utc(2026, 3, 30, 22)),
    ]
    fall = day_bounds(BERLIN, date(2026, 10, 25), date(2026, 10, 25))
    assert fall == [(date(2026, 10, 25), utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))]


def test_day_bounds_tile_the_range_without_gaps() -> None:
    days = day_bounds(BERLIN, date(2026, 1, 1), date(2026, 12, 31))
    assert len(days) == 365
    assert all(a[2] == b[1] for a, b in zip(days, days[1:], strict=False))
    assert (days[0][1], days[-1][2]) == utc_bounds(BERLIN, date(2026, 1, 1), date(2026, 12, 31))


async def test_the_trend_puts_calls_on_their_berlin_day_across_spring_forward(
    client: Client, seeded: Seeded
) -> None:
    local = [
        datetime(2026, 3, 28, 23, 30),  # +01:00
        datetime(2026, 3, 29, 0, 30),  # +01:00: 23:30 UTC on the 28th
        datetime(2026, 3, 29, 23, 30),  # +02:00: 21:30 UTC
        datetime(2026, 3, 30, 0, 30),  # +02:00: 22:30 UTC on the 29th; +01:00 would say 29th
    ]
    async with client.app[sessionmaker_key].begin() as session:
        site = await session.get(Site, seeded.site_id)
        assert site is not None
        site.timezone = "Europe/Berlin"
        for n, at in enumerate(local):
            session.add(
                Call(linkedid=f"dst{n}", site_id=site.id, tracking_number="+74951230001",
                     caller="+79160000001", started_at=at.replace(tzinfo=BERLIN),
                     status="answered", source="yandex", medium="cpc")
            )  # fmt: skip
    resp = await client.get(
        "/api/v1/reports/calls?site=shop&from=2026-03-28&to=2026-03-30",
        headers=bearer(seeded.marketer_token),
    )
    body = await resp.json()
    assert [(d["date"], d["calls"]) for d in body["days"]] == [
        ("2026-03-28", 1), ("2026-03-29", 2), ("2026-03-30", 1)
    ]  # fmt: skip
    assert body["totals"]["calls"] == 4


async def test_bad_report_parameters_are_400_with_a_reason(client: Client, seeded: Seeded) -> None:
    h = bearer(seeded.marketer_token)
    cases = {
        "site=shop&group=city": "group must be one of",
        "site=shop&from=2026-03-05&to=2026-03-01": "'to' is before 'from'",
        "site=shop&from=2024-01-01&to=2026-03-01": "at most 731 days",
        "site=shop&from=yesterday": "from must be a date",
        "": "site is required",
    }
    for query, message in cases.items():
        resp = await client.get(f"/api/v1/reports/calls?{query}", headers=h)
        assert resp.status == 400, query
        assert message in (await resp.json())["message"], query
    resp = await client.get("/api/v1/reports/calls?site=nowhere", headers=h)
    assert resp.status == 404
