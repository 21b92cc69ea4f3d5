"""amoCRM OAuth 2 (refresh tokens that work once), long-lived tokens that lapse, operators as
the calls' authors, and reading its leads back as deals."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from calltracker.integrations import registry
from calltracker.integrations.amocrm import AmoCrmAdapter, token_expiry
from calltracker.integrations.amocrm_deals import AmoCrmDeals
from calltracker.integrations.base import RateLimiter
from calltracker.integrations.registry import parse_config

from .calls import CALL, a_call, key
from .fakes.amocrm import FakeAmoCrm
from .tokens import MemoryTokens


def oauth_config(amo: FakeAmoCrm, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": amo.url,
        "access_token": amo.token,
        "oauth": {
            "client_id": amo.client_id,
            "client_secret": amo.client_secret,
            "redirect_uri": amo.redirect_uri,
            "refresh_token": amo.refresh_token,
        },
        **extra,
    }


def jwt(exp: datetime) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'exp': int(exp.timestamp()), 'sub': '42'})}.c2ln"


async def test_a_lapsed_access_token_is_refreshed_once_for_calls_in_flight(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    store = MemoryTokens(oauth_config(amo))
    adapter = AmoCrmAdapter(parse_config("amocrm", store.stored), session, tokens=store)
    await adapter.deliver(CALL, key(CALL))
    amo.expire_access_token()

    calls = [a_call(call_id=n, caller=f"+7999123450{n}") for n in range(3)]
    await asyncio.gather(*(adapter.deliver(c, key(c)) for c in calls))

    assert amo.refreshes == 1
    assert len(amo.calls) == 4
    # The new pair is stored whole, at once: the old refresh token is spent.
    assert store.stored["access_token"] == amo.token
    assert store.stored["oauth"]["refresh_token"] == amo.refresh_token
    assert store.stored["oauth"]["expires_at"] > datetime.now(UTC).timestamp()


async def test_tokens_another_process_refreshed_first_are_taken_from_the_store(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    config = oauth_config(amo)
    store = MemoryTokens(config)
    limiter = RateLimiter(7)  # one account: one bucket for both
    adapter = AmoCrmAdapter(parse_config("amocrm", config), session, tokens=store, limiter=limiter)
    # Another worker refreshed with the same refresh token and stored the new pair.
    other = AmoCrmAdapter(parse_config("amocrm", config), session, tokens=store, limiter=limiter)
    amo.expire_access_token()
    await other.deliver(CALL, key(CALL))

    second = a_call(call_id=7, caller="+79991112233")
    await adapter.deliver(second, key(second))

    assert amo.refreshes == 1  # ours was refused as spent, and the stored pair used instead
    assert len(amo.calls) == 2


def test_a_long_lived_tokens_expiry_is_read_from_its_jwt_and_warned_about() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    soon = jwt(now + timedelta(days=5))
    later = jwt(now + timedelta(days=200))
    base = {"base_url": "https://example.amocrm.ru"}

    assert token_expiry(soon) == now + timedelta(days=5)
    assert token_expiry("not-a-jwt") is None
    (warning,) = registry.warnings("amocrm", {**base, "access_token": soon}, now)
    assert "2026-03-06" in warning and "5 day" in warning
    assert registry.warnings("amocrm", {**base, "access_token": later}, now) == []
    expired = registry.warnings("amocrm", {**base, "access_token": soon}, now + timedelta(days=6))
    assert "expired" in expired[0]


async def test_calls_are_made_by_the_operator_who_answered_not_a_robot(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    raw = {"base_url": amo.url, "access_token": amo.token, "responsible_user_id": 503,
           "operator_users": {"101": 501}}  # fmt: skip
    adapter = AmoCrmAdapter(parse_config("amocrm", raw), session)
    await adapter.deliver(CALL, key(CALL))
    other = a_call(call_id=8, caller="+79990000008", operator="555")
    await adapter.deliver(other, key(other))

    first, second = amo.calls
    assert (first["created_by"], first["responsible_user_id"]) == (501, 501)
    assert (second["created_by"], second["responsible_user_id"]) == (503, 503)
    lead = next(iter(amo.leads.values()))
    assert lead["responsible_user_id"] == 501


async def test_a_google_click_reaches_the_lead_as_its_gclid_tracking_field(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    assert CALL.visit is not None
    visit = replace(CALL.visit, click_id="gclid-77", click_id_type="gclid")
    raw = {"base_url": amo.url, "access_token": amo.token}
    await AmoCrmAdapter(parse_config("amocrm", raw), session).deliver(
        replace(CALL, visit=visit), key(CALL)
    )

    lead = next(iter(amo.leads.values()))
    codes = {f["field_code"]: f["values"][0]["value"] for f in lead["custom_fields_values"]}
    assert (codes["GCLID"], codes["GCLIENTID"]) == ("gclid-77", "123456.7654321")
    assert "YCLID" not in codes


async def test_leads_read_back_as_deals_with_pipeline_status_price_and_manager(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    lead_id = amo.add_lead(contact_phone="8 916 111-22-33", price=12000,
                           tracking={"UTM_SOURCE": "yandex", "YCLID": "y-1"})  # fmt: skip
    amo.move_lead(lead_id, 142)
    raw = {"base_url": amo.url, "access_token": amo.token, "deals": {"currency": "RUB"}}
    reader = AmoCrmDeals(AmoCrmAdapter(parse_config("amocrm", raw), session))

    deal = await reader.deal(str(lead_id))

    assert deal is not None
    assert (deal.status, deal.stage_name, deal.pipeline_name) == (
        "won",
        "Successfully realized",
        "Sales",
    )
    assert (deal.amount, deal.currency, deal.manager_name) == (1_200_000, "RUB", "Olga Manager")
    assert deal.tracking == {"utm_source": "yandex", "yclid": "y-1"}
    assert await reader.contact_phones(deal.contact_remote_id) == ("8 916 111-22-33",)
    page = await reader.modified_since(datetime.now(UTC) - timedelta(hours=1), limit=500)
    assert [d.remote_id for d in page.deals] == [str(lead_id)]
    assert await reader.deal("123") is None
