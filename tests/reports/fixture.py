"""A small hand-made month of traffic for shop (Europe/Moscow): visits, calls, spend, deals.

The expected report tables in the tests were worked out by hand from these tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from calltracker.db.models import Call, Site, Visit
from calltracker.keys import sessionmaker_key

MSK = ZoneInfo("Europe/Moscow")
CALLER_A = "+79161110001"  # calls twice (c4, c5): the deal by phone matches the earlier one
CALLER_B = "+79161110002"


def msk(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=MSK)


# id, local start, source, medium, campaign, keyword, is_bot
VISITS = [
    ("v1", "2026-03-01 10:00", "yandex", "cpc", "brand", "sofa", False),
    ("v2", "2026-03-01 23:30", "yandex", "cpc", "brand", "sofa", False),
    ("v3", "2026-03-02 00:30", "yandex", "cpc", "brand", "chair", False),  # UTC: still Mar 1
    ("v4", "2026-03-02 12:00", "yandex", "cpc", "generic", "sofa", False),
    ("v5", "2026-03-02 13:00", "google", "cpc", "spring", "", False),
    ("v6", "2026-03-03 09:00", "google", "organic", "", "", False),
    ("v7", "2026-03-03 09:05", "google", "cpc", "spring", "", True),  # a bot: not counted
    ("v8", "2026-02-28 23:59", "yandex", "cpc", "brand", "sofa", False),  # before the range
    ("v9", "2026-03-04 00:00", "yandex", "cpc", "brand", "sofa", False),  # after the range
]

# linkedid, local start, caller, source, medium, campaign, keyword, status, unique, target
CALLS = [
    (
        "c1",
        "2026-03-01 10:05",
        "+79160000001",
        "yandex",
        "cpc",
        "brand",
        "sofa",
        "answered",
        True,
        True,
    ),
    (
        "c2",
        "2026-03-02 00:40",
        "+79160000002",
        "yandex",
        "cpc",
        "brand",
        "chair",
        "missed",
        True,
        False,
    ),
    (
        "c3",
        "2026-03-02 12:10",
        "+79160000001",
        "yandex",
        "cpc",
        "generic",
        "sofa",
        "answered",
        False,
        True,
    ),
    (
        "c4",
        "2026-03-02 15:00",
        CALLER_A,
        "billboard",
        "outdoor",
        "tverskaya-2026",
        "",
        "answered",
        True,
        True,
    ),
    (
        "c5",
        "2026-03-03 18:00",
        CALLER_A,
        "billboard",
        "outdoor",
        "tverskaya-2026",
        "",
        "busy",
        True,
        False,
    ),
    (
        "c6",
        "2026-03-03 20:00",
        "+79160000006",
        "google",
        "cpc",
        "spring",
        "",
        "answered",
        True,
        False,
    ),
    ("c7", "2026-03-03 23:59", "+79160000007", "", "", "", "", "failed", True, False),
    ("c8", "2026-03-04 00:01", CALLER_B, "yandex", "cpc", "brand", "sofa", "answered", True, True),
]

SPEND_CSV = """date,source,medium,campaign,keyword,amount,currency,impressions,clicks
2026-03-01,yandex,cpc,brand,sofa,1000.00,RUB,1000,40
2026-03-02,yandex,cpc,brand,chair,500.50,RUB,500,10
2026-03-02,yandex,cpc,generic,sofa,300,RUB,300,6
2026-03-03,google,cpc,spring,,700.00,RUB,2000,35
2026-03-03,billboard,outdoor,tverskaya-2026,,1500.00,RUB,,
2026-03-03,vk,cpc,retarget,,200.00,RUB,800,4
2026-03-04,yandex,cpc,brand,sofa,999.00,RUB,900,30
"""


def deals(call_ids: dict[str, int]) -> list[dict[str, Any]]:
    return [
        # By call id; the deal closes after the range, the revenue stays with c1's day.
        {
            "deal_id": "d1",
            "call_id": call_ids["c1"],
            "amount": 5000,
            "time": "2026-03-05T12:00:00+03:00",
        },
        # By phone: caller A's latest call before 2026-03-03 10:00 is c4, not the later c5.
        {
            "deal_id": "d2",
            "phone": "8 (916) 111-00-01",
            "amount": "2000.00",
            "time": "2026-03-03T10:00:00",
        },
        # Matches c8, which is after the range: no revenue in March 1-3.
        {"deal_id": "d3", "phone": CALLER_B, "amount": 100, "time": "2026-03-04T09:00:00+03:00"},
        # No call from this phone at all: kept, unmatched, in no row.
        {
            "deal_id": "d4",
            "phone": "+79169999999",
            "amount": 50,
            "time": "2026-03-02T09:00:00+03:00",
        },
    ]


async def load(app: Any, site_id: int, timezone: str = "Europe/Moscow") -> dict[str, int]:
    """Visits and calls straight into the database; returns call ids by linkedid."""
    async with app[sessionmaker_key].begin() as session:
        site = await session.get(Site, site_id)
        assert site is not None
        site.timezone = timezone
        for vid, at, source, medium, campaign, keyword, bot in VISITS:
            session.add(
                Visit(
                    id=vid,
                    site_id=site_id,
                    visitor_key=f"visitor-{vid}",
                    started_at=msk(at),
                    url="https://shop.example.ru/",
                    source=source,
                    medium=medium,
                    campaign=campaign,
                    keyword=keyword,
                    touch_source=source,
                    touch_medium=medium,
                    number="+74951230001",
                    number_kind="pool",
                    is_bot=bot,
                )
            )
        rows = []
        for lid, at, caller, source, medium, campaign, keyword, status, unique, target in CALLS:
            row = Call(
                linkedid=lid,
                site_id=site_id,
                tracking_number="+74951230001",
                caller=caller,
                started_at=msk(at),
                status=status,
                source=source,
                medium=medium,
                campaign=campaign,
                keyword=keyword,
                unique=unique,
                target=target,
            )
            session.add(row)
            rows.append(row)
        await session.flush()
        return {row.linkedid: row.id for row in rows}
