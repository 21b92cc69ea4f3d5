"""A won deal back to the ad platforms, each against its fake: a Metrica offline conversion
with the amount, a Google Ads click conversion for a Google click, a GA4 purchase in the
visit's session; and GA4's call events in that session too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import aiohttp
import pytest

from calltracker.integrations.base import DealFacts
from calltracker.integrations.errors import PermanentError
from calltracker.integrations.ga4 import Ga4Adapter
from calltracker.integrations.google_ads import GoogleAdsAdapter
from calltracker.integrations.metrica import MetricaAdapter
from calltracker.integrations.registry import parse_config

from .calls import CALL, NOW, VISIT, key
from .fakes.ga4 import FakeGa4
from .fakes.google_ads import FakeGoogleAds
from .fakes.metrica import FakeMetrica

WON = DealFacts(deal_id=5, crm="bitrix24", remote_id="759", amount=1_500_050, currency="RUB",
                won_at=NOW - timedelta(minutes=1), title="Sofa")  # fmt: skip
GOOGLE_VISIT = replace(
    VISIT,
    click_id="EAIaIQobChMI-gclid",
    click_id_type="gclid",
    ga_sessions={"TEST123": "1772876700"},
)
GOOGLE_CALL = replace(CALL, visit=GOOGLE_VISIT)


@pytest.fixture
async def ads() -> AsyncIterator[FakeGoogleAds]:
    fake = FakeGoogleAds()
    await fake.start()
    fake.clicks["EAIaIQobChMI-gclid"] = NOW - timedelta(hours=1)
    fake.clicks["gbraid-1"] = NOW - timedelta(hours=1)
    yield fake
    await fake.close()


def google(ads: FakeGoogleAds, session: aiohttp.ClientSession) -> GoogleAdsAdapter:
    raw = {
        "customer_id": "123-456-7890",
        "login_customer_id": "987-654-3210",
        "conversion_action": ads.action_id,
        "developer_token": ads.developer_token,
        "client_id": ads.client_id,
        "client_secret": ads.client_secret,
        "refresh_token": ads.refresh_token,
        "base_url": ads.url,
        "token_url": f"{ads.url}/token",
    }
    return GoogleAdsAdapter(parse_config("google_ads", raw), session, clock=lambda: NOW)


async def test_a_won_deal_from_a_google_click_is_one_click_conversion(
    ads: FakeGoogleAds, session: aiohttp.ClientSession
) -> None:
    adapter = google(ads, session)
    result = await adapter.deliver_revenue(GOOGLE_CALL, WON, "1:deal:5:won")

    (conversion,) = ads.conversions
    assert conversion == {
        "gclid": "EAIaIQobChMI-gclid",
        "conversionAction": "customers/1234567890/conversionActions/987654",
        "conversionDateTime": "2026-03-07 10:29:00+00:00",
        "conversionValue": 15000.5,
        "currencyCode": "RUB",
        "orderId": "bitrix24-759",
    }
    assert result.remote_ids["order_id"] == "bitrix24-759"
    # Sent again (a retry after a lost answer): Google has the order already, no second one.
    again = await adapter.deliver_revenue(GOOGLE_CALL, WON, "1:deal:5:won")
    assert len(ads.conversions) == 1 and again.remote_ids["note"] == "already"
    assert ads.refreshes == 1  # one access token for both


async def test_gbraid_clicks_go_as_gbraid_and_visits_without_a_google_click_are_skipped(
    ads: FakeGoogleAds, session: aiohttp.ClientSession
) -> None:
    adapter = google(ads, session)
    gbraid = replace(CALL, visit=replace(VISIT, click_id="gbraid-1", click_id_type="gbraid"))
    await adapter.deliver_revenue(gbraid, WON, "k")
    skipped = await adapter.deliver_revenue(CALL, replace(WON, remote_id="760"), "k2")

    assert [sorted(c) for c in ads.conversions] == [
        ["conversionAction", "conversionDateTime", "conversionValue", "currencyCode", "gbraid",
         "orderId"]
    ]  # fmt: skip
    assert "no Google click id" in skipped.skipped
    assert (await adapter.deliver(CALL, key(CALL))).skipped  # calls are not sent


async def test_a_click_google_does_not_know_is_refused_with_googles_reason(
    ads: FakeGoogleAds, session: aiohttp.ClientSession
) -> None:
    unknown = replace(CALL, visit=replace(GOOGLE_VISIT, click_id="never-clicked"))
    with pytest.raises(PermanentError, match="CLICK_NOT_FOUND"):
        await google(ads, session).deliver_revenue(unknown, WON, "k")
    assert ads.conversions == []


async def test_a_won_deal_is_one_metrica_offline_conversion_with_its_amount(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    raw = {"counter_id": metrica.counter_id, "oauth_token": metrica.token,
           "base_url": metrica.url, "revenue_goal": "deal_won"}  # fmt: skip
    adapter = MetricaAdapter(parse_config("metrica", raw), session, clock=lambda: NOW)

    result = await adapter.deliver_revenue(CALL, WON, "1:deal:5:won")

    (upload,) = metrica.conversion_uploads
    assert upload.columns == ["ClientId", "Target", "DateTime", "Price", "Currency"]
    assert upload.rows == [{"ClientId": "1730000000123456789", "Target": "deal_won",
                            "DateTime": str(int(WON.won_at.timestamp())), "Price": "15000.50",
                            "Currency": "RUB"}]  # fmt: skip
    assert result.remote_ids["upload_id"] == str(upload.id)
    assert metrica.uploads == []  # not a call upload


async def test_a_visit_with_only_a_yclid_is_joined_by_it_and_an_old_visit_is_skipped(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    raw = {"counter_id": metrica.counter_id, "oauth_token": metrica.token,
           "base_url": metrica.url, "revenue_goal": "deal_won"}  # fmt: skip
    adapter = MetricaAdapter(parse_config("metrica", raw), session, clock=lambda: NOW)
    yclid = replace(VISIT, ym_client_id="", click_id="8132907843", click_id_type="yclid")
    old = replace(VISIT, visited_at=NOW - timedelta(days=40))

    await adapter.deliver_revenue(replace(CALL, visit=yclid), WON, "k")
    skipped = await adapter.deliver_revenue(replace(CALL, visit=old), WON, "k2")

    (upload,) = metrica.conversion_uploads
    assert upload.rows[0]["Yclid"] == "8132907843"
    assert "join window" in skipped.skipped


async def test_a_won_deal_is_one_ga4_purchase_in_the_visits_session(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    raw = {"measurement_id": ga4.measurement_id, "api_secret": ga4.api_secret,
           "base_url": ga4.url, "send_revenue": True, "validate": True}  # fmt: skip
    adapter = Ga4Adapter(parse_config("ga4", raw), session, clock=lambda: NOW)

    await adapter.deliver_revenue(GOOGLE_CALL, WON, "1:deal:5:won")
    await adapter.deliver(GOOGLE_CALL, key(GOOGLE_CALL))

    purchase, call = ga4.events
    assert ga4.dropped == []
    assert purchase["name"] == "purchase"
    assert purchase["params"]["transaction_id"] == "bitrix24-759"
    assert (purchase["params"]["value"], purchase["params"]["currency"]) == (15000.5, "RUB")
    # Both in the visit's session, not "(not set)".
    assert ga4.sessions() == [("123456.7654321", "1772876700")] * 2
    assert call["name"] == "phone_call"


async def test_a_ga4_event_without_a_session_of_its_stream_says_so_rather_than_guess(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    raw = {"measurement_id": ga4.measurement_id, "api_secret": ga4.api_secret,
           "base_url": ga4.url}  # fmt: skip
    other_stream = replace(CALL, visit=replace(VISIT, ga_sessions={"OTHER9": "1772876700"}))
    await Ga4Adapter(parse_config("ga4", raw), session, clock=lambda: NOW).deliver(
        other_stream, key(other_stream)
    )
    assert ga4.sessions() == [("123456.7654321", "(not set)")]


@pytest.mark.parametrize(
    ("kind", "raw", "sends"),
    [
        ("ga4", {"measurement_id": "G-X1", "api_secret": "s"}, False),
        ("ga4", {"measurement_id": "G-X1", "api_secret": "s", "send_revenue": True}, True),
        ("metrica", {"counter_id": 1, "oauth_token": "t"}, False),
        ("metrica", {"counter_id": 1, "oauth_token": "t", "revenue_goal": "won"}, True),
    ],
)
def test_revenue_goes_only_where_the_config_asks_for_it(
    kind: str, raw: dict[str, object], sends: bool
) -> None:
    assert parse_config(kind, raw).sends_revenue is sends
