"""The Direct connector against the fake Reports and Campaigns services (docs/adspend.md 1)."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import aiohttp
import pytest

from calltracker.adspend import direct, registry
from calltracker.adspend.direct import DirectConnector
from calltracker.integrations.errors import AuthError, TemporaryError

from .fakes.direct import Campaign, FakeDirect

D = date.fromisoformat
BRAND = Campaign(
    1001, "Бренд", tracking="utm_source=yandex&utm_medium=cpc&utm_campaign=brand&utm_term={keyword}",
    ad_groups={11: "Диваны"},
)  # fmt: skip


def connector(fake: FakeDirect, http: aiohttp.ClientSession, **config: Any) -> DirectConnector:
    raw = {"token": fake.token, "api_url": fake.api_url, "rate_limit": 2.0, **config}
    return DirectConnector(registry.parse_config(direct.PLATFORM, raw), http)


def seed(fake: FakeDirect) -> None:
    fake.add("2026-03-01", BRAND, 11, 501, "диван -бесплатно", 1000, 40, "833.333333")
    fake.add("2026-03-02", BRAND, 11, 501, "диван -бесплатно", 800, 20, "10.004167")


async def test_a_report_sends_the_documented_headers_and_body(
    direct: FakeDirect, http: aiohttp.ClientSession
) -> None:
    seed(direct)
    pull = await connector(direct, http).pull(D("2026-03-01"), D("2026-03-07"))
    headers = direct.report_headers[0]
    assert headers["Authorization"] == f"Bearer {direct.token}"
    assert "Client-Login" not in headers  # a direct advertiser, not an agency
    assert (headers["processingMode"], headers["skipReportHeader"]) == ("auto", "true")
    assert headers["skipReportSummary"] == "true"
    assert "returnMoneyInMicros" not in headers  # absent: money in micro-units
    params = direct.reports[0]
    assert params["ReportType"] == "CUSTOM_REPORT" and params["Format"] == "TSV"
    assert params["SelectionCriteria"] == {"DateFrom": "2026-03-01", "DateTo": "2026-03-07"}
    assert params["IncludeVAT"] == "YES"
    # 833.333333 + 20 % VAT = 999.9999996 -> 1000.00; 10.004167 x 1.2 = 12.0050004 -> 12.01
    assert [(r.day, r.keyword, r.impressions, r.clicks, r.cost) for r in pull.rows] == [
        (D("2026-03-01"), "диван -бесплатно", 1000, 40, 100000),
        (D("2026-03-02"), "диван -бесплатно", 800, 20, 1201),
    ]
    assert (pull.rows[0].campaign_id, pull.rows[0].ad_group_name) == ("1001", "Диваны")
    assert pull.currency == "RUB"
    assert pull.campaigns is not None and pull.campaigns[0].tracking == BRAND.tracking


async def test_money_in_currency_units_and_without_vat_give_the_same_kopecks(
    direct: FakeDirect, http: aiohttp.ClientSession
) -> None:
    seed(direct)
    pull = await connector(direct, http, money_in_micros=False, include_vat=False).pull(
        D("2026-03-01"), D("2026-03-02")
    )
    assert direct.report_headers[0]["returnMoneyInMicros"] == "false"
    assert direct.reports[0]["IncludeVAT"] == "NO"
    assert [r.cost for r in pull.rows] == [83333, 1000]  # 833.33, 10.00


async def test_an_offline_report_is_polled_after_retry_in_until_it_is_ready(
    direct: FakeDirect, http: aiohttp.ClientSession
) -> None:
    seed(direct)
    direct.offline_polls = 2  # 201 queued, 202, 202, then 200
    started = time.monotonic()
    pull = await connector(direct, http).pull(D("2026-03-01"), D("2026-03-02"))
    assert len(pull.rows) == 2
    statuses = [r.path for r in direct.requests if r.path.endswith("/reports")]
    assert len(statuses) == 4
    assert direct.early_polls == 0  # every repeat waited the retryIn the server asked for
    assert time.monotonic() - started >= 3 * direct.retry_in
    bodies = {r.body for r in direct.requests if r.path.endswith("/reports")}
    assert len(bodies) == 1  # "send repeated requests with the same parameters"


async def test_an_offline_report_that_stays_queued_is_a_temporary_error(
    direct: FakeDirect, http: aiohttp.ClientSession
) -> None:
    seed(direct)
    direct.offline_polls = 100
    with pytest.raises(TemporaryError, match="not ready"):
        await connector(direct, http, max_wait_seconds=1.5).pull(D("2026-03-01"), D("2026-03-02"))


async def test_an_agency_names_its_client_in_client_login(http: aiohttp.ClientSession) -> None:
    fake = FakeDirect(agency_clients=frozenset({"shop-client"}))
    await fake.start()
    try:
        seed(fake)
        with pytest.raises(Exception, match="Client-Login"):
            await connector(fake, http).pull(D("2026-03-01"), D("2026-03-02"))
        pull = await connector(fake, http, client_login="shop-client").pull(
            D("2026-03-01"), D("2026-03-02")
        )
        assert len(pull.rows) == 2
        assert fake.report_headers[-1]["Client-Login"] == "shop-client"
    finally:
        await fake.close()


async def test_a_revoked_token_is_an_auth_error_without_the_token(
    direct: FakeDirect, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(AuthError) as caught:
        await connector(direct, http, token="y0_revoked").pull(D("2026-03-01"), D("2026-03-02"))
    assert "53" in caught.value.message and "y0_revoked" not in caught.value.message


async def test_campaigns_are_read_page_by_page_and_a_points_shortage_only_skips_them(
    http: aiohttp.ClientSession,
) -> None:
    fake = FakeDirect(campaigns_page=2)
    await fake.start()
    try:
        for n in range(5):
            c = Campaign(2000 + n, f"c{n}", tracking=f"utm_source=yandex&utm_campaign=c{n}")
            fake.add("2026-03-01", c, 1, n + 1, f"k{n}", 10, 1, "1")
        pull = await connector(fake, http).pull(D("2026-03-01"), D("2026-03-01"))
        assert pull.campaigns is not None
        assert sorted(i.campaign_id for i in pull.campaigns) == [str(2000 + n) for n in range(5)]
        assert sum(r.path.endswith("/campaigns") for r in fake.requests) == 3  # LimitedBy pages
        fake.units = 5  # less than one call costs
        pull = await connector(fake, http).pull(D("2026-03-01"), D("2026-03-01"))
        assert len(pull.rows) == 5 and pull.campaigns is None  # spend still pulled
    finally:
        await fake.close()


async def test_the_connector_keeps_under_twenty_requests_in_ten_seconds(
    direct: FakeDirect, http: aiohttp.ClientSession
) -> None:
    seed(direct)
    c = connector(direct, http, tracking=False)
    for _ in range(4):
        await c.pull(D("2026-03-01"), D("2026-03-01"))
    times = [r.at for r in direct.requests]
    assert all(b - a >= 0.5 for a, b in zip(times, times[1:], strict=False))
