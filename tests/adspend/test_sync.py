"""The issue's acceptance, through the real app on both databases: a pulled day equals the
platform's figures in the report to the kopeck; re-pulls replace, never double; a revoked token
alerts on the integrations page and the next successful pull fills the gap; unmapped spend is
listed and, once mapped, reported; one process pulls an account at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from calltracker.adspend.service import SyncRunner, SyncSettings
from calltracker.app import create_app
from calltracker.db.engine import create_engine, create_sessionmaker
from calltracker.keys import adspend_settings_key, sessionmaker_key
from calltracker.settings import Settings
from tests.conftest import Seeded, seed
from tests.reports.tables import table_cells

from .fakes.direct import VAT, Campaign, FakeDirect

Client = TestClient[Any, Any]
MSK = ZoneInfo("Europe/Moscow")
TRACKED = Campaign(
    1001, "Бренд", tracking="utm_source=yandex&utm_medium=cpc&utm_campaign=brand&utm_term={keyword}",
    ad_groups={11: "Диваны"},
)  # fmt: skip
UNTRACKED = Campaign(1002, "Ретаргетинг", ad_groups={12: "Все"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(name="api")
async def api_fixture(aiohttp_client: Any, settings: Settings) -> Client:
    app = create_app(settings)
    app[adspend_settings_key] = SyncSettings(tick_seconds=3600)  # rounds run when a test says
    client: Client = await aiohttp_client(app)
    return client


@pytest.fixture(name="shop")
async def shop_fixture(api: Client) -> Seeded:
    return await seed(api.app)


def today() -> date:
    return datetime.now(MSK).date()


def runner(api: Client, http: aiohttp.ClientSession, offset: timedelta = timedelta()) -> SyncRunner:
    clock: Callable[[], datetime] = lambda: datetime.now(UTC) + offset  # noqa: E731
    return SyncRunner(api.app[sessionmaker_key], http, SyncSettings(), clock=clock)


async def add_account(api: Client, shop: Seeded, fake: FakeDirect, **config: Any) -> int:
    resp = await api.post(
        "/api/v1/ad-accounts",
        json={
            "site": "shop",
            "platform": "yandex_direct",
            "name": "Direct",
            "config": {"token": fake.token, "api_url": fake.api_url, "rate_limit": 2.0, **config},
        },
        headers=bearer(shop.admin_token),
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert fake.token not in str(body)
    return int(body["id"])


async def report(api: Client, shop: Seeded, first: date, last: date, group: str = "keyword") -> Any:
    resp = await api.get(
        f"/api/v1/reports/calls?site=shop&from={first}&to={last}&group={group}",
        headers=bearer(shop.marketer_token),
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


def kopecks(fake: FakeDirect, day: date | None = None) -> Decimal:
    """What Direct's own interface shows: each row's cost with VAT, rounded to the kopeck."""
    return sum(
        (
            (Decimal(r.cost_micros) * VAT / 1_000_000).quantize(Decimal("0.01"), ROUND_HALF_UP)
            for r in fake.rows
            if day is None or r.day == day
        ),
        Decimal(0),
    )


async def test_a_pulled_day_equals_the_platforms_figures_to_the_kopeck_and_never_doubles(
    api: Client, shop: Seeded, direct: FakeDirect, http: aiohttp.ClientSession
) -> None:
    t, y = today(), today() - timedelta(days=1)
    direct.add(str(y), TRACKED, 11, 501, "диван -бесплатно", 1200, 48, "833.333333")
    direct.add(str(y), TRACKED, 11, 502, "диван купить", 300, 9, "10.004167")
    direct.add(str(t), TRACKED, 11, 501, "диван -бесплатно", 100, 2, "41.66")
    account = await add_account(api, shop, direct)
    result = await runner(api, http).sync_account(account)
    assert result.ok, result.error
    assert (result.window.first, result.window.last) == (t - timedelta(days=6), t)

    body = await report(api, shop, y, y)
    rows = {row["keyword"]: row for row in body["rows"]}
    assert set(rows) == {"диван", "диван купить"}  # utm_term={keyword}: no minus-words
    wanted = {"source": "yandex", "medium": "cpc", "campaign": "brand", "impressions": 1200,
              "clicks": 48, "spend": 1000.0}  # fmt: skip
    assert {k: rows["диван"][k] for k in wanted} == wanted
    assert Decimal(str(body["totals"]["spend"])) == kopecks(direct, y) == Decimal("1012.01")
    assert (body["totals"]["impressions"], body["totals"]["clicks"]) == (1500, 57)
    assert body["currency"] == "RUB"
    assert body["totals"]["cpc"] == 17.75  # 1012.01 / 57

    # The same days again: replaced, not added.
    assert (await runner(api, http).sync_account(account)).ok
    again = await report(api, shop, y, t)
    assert Decimal(str(again["totals"]["spend"])) == kopecks(direct)

    # Direct corrects yesterday (refunded invalid clicks) and drops a keyword: the re-pull
    # replaces yesterday's rows.
    direct.set_cost(str(y), 501, "750")
    direct.rows = [r for r in direct.rows if r.criterion_id != 502]
    assert (await runner(api, http).sync_account(account)).ok
    corrected = await report(api, shop, y, y)
    assert corrected["totals"]["spend"] == 900.0  # 750 + 20 % VAT
    assert [row["keyword"] for row in corrected["rows"]] == ["диван"]


async def test_a_revoked_token_alerts_and_the_next_successful_pull_fills_the_gap(
    api: Client,
    shop: Seeded,
    direct: FakeDirect,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = today()
    direct.add(str(t), TRACKED, 11, 501, "диван", 100, 5, "100")
    account = await add_account(api, shop, direct)
    assert (await runner(api, http).sync_account(account)).ok

    direct.token = "y0_reissued"  # the old token was revoked on Yandex's side
    for days in (4, 10):  # rounds during the outage fail, and nothing pulled so far is lost
        with caplog.at_level(logging.ERROR, logger="calltracker.adspend"):
            failed = await runner(api, http, timedelta(days=days)).sync_account(account)
        assert failed.error_kind == "auth"
    assert "y0_reissued" not in caplog.text and "y0_direct" not in caplog.text
    page = await api.get("/admin/integrations", headers=bearer(shop.admin_token))
    html = await page.text()
    assert f'id="ad-account-alert-{account}"' in html
    assert "Authorization error" in html and f"after {t.isoformat()} are not pulled yet" in html

    # Spend of the outage: two days that the 7-day look-back of the next round would miss.
    gap_day, late_day = t + timedelta(days=2), t + timedelta(days=9)
    direct.add(str(gap_day), TRACKED, 11, 501, "диван", 200, 10, "250")
    direct.add(str(late_day), TRACKED, 11, 501, "диван", 50, 1, "50")
    resp = await api.patch(
        f"/api/v1/ad-accounts/{account}",
        json={"config": {"token": "y0_reissued"}},
        headers=bearer(shop.admin_token),
    )
    view = await resp.json()
    assert resp.status == 200 and "y0_reissued" not in str(view)
    assert view["status"]["alert"]  # still shown until a round succeeds
    [done] = await runner(api, http, timedelta(days=10)).run_due()  # due at once after the fix
    assert done.ok and done.window.first == t + timedelta(days=1)
    body = await report(api, shop, t, late_day, group="source")
    assert body["totals"]["spend"] == 480.0  # 100 + 250 + 50, with VAT: nothing lost
    page = await api.get("/admin/integrations", headers=bearer(shop.admin_token))
    assert f'id="ad-account-alert-{account}"' not in await page.text()


async def test_unmapped_spend_is_listed_and_counts_once_mapped(
    api: Client, shop: Seeded, direct: FakeDirect, http: aiohttp.ClientSession
) -> None:
    t = today()
    direct.add(str(t), TRACKED, 11, 501, "диван", 100, 5, "100")
    direct.add(str(t), UNTRACKED, 12, 0, "", 2000, 20, "500")  # no tracking parameters
    account = await add_account(api, shop, direct)
    assert (await runner(api, http).sync_account(account)).ok
    h = bearer(shop.marketer_token)

    body = await report(api, shop, t, t, group="source")
    assert body["totals"]["spend"] == 120.0
    assert body["unmapped_spend"] == [
        {"currency": "RUB", "amount": 600.0, "impressions": 2000, "clicks": 20, "campaigns": 1}
    ]
    page = await (await api.get(f"/reports?site=shop&from={t}&to={t}", headers=h)).text()
    assert 'id="unmapped-spend"' in page and "600.00 RUB from 1 campaign(s)" in page
    resp = await api.get(f"/api/v1/spend/unmapped?site=shop&from={t}&to={t}", headers=h)
    [listed] = (await resp.json())["campaigns"]
    assert (listed["campaign_id"], listed["campaign_name"], listed["amount"]) == (
        "1002", "Ретаргетинг", 600.0
    )  # fmt: skip
    cells = table_cells(
        await (
            await api.get(f"/reports/spend/unmapped?site=shop&from={t}&to={t}", headers=h)
        ).text(),
        "unmapped-table",
    )
    assert any("Ретаргетинг #1002" in c for c in cells[1])

    resp = await api.put(
        "/api/v1/ad-mappings",
        json={"site": "shop", "platform": "yandex_direct", "campaign_id": "1002",
              "source": "Yandex", "medium": "cpc", "campaign": "retarget"},
        headers=h,
    )  # fmt: skip
    assert resp.status == 200 and (await resp.json())["rows_remapped"] == 1
    body = await report(api, shop, t, t, group="campaign")
    assert {row["campaign"]: row["spend"] for row in body["rows"]} == {
        "brand": 120.0, "retarget": 600.0
    }  # fmt: skip
    assert body["unmapped_spend"] == []
    resp = await api.get(f"/api/v1/spend/unmapped?site=shop&from={t}&to={t}", headers=h)
    assert (await resp.json())["campaigns"] == []
    # A later pull keeps the mapping.
    assert (await runner(api, http).sync_account(account)).ok
    assert (await report(api, shop, t, t, group="source"))["totals"]["spend"] == 720.0


async def test_one_process_pulls_an_account_at_a_time(
    api: Client,
    shop: Seeded,
    direct: FakeDirect,
    http: aiohttp.ClientSession,
    settings: Settings,
) -> None:
    direct.add(str(today()), TRACKED, 11, 501, "диван", 100, 5, "100")
    direct.offline_polls = 1  # a slow, queued report: the two workers overlap
    await add_account(api, shop, direct)
    other_engine = create_engine(settings.database_url)  # a second worker process's pool
    try:
        other = SyncRunner(create_sessionmaker(other_engine), http, SyncSettings())
        first, second = await asyncio.gather(runner(api, http).run_due(), other.run_due())
    finally:
        await other_engine.dispose()
    assert sorted([len(first), len(second)]) == [0, 1]
    assert len(direct.reports) == 1  # the report was asked for and read once
    assert len(direct.pending) == 0


async def test_the_server_pulls_a_due_account_on_its_own(
    aiohttp_client: Any, settings: Settings, direct: FakeDirect
) -> None:
    app = create_app(settings)
    app[adspend_settings_key] = SyncSettings(tick_seconds=0.2)
    client: Client = await aiohttp_client(app)
    shop = await seed(client.app)
    direct.add(str(today()), TRACKED, 11, 501, "диван", 100, 5, "100")
    account = await add_account(client, shop, direct)
    for _ in range(150):
        body = await report(client, shop, today(), today(), group="source")
        if body["totals"]["spend"]:
            break
        await asyncio.sleep(0.1)
    assert body["totals"]["spend"] == 120.0
    resp = await client.get(f"/api/v1/ad-accounts/{account}", headers=bearer(shop.admin_token))
    status = (await resp.json())["status"]
    assert status["pulled_through"] == today().isoformat() and status["last_error"] == ""
