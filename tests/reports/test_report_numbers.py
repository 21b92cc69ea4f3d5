"""Every cell of the report, per level and per day, against tables worked out by hand."""

from __future__ import annotations

import csv
import io
from typing import Any

from tests.reports.conftest import Client, Loaded

RANGE = "site=shop&from=2026-03-01&to=2026-03-03"
METRICS = [
    "Impressions", "Clicks", "CTR", "Visits", "Calls", "Unique calls", "Target calls",
    "Missed calls", "Visit→call", "Spend, RUB", "CPC, RUB", "Cost per call, RUB", "CPL, RUB",
    "Revenue, RUB", "ROI",
]  # fmt: skip

# By hand from tests/reports/fixture.py, March 1-3 in Moscow time.
BY_SOURCE = [
    ["Source", *METRICS],
    ["yandex", "1800", "56", "3.11%", "4", "3", "2", "2", "1", "75.00%", "1800.50", "32.15", "600.17", "900.25", "5000.00", "177.70%"],
    ["billboard", "0", "0", "—", "0", "2", "2", "1", "1", "—", "1500.00", "—", "750.00", "1500.00", "2000.00", "33.33%"],
    ["google", "2000", "35", "1.75%", "2", "1", "1", "0", "0", "50.00%", "700.00", "20.00", "700.00", "—", "0.00", "-100.00%"],
    ["(not set)", "0", "0", "—", "0", "1", "1", "0", "1", "—", "0.00", "—", "0.00", "—", "0.00", "—"],
    ["vk", "800", "4", "0.50%", "0", "0", "0", "0", "0", "—", "200.00", "50.00", "—", "—", "0.00", "-100.00%"],
    ["Total", "4600", "95", "2.07%", "6", "7", "6", "3", "3", "116.67%", "4200.50", "44.22", "600.07", "1400.17", "7000.00", "66.65%"],
]  # fmt: skip

BY_CAMPAIGN_IN_YANDEX = [
    ["Source", "Medium", "Campaign", *METRICS],
    ["yandex", "cpc", "brand", "1500", "50", "3.33%", "3", "2", "2", "1", "1", "66.67%", "1500.50", "30.01", "750.25", "1500.50", "5000.00", "233.22%"],
    ["yandex", "cpc", "generic", "300", "6", "2.00%", "1", "1", "0", "1", "0", "100.00%", "300.00", "50.00", "300.00", "300.00", "0.00", "-100.00%"],
    ["Total", "", "", "1800", "56", "3.11%", "4", "3", "2", "2", "1", "75.00%", "1800.50", "32.15", "600.17", "900.25", "5000.00", "177.70%"],
]  # fmt: skip

BY_KEYWORD_IN_BRAND = [
    ["Source", "Medium", "Campaign", "Keyword", *METRICS],
    ["yandex", "cpc", "brand", "sofa", "1000", "40", "4.00%", "2", "1", "1", "1", "0", "50.00%", "1000.00", "25.00", "1000.00", "1000.00", "5000.00", "400.00%"],
    ["yandex", "cpc", "brand", "chair", "500", "10", "2.00%", "1", "1", "1", "0", "1", "100.00%", "500.50", "50.05", "500.50", "—", "0.00", "-100.00%"],
    ["Total", "", "", "", "1500", "50", "3.33%", "3", "2", "2", "1", "1", "66.67%", "1500.50", "30.01", "750.25", "1500.50", "5000.00", "233.22%"],
]  # fmt: skip

# date, visits, calls, unique, target, missed, spend, revenue
BY_DAY = [
    ("2026-03-01", 2, 1, 1, 1, 0, 1000.0, 5000.0),
    ("2026-03-02", 3, 3, 2, 2, 1, 800.5, 2000.0),
    ("2026-03-03", 1, 3, 3, 0, 2, 2400.0, 0.0),
]


async def csv_table(client: Client, loaded: Loaded, query: str) -> list[list[str]]:
    resp = await client.get(f"/reports/calls.csv?{query}", headers=loaded.headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/csv"
    text = (await resp.read()).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


async def report(client: Client, loaded: Loaded, query: str) -> Any:
    resp = await client.get(f"/api/v1/reports/calls?{query}", headers=loaded.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_the_source_table_matches_the_hand_computation(
    client: Client, loaded: Loaded
) -> None:
    assert await csv_table(client, loaded, RANGE) == BY_SOURCE


async def test_drilling_into_yandex_by_campaign_matches_the_hand_computation(
    client: Client, loaded: Loaded
) -> None:
    table = await csv_table(client, loaded, f"{RANGE}&group=campaign&source=yandex")
    assert table == BY_CAMPAIGN_IN_YANDEX


async def test_drilling_into_brand_by_keyword_matches_the_hand_computation(
    client: Client, loaded: Loaded
) -> None:
    query = f"{RANGE}&group=keyword&source=yandex&medium=cpc&campaign=brand"
    assert await csv_table(client, loaded, query) == BY_KEYWORD_IN_BRAND


async def test_the_json_has_the_same_numbers_with_null_for_a_division_by_zero(
    client: Client, loaded: Loaded
) -> None:
    body = await report(client, loaded, RANGE)
    assert (body["site"], body["currency"], body["group"]) == ("shop", "RUB", "source")
    assert (body["from"], body["to"], body["timezone"]) == (
        "2026-03-01",
        "2026-03-03",
        "Europe/Moscow",
    )
    rows = {row["source"]: row for row in body["rows"]}
    assert [row["source"] for row in body["rows"]] == ["yandex", "billboard", "google", "", "vk"]
    assert rows["yandex"] == {
        "source": "yandex", "impressions": 1800, "clicks": 56, "ctr": 0.0311, "visits": 4,
        "calls": 3, "unique_calls": 2, "target_calls": 2, "missed_calls": 1, "conversion": 0.75,
        "spend": 1800.5, "cpc": 32.15, "cost_per_call": 600.17, "cost_per_target_call": 900.25,
        "revenue": 5000.0, "roi": 1.777,
    }  # fmt: skip
    assert rows[""]["conversion"] is None
    assert rows[""]["roi"] is None
    assert rows[""]["cost_per_call"] == 0.0
    assert rows["vk"]["cost_per_call"] is None
    assert rows["google"]["cost_per_target_call"] is None
    assert rows["google"]["roi"] == -1.0
    assert rows["billboard"]["ctr"] is None  # no impressions: no click-through rate
    assert rows["billboard"]["cpc"] is None
    assert (body["rates"], body["missing_rates"], body["unmapped_spend"]) == ([], [], [])
    assert body["totals"]["calls"] == 7
    assert body["totals"]["roi"] == 0.6665
    assert body["totals"]["conversion"] == 1.1667


async def test_the_trend_groups_by_moscow_day(client: Client, loaded: Loaded) -> None:
    body = await report(client, loaded, RANGE)
    got = [
        (d["date"], d["visits"], d["calls"], d["unique_calls"], d["target_calls"],
         d["missed_calls"], d["spend"], d["revenue"])
        for d in body["days"]
    ]  # fmt: skip
    assert got == BY_DAY


async def test_bot_visits_do_not_count(client: Client, loaded: Loaded) -> None:
    body = await report(client, loaded, f"{RANGE}&group=medium&source=google")
    cpc = next(r for r in body["rows"] if r["medium"] == "cpc")
    assert cpc["visits"] == 1  # v5; v7 is a bot


async def test_an_empty_filter_selects_the_unattributed_calls(
    client: Client, loaded: Loaded
) -> None:
    body = await report(client, loaded, f"{RANGE}&group=medium&source=")
    assert [(r["source"], r["medium"], r["calls"]) for r in body["rows"]] == [("", "", 1)]


async def test_a_day_outside_the_range_adds_nothing(client: Client, loaded: Loaded) -> None:
    body = await report(client, loaded, "site=shop&from=2026-03-04&to=2026-03-04")
    assert [
        (r["source"], r["visits"], r["calls"], r["spend"], r["revenue"]) for r in body["rows"]
    ] == [("yandex", 1, 1, 999.0, 100.0)]


async def test_the_trend_follows_the_drill_down_filters(client: Client, loaded: Loaded) -> None:
    body = await report(client, loaded, f"{RANGE}&group=medium&source=billboard")
    got = [(d["date"], d["visits"], d["calls"], d["spend"], d["revenue"]) for d in body["days"]]
    assert got == [
        ("2026-03-01", 0, 0, 0.0, 0.0),
        ("2026-03-02", 0, 1, 0.0, 2000.0),
        ("2026-03-03", 0, 1, 1500.0, 0.0),
    ]
