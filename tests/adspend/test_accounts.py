"""Ad accounts as an admin manages them (API, page, CLI): roles, clear errors, secrets never
shown back; the backfill command and its progress bar."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from calltracker.adspend.service import SyncSettings
from calltracker.app import create_app
from calltracker.cli.main import main
from calltracker.keys import adspend_settings_key
from calltracker.settings import Settings
from tests.conftest import Mode, Seeded, seed
from tests.reports.tables import table_cells

from .fakes.direct import Campaign, FakeDirect
from .test_sync import add_account, runner

Client = TestClient[Any, Any]
embedded_only = pytest.mark.parametrize("mode", ["embedded"], indirect=True)
SECRET = "y0_AgAAAAA-very-secret"
TRACKED = Campaign(7, "Бренд", tracking="utm_source=yandex&utm_medium=cpc&utm_campaign=brand")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(name="api")
async def api_fixture(aiohttp_client: Any, settings: Settings) -> Client:
    app = create_app(settings)
    app[adspend_settings_key] = SyncSettings(tick_seconds=3600)
    client: Client = await aiohttp_client(app)
    return client


@pytest.fixture(name="shop")
async def shop_fixture(api: Client) -> Seeded:
    return await seed(api.app)


async def cli(monkeypatch: pytest.MonkeyPatch, mode: Mode, *argv: str) -> int:
    monkeypatch.setenv("CALLTRACKER_DATABASE_URL", mode.database_url)
    return await asyncio.to_thread(main, list(argv))  # main() runs its own event loop


@embedded_only
async def test_secrets_are_never_shown_back_and_only_admins_manage_accounts(
    api: Client, shop: Seeded, monkeypatch: pytest.MonkeyPatch, mode: Mode,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    admin = bearer(shop.admin_token)
    body = {"site": "shop", "platform": "yandex_direct", "name": "Direct",
            "config": {"token": SECRET, "client_login": "shop-client", "include_vat": False}}  # fmt: skip
    resp = await api.post("/api/v1/ad-accounts", json=body, headers=bearer(shop.marketer_token))
    assert resp.status == 403
    resp = await api.post("/api/v1/ad-accounts", json=body, headers=admin)
    assert resp.status == 201
    created = await resp.json()
    assert created["secrets_set"] == ["token"]
    assert created["config"] == {"client_login": "shop-client", "include_vat": False}
    account = created["id"]
    for path in ("/api/v1/ad-accounts", f"/api/v1/ad-accounts/{account}", "/admin/integrations"):
        text = await (await api.get(path, headers=admin)).text()
        assert SECRET not in text, path
    resp = await api.patch(
        f"/api/v1/ad-accounts/{account}", json={"config": {"include_vat": True}}, headers=admin
    )
    assert (await resp.json())["secrets_set"] == ["token"]  # left out of the patch: kept
    assert await cli(monkeypatch, mode, "adspend", "status", str(account)) == 0
    assert await cli(monkeypatch, mode, "adspend", "list") == 0
    out = capsys.readouterr().out
    assert "secrets set: token" in out and SECRET not in out


async def test_a_bad_config_is_refused_with_the_field_named(api: Client, shop: Seeded) -> None:
    admin = bearer(shop.admin_token)
    cases = [
        ({"platform": "bing", "config": {}}, "platform must be one of"),
        ({"platform": "yandex_direct", "config": {}}, "yandex_direct.token: is required"),
        ({"platform": "google_ads", "config": {"customer_id": "12"}}, "ten-digit"),
        ({"platform": "vk_ads", "config": {"client_id": "a", "client_secret": SECRET,
                                           "refresh_token": "r", "tokn": "x"}}, "unknown field"),
    ]  # fmt: skip
    for fields, reason in cases:
        resp = await api.post(
            "/api/v1/ad-accounts", json={"site": "shop", "name": "x", **fields}, headers=admin
        )
        text = await resp.text()
        assert resp.status == 400 and reason in text and SECRET not in text, text


@embedded_only
async def test_the_page_form_adds_an_account_and_keeps_no_token_in_the_form_on_error(
    api: Client, shop: Seeded
) -> None:
    admin = bearer(shop.admin_token)
    form = {"site": "shop", "platform": "yandex_direct", "name": "", "config": json.dumps(
        {"token": SECRET})}  # fmt: skip
    resp = await api.post("/admin/ad-accounts", data=form, headers=admin, allow_redirects=False)
    assert resp.status == 400
    assert SECRET not in await resp.text() and "name must be 1 to 200" in await resp.text()
    resp = await api.post(
        "/admin/ad-accounts", data={**form, "name": "Direct"}, headers=admin, allow_redirects=False
    )
    assert resp.status == 303
    page = await (await api.get("/admin/integrations", headers=admin)).text()
    assert "Yandex Direct" in page and "Direct" in page and SECRET not in page


@embedded_only
async def test_a_backfill_pulls_the_range_in_chunks_with_a_progress_line(
    api: Client,
    shop: Seeded,
    direct: FakeDirect,
    monkeypatch: pytest.MonkeyPatch,
    mode: Mode,
    capsys: pytest.CaptureFixture[str],
) -> None:
    last = datetime.now(ZoneInfo("Europe/Moscow")).date() - timedelta(days=30)
    first = last - timedelta(days=9)
    for n in range(10):
        direct.add(str(first + timedelta(days=n)), TRACKED, 1, 1, "диван", 10, 1, "10")
    config = json.dumps({"token": direct.token, "api_url": direct.api_url, "rate_limit": 2.0})
    monkeypatch.setattr("sys.stdin", io.StringIO(config))
    assert await cli(monkeypatch, mode, "adspend", "add", "shop", "yandex_direct",
                     "--name", "Direct", "--config-json", "-") == 0  # fmt: skip
    assert await cli(monkeypatch, mode, "adspend", "backfill", "1", "--from", str(first),
                     "--to", str(last), "--chunk-days", "4") == 0  # fmt: skip
    captured = capsys.readouterr()
    progress = captured.err.splitlines()
    assert [line.split("]")[1].split("days")[0].strip() for line in progress] == [
        "4/10", "8/10", "10/10"
    ]  # fmt: skip
    assert "4 row(s), 48.00 RUB" in progress[0]  # 10 a day + 20 % VAT
    assert "10 day(s) pulled of 10" in captured.out
    assert [p["SelectionCriteria"]["DateFrom"] for p in direct.reports] == [
        str(first), str(first + timedelta(days=4)), str(first + timedelta(days=8))
    ]  # fmt: skip
    resp = await api.get(
        f"/api/v1/reports/calls?site=shop&from={first}&to={last}",
        headers=bearer(shop.marketer_token),
    )
    assert (await resp.json())["totals"]["spend"] == 120.0
    # A new account's scheduled rounds go on from the backfill's last day: no gap to today.
    resp = await api.get("/api/v1/ad-accounts/1", headers=bearer(shop.admin_token))
    assert (await resp.json())["status"]["pulled_through"] == str(last)


async def test_deleting_an_account_removes_its_spend_but_not_the_imports(
    api: Client, shop: Seeded, direct: FakeDirect
) -> None:
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    direct.add(str(today), TRACKED, 1, 1, "диван", 10, 1, "100")
    csv = f"date,source,medium,amount,currency\n{today},billboard,outdoor,50,RUB\n"
    resp = await api.post(
        "/api/v1/spend?site=shop",
        data=csv.encode(),
        headers={**bearer(shop.marketer_token), "Content-Type": "text/csv"},
    )
    assert resp.status == 200
    account = await add_account(api, shop, direct)
    async with aiohttp.ClientSession() as http:
        assert (await runner(api, http).sync_account(account)).ok

    async def spend() -> float:
        resp = await api.get(
            f"/api/v1/reports/calls?site=shop&from={today}&to={today}",
            headers=bearer(shop.marketer_token),
        )
        return float((await resp.json())["totals"]["spend"])

    assert await spend() == 170.0
    resp = await api.delete(f"/api/v1/ad-accounts/{account}", headers=bearer(shop.admin_token))
    assert resp.status == 204
    assert await spend() == 50.0


@embedded_only
async def test_the_rates_page_keeps_a_typed_rate_and_lists_bad_lines(
    api: Client, shop: Seeded
) -> None:
    admin = bearer(shop.admin_token)
    form = {"date": "2026-03-02", "currency": "usd", "rate": "92,4567", "base": "RUB"}
    resp = await api.post("/admin/currency-rates", data=form, headers=admin, allow_redirects=False)
    assert resp.status == 303
    page = await (await api.get("/admin/currency-rates", headers=admin)).text()
    assert ["2026-03-02", "USD", "92.4567", "RUB", "manual"] in table_cells(page, "rates-table")
    bad = {"text": "date,currency,rate,base\n2026-03-03,USD,abc,RUB\n"}
    resp = await api.post("/admin/currency-rates", data=bad, headers=admin)
    assert resp.status == 400
    assert table_cells(await resp.text(), "rate-errors")[1] == ["2", "rate 'abc' is not a number"]
    resp = await api.get("/admin/currency-rates", headers=bearer(shop.marketer_token))
    assert resp.status == 403


@embedded_only
async def test_a_marketer_maps_a_campaign_from_the_unmapped_page(
    api: Client, shop: Seeded, direct: FakeDirect
) -> None:
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    direct.add(str(today), Campaign(9, "Без меток"), 1, 0, "", 100, 4, "50")
    account = await add_account(api, shop, direct)
    async with aiohttp.ClientSession() as http:
        assert (await runner(api, http).sync_account(account)).ok
    h = bearer(shop.marketer_token)
    form = {"site": "shop", "platform": "yandex_direct", "campaign_id": "9", "source": "yandex",
            "medium": "cpc", "campaign": "no-tags"}  # fmt: skip
    resp = await api.post("/reports/spend/mappings", data=form, headers=h, allow_redirects=False)
    assert resp.status == 303 and "rows=1" in resp.headers["Location"]
    page = await (await api.get(resp.headers["Location"], headers=h)).text()
    assert ["Yandex Direct", "9", "yandex", "cpc", "no-tags"] == table_cells(page, "mapping-table")[
        1
    ][:5]
    assert "All pulled spend of this period is mapped" in page
