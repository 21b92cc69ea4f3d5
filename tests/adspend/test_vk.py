"""The VK Ads connector against the fake API v2 (docs/adspend.md 2)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from calltracker.adspend import registry, vk
from calltracker.adspend.vk import VkConfig, VkConnector
from calltracker.integrations.errors import AuthError

from .fakes.vk import AdGroup, FakeVk

D = date.fromisoformat
NOW = datetime(2026, 3, 5, 12, tzinfo=UTC)


def config(fake: FakeVk, **extra: Any) -> VkConfig:
    raw = {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "refresh_token": next(iter(fake.refresh_tokens)),
        "api_url": fake.url,
        "rate_limit": 4.0,
        **extra,
    }
    return registry.parse_config(vk.PLATFORM, raw)


class Saved:
    def __init__(self) -> None:
        self.tokens: list[dict[str, Any]] = []

    async def __call__(self, tokens: Mapping[str, Any]) -> None:
        self.tokens.append(dict(tokens))


def seed(fake: FakeVk) -> None:
    g = fake.add_group(
        AdGroup(7001, "Ретаргет", 600, utm="utm_source=vk&utm_medium=cpc&utm_campaign=retarget"),
        "Весна",
    )
    g.stats[D("2026-03-01")] = (5000, 25, "1234.56")
    g.stats[D("2026-03-02")] = (100, 1, "0.5")


async def test_a_pull_refreshes_a_missing_token_stores_it_and_reads_statistics(
    vk: FakeVk, http: aiohttp.ClientSession
) -> None:
    seed(vk)
    saved = Saved()
    pull = await VkConnector(config(vk), http, clock=lambda: NOW, on_tokens=saved).pull(
        D("2026-03-01"), D("2026-03-03")
    )
    assert [(r.day, r.campaign_id, r.ad_group_id, r.impressions, r.clicks, r.cost) for r in pull.rows] == [
        (D("2026-03-01"), "600", "7001", 5000, 25, 123456),
        (D("2026-03-02"), "600", "7001", 100, 1, 50),
    ]  # a day without impressions, clicks or spend is not a row  # fmt: skip
    assert pull.rows[0].campaign_name == "Весна"
    assert vk.refreshes == 1
    [tokens] = saved.tokens  # the rotated refresh token and the new access token are kept
    assert tokens["refresh_token"] in vk.refresh_tokens and tokens["access_token"] in vk.access
    assert tokens["access_expires_at"] == (NOW + timedelta(days=1)).isoformat()
    stat = vk.stat_requests[0]
    assert (stat["id"], stat["date_from"], stat["date_to"], stat["metrics"]) == (
        "7001", "2026-03-01", "2026-03-03", "base"
    )  # fmt: skip
    assert ("600", "7001") in {(c.campaign_id, c.ad_group_id) for c in pull.campaigns or []}


async def test_a_valid_stored_token_is_used_and_an_expired_one_refreshed_once(
    vk: FakeVk, http: aiohttp.ClientSession
) -> None:
    seed(vk)
    token = vk.issue()
    later = (NOW + timedelta(hours=10)).isoformat()
    await VkConnector(
        config(vk, access_token=token, access_expires_at=later), http, clock=lambda: NOW
    ).pull(D("2026-03-01"), D("2026-03-01"))
    assert vk.refreshes == 0  # no needless refresh: VK keeps at most five tokens per client
    expired = vk.issue(lifetime=-1)  # our clock says valid, VK says "expired_token"
    saved = Saved()
    pull = await VkConnector(
        config(vk, access_token=expired, access_expires_at=later),
        http,
        clock=lambda: NOW,
        on_tokens=saved,
    ).pull(D("2026-03-01"), D("2026-03-01"))
    assert len(pull.rows) == 1 and vk.refreshes == 1 and len(saved.tokens) == 1


async def test_a_revoked_access_is_an_auth_error_that_asks_to_reconnect(
    vk: FakeVk, http: aiohttp.ClientSession
) -> None:
    seed(vk)
    vk.revoked = True
    with pytest.raises(AuthError, match="connect the account again") as caught:
        await VkConnector(config(vk), http, clock=lambda: NOW).pull(
            D("2026-03-01"), D("2026-03-01")
        )
    assert vk.client_secret not in caught.value.message


async def test_lists_page_by_fifty_and_statistics_take_two_hundred_ids(
    vk: FakeVk, http: aiohttp.ClientSession
) -> None:
    vk.rps_limit = 100
    for n in range(230):
        g = vk.add_group(AdGroup(10_000 + n, f"g{n}", 600 + n % 3), f"plan{n % 3}")
        g.stats[D("2026-03-01")] = (1, 0, "1.00")
    pull = await VkConnector(config(vk, rate_limit=10.0), http, clock=lambda: NOW).pull(
        D("2026-03-01"), D("2026-03-01")
    )
    assert len(pull.rows) == 230
    assert sum(r.cost for r in pull.rows) == 230_00
    group_pages = [r for r in vk.requests if r.path.endswith("/ad_groups.json")]
    assert [r.query["limit"] for r in group_pages] == ["50"] * 5
    assert [len(s["id"].split(",")) for s in vk.stat_requests] == [200, 30]


async def test_the_rate_limit_is_waited_out(vk: FakeVk, http: aiohttp.ClientSession) -> None:
    seed(vk)
    vk.rps_limit = 2
    pull = await VkConnector(config(vk, rate_limit=10.0), http, clock=lambda: NOW).pull(
        D("2026-03-01"), D("2026-03-02")
    )
    assert len(pull.rows) == 2
    assert vk.rejected_for_rate >= 1  # it met VK's 429 and waited, then went on
