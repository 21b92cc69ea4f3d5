"""The loop closed, end to end in the app on both databases: a call goes to the CRM as a lead,
the CRM's deal comes back by webhook (or by polling when the webhook is lost), and a won
deal moves the report's revenue and ROI and goes on to Metrica, Google Ads and GA4 once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from calltracker.app import create_app
from calltracker.db.deal_models import CrmFetch, Deal, DealStage
from calltracker.db.integration_models import Integration, OutboxRow
from calltracker.deals.sync import DealSync, DealSyncSettings
from calltracker.keys import (
    deal_sync_key,
    deal_sync_settings_key,
    outbox_settings_key,
    sessionmaker_key,
)
from calltracker.settings import Settings
from tests.conftest import Seeded, seed

from .fakes.amocrm import FakeAmoCrm
from .fakes.bitrix24 import FakeBitrix24
from .fakes.ga4 import FakeGa4
from .fakes.google_ads import FakeGoogleAds
from .fakes.metrica import FakeMetrica
from .outbox_support import (  # noqa: F401  (fixtures)
    World,
    amo_config,
    bitrix_config,
    db_url_fixture,
    http_fixture,
    outbox_pg_database,
    pg_db_url_fixture,
    running_fixture,
    tiny_settings,
    wait_until,
    world_fixture,
)

Client = TestClient[Any, Any]
TOKEN = "b24-app-t0ken"
SECRET = "amo-w3bhook-s3cret"
GCLID = "EAIaIQobChMI-e2e"
SESSION = "1772876700"


@pytest.fixture
async def app_client(aiohttp_client: Any, settings: Settings) -> Client:
    app = create_app(settings)
    app[outbox_settings_key] = tiny_settings(batch_interval=0.05)
    # The test reads deals itself, step by step; the app's own loop looks once an hour.
    app[deal_sync_settings_key] = DealSyncSettings(interval=3600)
    return await aiohttp_client(app)


@pytest.fixture
async def shop(app_client: Client) -> Seeded:
    return await seed(app_client.app)


@pytest.fixture
async def platforms() -> AsyncIterator[tuple[FakeMetrica, FakeGoogleAds, FakeGa4]]:
    metrica, ads, ga4 = FakeMetrica(), FakeGoogleAds(), FakeGa4()
    for fake in (metrica, ads, ga4):
        await fake.start()
    ads.clicks[GCLID] = datetime.now(UTC) - timedelta(hours=1)
    yield metrica, ads, ga4
    for fake in (metrica, ads, ga4):
        await fake.close()


async def add_platforms(
    world: World, metrica: FakeMetrica, ads: FakeGoogleAds, ga4: FakeGa4
) -> None:
    await world.integration("metrica", {"counter_id": metrica.counter_id,
                                        "oauth_token": metrica.token, "base_url": metrica.url,
                                        "revenue_goal": "deal_won"})  # fmt: skip
    await world.integration("google_ads", {
        "customer_id": ads.customer_id, "login_customer_id": ads.login_customer_id,
        "conversion_action": ads.action_id, "developer_token": ads.developer_token,
        "client_id": ads.client_id, "client_secret": ads.client_secret,
        "refresh_token": ads.refresh_token, "base_url": ads.url, "token_url": f"{ads.url}/token",
    })  # fmt: skip
    await world.integration("ga4", {"measurement_id": ga4.measurement_id,
                                    "api_secret": ga4.api_secret, "base_url": ga4.url,
                                    "send_revenue": True})  # fmt: skip


async def yandex_row(client: Client, token: str) -> dict[str, Any]:
    resp = await client.get(
        "/api/v1/reports/calls?site=shop", headers={"Authorization": f"Bearer {token}"}
    )
    body = await resp.json()
    assert resp.status == 200, body
    return next(r for r in body["rows"] if r["source"] == "yandex")


async def counts(client: Client) -> tuple[int, int, int]:
    """(deals, stage changes, outbox rows): what an event must not change if it is old news."""
    async with client.app[sessionmaker_key]() as session:
        return tuple(  # type: ignore[return-value]
            [
                await session.scalar(select(func.count()).select_from(table))
                for table in (Deal, DealStage, OutboxRow)
            ]
        )


async def test_a_deal_won_in_bitrix24_moves_revenue_and_roi_and_reaches_the_ad_platforms(
    app_client: Client,
    shop: Seeded,
    bitrix: FakeBitrix24,
    platforms: tuple[FakeMetrica, FakeGoogleAds, FakeGa4],
) -> None:
    metrica, ads, ga4 = platforms
    app = app_client.app
    sync: DealSync = app[deal_sync_key]
    world = World(app[sessionmaker_key], shop.site_id, "")
    crm = await world.integration(
        "bitrix24", bitrix_config(bitrix, deals={"application_token": TOKEN})
    )
    await add_platforms(world, metrica, ads, ga4)
    today = datetime.now(UTC).date().isoformat()
    spend = {"site": "shop", "rows": [{"date": today, "source": "yandex", "medium": "cpc",
                                       "campaign": "brand_msk", "amount": 1000, "currency": "RUB"}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {shop.marketer_token}"}
    assert (await app_client.post("/api/v1/spend", json=spend, headers=headers)).status == 200

    await world.call(click_id=GCLID, click_id_type="gclid", ga_sessions=f"TEST123.{SESSION}")
    await wait_until(lambda: _true(len(bitrix.leads) == 1), what="the lead in Bitrix24")
    lead_id = next(iter(bitrix.leads))
    deal_id = bitrix.convert_lead(lead_id, amount=5000)
    url = str(app_client.make_url(f"/api/v1/crm/bitrix24/{crm}/events"))

    assert (await bitrix.send_event(url, "ONCRMDEALADD", deal_id)).status == 200
    await sync.run_once()
    assert (await counts(app_client))[0] == 1  # one deal, however many reads
    assert (await yandex_row(app_client, shop.marketer_token))["revenue"] == 0.0  # still open

    bitrix.move_deal(deal_id, "WON")
    await bitrix.send_event(url, "ONCRMDEALUPDATE", deal_id)
    await sync.run_once()

    row = await yandex_row(app_client, shop.marketer_token)
    assert (row["revenue"], row["spend"], row["roi"]) == (5000.0, 1000.0, 4.0)
    async with app[sessionmaker_key]() as session:
        deal = await session.scalar(select(Deal))
    assert deal is not None and (deal.match, deal.status, deal.stage_name) == (
        "own",
        "won",
        "Deal won",
    )
    await wait_until(
        lambda: _true(len(metrica.conversions) == len(ads.conversions) == 1 and _purchases(ga4)),
        what="the won deal at Metrica, Google Ads and GA4",
    )
    assert metrica.conversions[0]["Price"] == "5000.00"
    assert ads.conversions[0]["gclid"] == GCLID and ads.conversions[0]["conversionValue"] == 5000.0
    (purchase,) = _purchases(ga4)
    assert purchase["params"]["session_id"] == SESSION and ga4.dropped == []
    async with app[sessionmaker_key]() as session:
        google_rows = await session.scalars(
            select(OutboxRow.stage)
            .join(Integration, Integration.id == OutboxRow.integration_id)
            .where(Integration.kind == "google_ads")
        )
        assert list(google_rows) == ["won"]  # the call itself was never queued for Google

    # The same event again, twice: nothing changes, nothing is sent again.
    before = await counts(app_client)
    for _ in range(2):
        await bitrix.send_event(url, "ONCRMDEALUPDATE", deal_id)
    await sync.run_once()
    assert await counts(app_client) == before
    assert (await yandex_row(app_client, shop.marketer_token))["revenue"] == 5000.0

    # The deal is re-valued and the webhook never arrives: the poll catches it.
    bitrix.move_deal(deal_id, "WON", amount=7000)
    assert await sync.poll(crm, force=True) >= 1
    row = await yandex_row(app_client, shop.marketer_token)
    assert (row["revenue"], row["roi"]) == (7000.0, 6.0)
    await wait_until(lambda: _settled(app_client), what="nothing left to send")
    assert (len(metrica.conversions), len(ads.conversions), len(_purchases(ga4))) == (1, 1, 1)


async def test_an_event_from_a_stranger_or_nonsense_is_refused_without_a_server_error(
    app_client: Client, shop: Seeded, bitrix: FakeBitrix24
) -> None:
    world = World(app_client.app[sessionmaker_key], shop.site_id, "")
    crm = await world.integration(
        "bitrix24", bitrix_config(bitrix, deals={"application_token": TOKEN})
    )
    url = f"/api/v1/crm/bitrix24/{crm}/events"
    good = {"event": "ONCRMDEALUPDATE", "data[FIELDS][ID]": "5", "auth[application_token]": TOKEN}
    cases = [
        ({**good, "auth[application_token]": "guess"}, 403),
        ({**good, "data[FIELDS][ID]": "5; DROP TABLE deal"}, 400),
        ({"event": "ONCRMDEALUPDATE", "auth[application_token]": TOKEN}, 400),
    ]
    for form, status in cases:
        resp = await app_client.post(url, data=form)
        assert resp.status == status, await resp.text()
    for raw, media in ((b"\xff\xfe", "text/plain"),
                       (b"event=%ff%fe\xff", "application/x-www-form-urlencoded"),
                       (b"[1, 2]", "application/json")):  # fmt: skip
        resp = await app_client.post(url, data=raw, headers={"Content-Type": media})
        assert resp.status == 400, (media, await resp.text())
    assert (await app_client.post("/api/v1/crm/bitrix24/999/events", data=good)).status == 404
    async with app_client.app[sessionmaker_key]() as session:
        assert await session.scalar(select(func.count()).select_from(CrmFetch)) == 0


async def test_an_amocrm_lead_won_comes_back_by_webhook_with_the_secret_url(
    app_client: Client, shop: Seeded, amo: FakeAmoCrm
) -> None:
    app = app_client.app
    world = World(app[sessionmaker_key], shop.site_id, "")
    crm = await world.integration(
        "amocrm", amo_config(amo, deals={"webhook_secret": SECRET, "currency": "RUB"})
    )
    await world.call()
    await wait_until(lambda: _true(len(amo.calls) == 1), what="the call in amoCRM")
    lead_id = next(iter(amo.leads))
    amo.move_lead(lead_id, 142, price=9000)

    wrong = str(app_client.make_url(f"/api/v1/crm/amocrm/{crm}/guess/events"))
    assert await amo.send_webhook(wrong, "status", [lead_id]) == 403
    url = str(app_client.make_url(f"/api/v1/crm/amocrm/{crm}/{SECRET}/events"))
    assert await amo.send_webhook(url, "status", [lead_id]) == 200
    await app[deal_sync_key].run_once()

    row = await yandex_row(app_client, shop.marketer_token)
    assert row["revenue"] == 9000.0
    resp = await app_client.get(
        "/api/v1/reports/deals?site=shop",
        headers={"Authorization": f"Bearer {shop.marketer_token}"},
    )
    report = await resp.json()
    assert report["totals"]["won"] == 1 and report["totals"]["exact"] == 1
    assert {m["basis"]: m["deals"] for m in report["matches"]}["own"] == 1
    assert report["funnel"][-2]["stage"] == "Successfully realized"


async def test_an_amocrm_token_lapsing_mid_run_is_refreshed_once_and_survives_a_restart(
    world: World, http: Any, running: Any, amo: FakeAmoCrm
) -> None:
    config = amo_config(amo, oauth={"client_id": amo.client_id, "client_secret": amo.client_secret,
                                     "redirect_uri": amo.redirect_uri,
                                     "refresh_token": amo.refresh_token})  # fmt: skip
    crm = await world.integration("amocrm", config)
    workers = running(world.workers(http))
    await world.call()
    await wait_until(lambda: _true(len(amo.calls) == 1), what="the first call")

    amo.expire_access_token()
    await world.call()
    await world.call()
    await wait_until(lambda: _true(len(amo.calls) == 3), what="calls after the lapse")
    assert amo.refreshes == 1
    await workers.stop()

    async with world.sessionmaker() as session:
        stored = (await session.get(Integration, crm)).config  # type: ignore[union-attr]
    assert stored["access_token"] == amo.token
    assert stored["oauth"]["refresh_token"] == amo.refresh_token  # the new one, kept

    # A restart (new workers, new adapters, from the stored config); the token lapses again.
    amo.expire_access_token()
    running(world.workers(http))
    await world.call()
    await wait_until(lambda: _true(len(amo.calls) == 4), what="a call after the restart")
    assert amo.refreshes == 2


async def _true(value: bool) -> bool:
    return value


def _purchases(ga4: FakeGa4) -> list[dict[str, Any]]:
    return [e for e in ga4.events if e["name"] == "purchase"]


async def _settled(client: Client) -> bool:
    async with client.app[sessionmaker_key]() as session:
        waiting = await session.scalar(
            select(func.count())
            .select_from(OutboxRow)
            .where(OutboxRow.state.not_in(("done", "dead")))
        )
    return waiting == 0
