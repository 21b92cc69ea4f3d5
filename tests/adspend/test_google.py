"""The Google Ads connector against the fake searchStream and OAuth endpoint (docs/adspend.md 3)."""

from __future__ import annotations

from datetime import date
from typing import Any

import aiohttp
import pytest

from calltracker.adspend import google, registry
from calltracker.adspend.google import GoogleConnector
from calltracker.integrations.errors import AuthError, TemporaryError

from .fakes.google import AdGroup, Campaign, FakeGoogleAds, Keyword, Stat

D = date.fromisoformat


def connector(fake: FakeGoogleAds, http: aiohttp.ClientSession, **extra: Any) -> GoogleConnector:
    raw = {
        "customer_id": "123-456-7890",
        "developer_token": fake.developer_token,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "refresh_token": next(iter(fake.refresh_tokens)),
        "api_url": fake.url,
        "token_url": f"{fake.url}/token",
        "rate_limit": 10.0,
        **extra,
    }
    return GoogleConnector(registry.parse_config(google.PLATFORM, raw), http)


def seed(fake: FakeGoogleAds) -> None:
    fake.campaigns[31] = Campaign(
        31,
        "Search RU",
        final_url_suffix="utm_source=google&utm_medium=cpc&utm_campaign={campaignid}",
    )
    fake.campaigns[32] = Campaign(32, "PMax", extra={D("2026-03-01"): Stat(900, 9, 4_500_000)})
    fake.groups[41] = AdGroup(41, 31, "Sofas", extra={D("2026-03-01"): Stat(50, 2, 1_000_000)})
    fake.keywords[51] = Keyword(51, 41, "buy sofa", {D("2026-03-01"): Stat(300, 12, 7_123_456)})
    fake.keywords[52] = Keyword(52, 41, "sofa", {D("2026-03-01"): Stat(100, 3, 2_005_000),
                                                 D("2026-03-02"): Stat(80, 1, 990_000)})  # fmt: skip


async def test_a_pull_sends_the_documented_headers_and_queries(
    google: FakeGoogleAds, http: aiohttp.ClientSession
) -> None:
    seed(google)
    pull = await connector(google, http).pull(D("2026-03-01"), D("2026-03-02"))
    headers = google.headers_seen[0]
    assert headers["developer-token"] == google.developer_token
    assert headers["Authorization"].startswith("Bearer ya29.")
    assert "login-customer-id" not in headers
    froms = [q.split(" FROM ")[1].split()[0] for q in google.queries]
    assert froms == ["customer", "campaign", "ad_group", "keyword_view"]
    assert all("BETWEEN '2026-03-01' AND '2026-03-02'" in q for q in google.queries[1:])
    assert "metrics.cost_micros" in google.queries[3]
    assert pull.currency == "USD"
    assert google.token_requests == 1  # one access token for all four queries


async def test_rows_add_up_to_each_campaigns_total_to_the_cent(
    google: FakeGoogleAds, http: aiohttp.ClientSession
) -> None:
    seed(google)
    pull = await connector(google, http).pull(D("2026-03-01"), D("2026-03-02"))
    got = {(r.day.day, r.campaign_id, r.ad_group_id, r.keyword): (r.impressions, r.clicks, r.cost)
           for r in pull.rows}  # fmt: skip
    assert got == {
        (1, "31", "41", "buy sofa"): (300, 12, 712),  # 7.123456 -> 7.12
        (1, "31", "41", "sofa"): (100, 3, 201),  # 2.005 -> 2.01, half up
        (2, "31", "41", "sofa"): (80, 1, 99),
        (1, "31", "41", ""): (50, 2, 100),  # the ad group beyond its keywords
        (1, "32", "", ""): (900, 9, 450),  # Performance Max: no ad groups
    }
    # A campaign's rows sum to its total rounded once: 10.128456 -> 10.13.
    day1 = [r for r in pull.rows if r.day.day == 1 and r.campaign_id == "31"]
    assert sum(r.cost for r in day1) == 1013
    [info] = [c for c in pull.campaigns or [] if (c.campaign_id, c.ad_group_id) == ("31", "")]
    assert info.tracking.startswith("utm_source=google")


async def test_a_manager_account_sends_login_customer_id(http: aiohttp.ClientSession) -> None:
    fake = FakeGoogleAds(manager_id="9998887777")
    await fake.start()
    try:
        seed(fake)
        with pytest.raises(AuthError, match="login-customer-id"):
            await connector(fake, http).pull(D("2026-03-01"), D("2026-03-01"))
        pull = await connector(fake, http, login_customer_id="999-888-7777").pull(
            D("2026-03-01"), D("2026-03-01")
        )
        assert pull.rows and fake.headers_seen[-1]["login-customer-id"] == "9998887777"
    finally:
        await fake.close()


async def test_an_expired_access_token_is_refreshed_and_a_revoked_refresh_token_alerts(
    google: FakeGoogleAds, http: aiohttp.ClientSession
) -> None:
    seed(google)
    c = connector(google, http)
    await c.pull(D("2026-03-01"), D("2026-03-01"))
    google.expire_tokens()  # Google ended the hour early
    await c.pull(D("2026-03-01"), D("2026-03-01"))
    assert google.token_requests == 2
    revoked = connector(google, http)
    google.refresh_tokens.clear()  # the user revoked the app's access
    with pytest.raises(AuthError, match="invalid_grant") as caught:
        await revoked.pull(D("2026-03-01"), D("2026-03-01"))
    assert google.client_secret not in caught.value.message


async def test_the_daily_quota_is_a_temporary_error_with_googles_retry_delay(
    google: FakeGoogleAds, http: aiohttp.ClientSession
) -> None:
    seed(google)
    google.quota = 2
    with pytest.raises(TemporaryError) as caught:
        await connector(google, http).pull(D("2026-03-01"), D("2026-03-01"))
    assert caught.value.status == 429 and caught.value.retry_after == 30.0


def test_a_customer_id_is_ten_digits() -> None:
    base = {"developer_token": "d", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
    assert registry.parse_config(
        google.PLATFORM, {**base, "customer_id": "123-456-7890"}
    ).customer_id == ("1234567890")
    with pytest.raises(ValueError, match="ten-digit"):
        registry.parse_config(google.PLATFORM, {**base, "customer_id": "12345"})
