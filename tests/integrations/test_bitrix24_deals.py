"""Bitrix24 against its fake: portals without leads, the Sales Intelligence trace, the portal's
own fields, and reading deals back (crm.deal.get/list, stage names, managers)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from calltracker.integrations.bitrix24 import Bitrix24Adapter
from calltracker.integrations.bitrix24_deals import Bitrix24Deals
from calltracker.integrations.registry import parse_config

from .calls import CALL, VISIT, key
from .fakes.bitrix24 import FakeBitrix24

GCLID_VISIT = replace(VISIT, click_id="EAIaIQobChMI-gclid", click_id_type="gclid")


def make(bitrix: FakeBitrix24, session: aiohttp.ClientSession, **config: Any) -> Bitrix24Adapter:
    raw = {"webhook_url": bitrix.webhook_url, "rate_limit": 50, "call_logging": "activity",
           "deals": {"application_token": "b24-app-t0ken"}, **config}  # fmt: skip
    return Bitrix24Adapter(parse_config("bitrix24", raw), session)


async def test_a_portal_without_leads_gets_a_contact_and_a_deal_with_utm_and_a_trace(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    bitrix.crm_mode = 2
    result = await make(bitrix, session).deliver(CALL, key(CALL))

    assert bitrix.leads == {}
    (contact,) = bitrix.contacts.values()
    (deal,) = bitrix.deals.values()
    assert deal["CONTACT_ID"] == contact["ID"]
    assert contact["PHONE"] == [{"VALUE": "+79991234567", "VALUE_TYPE": "WORK"}]
    for entity in (contact, deal):
        assert (entity["UTM_SOURCE"], entity["UTM_MEDIUM"], entity["UTM_CAMPAIGN"],
                entity["UTM_TERM"]) == ("yandex", "cpc", "brand_msk", "купить диван")  # fmt: skip
        assert entity["ORIGIN_ID"] == CALL.call_uuid
    assert result.remote_ids["deal_id"] == str(deal["ID"])
    assert result.remote_ids["contact_id"] == str(contact["ID"])
    (trace,) = bitrix.traces
    assert {(e["TYPE"], e["ID"]) for e in trace["ENTITIES"]} == {
        ("CONTACT", contact["ID"]),
        ("DEAL", deal["ID"]),
    }
    assert trace["TRACE"]["PAGES"][0]["URL"] == VISIT.landing_url
    assert result.remote_ids["trace_id"] == str(trace["ID"])
    # The call is logged on the contact, the deal's client.
    (activity,) = bitrix.call_activities()
    assert (activity["OWNER_TYPE_ID"], activity["OWNER_ID"]) == (3, contact["ID"])


async def test_delivering_to_a_portal_without_leads_again_adds_no_second_deal(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    bitrix.crm_mode = 2
    adapter = make(bitrix, session)
    first = await adapter.deliver(CALL, key(CALL))
    second = await adapter.deliver(CALL, key(CALL))

    assert (len(bitrix.contacts), len(bitrix.deals), len(bitrix.traces)) == (1, 1, 1)
    assert first.remote_ids["deal_id"] == second.remote_ids["deal_id"]


async def test_our_sources_map_to_the_portals_sales_intelligence_sources(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    bitrix.analytics_sources = {"yandex_direct": 3}
    unmapped = make(bitrix, session)
    mapped = make(bitrix, session, utm_sources={"yandex": "yandex_direct"})
    await unmapped.deliver(CALL, key(CALL))
    bitrix.leads.clear()
    await mapped.deliver(replace(CALL, call_uuid="3f1c6a2e-0000-4e0a-9c1f-2d8e7b6a5c43"), "k2")

    (lead,) = bitrix.leads.values()
    assert lead["UTM_SOURCE"] == "yandex_direct"
    assert lead["TRACKING_SOURCE_ID"] == 3  # counted by the portal's own ROI report


async def test_click_and_client_ids_go_into_the_portals_own_fields(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    fields = {"gclid": "UF_CRM_GCLID", "ga_client_id": "UF_CRM_GA_CID",
              "ym_client_id": "UF_CRM_YM_UID", "yclid": "UF_CRM_YCLID"}  # fmt: skip
    await make(bitrix, session, fields=fields).deliver(replace(CALL, visit=GCLID_VISIT), key(CALL))

    (lead,) = bitrix.leads.values()
    assert lead["UF_CRM_GCLID"] == "EAIaIQobChMI-gclid"
    assert lead["UF_CRM_GA_CID"] == "123456.7654321"
    assert lead["UF_CRM_YM_UID"] == "1730000000123456789"
    assert "UF_CRM_YCLID" not in lead  # the visit came from Google


async def test_a_deal_reads_back_with_stage_name_status_amount_and_manager(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    bitrix.scopes = frozenset({"crm", "telephony", "user"})
    contact = bitrix.add_contact("+7 (916) 111-22-33")
    deal_id = bitrix.add_deal(title="Sofa", stage="EXECUTING", amount=15000.5, contact_id=contact,
                              UTM_SOURCE="google", UF_CRM_GCLID="gclid-1")  # fmt: skip
    bitrix.move_deal(deal_id, "WON")
    reader = Bitrix24Deals(make(bitrix, session, fields={"gclid": "UF_CRM_GCLID"}))

    deal = await reader.deal(str(deal_id))

    assert deal is not None
    assert (deal.stage_id, deal.stage_name, deal.status) == ("WON", "Deal won", "won")
    assert (deal.amount, deal.currency) == (1_500_050, "RUB")
    assert (deal.manager_id, deal.manager_name) == ("7", "Ivan Petrov")
    assert deal.contact_remote_id == str(contact)
    assert deal.tracking == {"utm_source": "google", "gclid": "gclid-1"}
    assert deal.closed_at is not None and deal.opened_at.tzinfo is not None
    assert await reader.contact_phones(str(contact)) == ("+7 (916) 111-22-33",)
    assert await reader.deal("999999") is None  # deleted in the portal


async def test_deals_changed_since_a_moment_are_read_across_pages_oldest_first(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    clock = iter(start + timedelta(minutes=n) for n in range(200))
    bitrix.clock = lambda: next(clock)
    ids = [bitrix.add_deal(title=f"d{n}") for n in range(65)]
    reader = Bitrix24Deals(make(bitrix, session))

    page = await reader.modified_since(start + timedelta(minutes=3), limit=500)

    assert [d.remote_id for d in page.deals] == [str(i) for i in ids[3:]]
    assert page.next_since == start + timedelta(minutes=64)
    assert not page.more
    pages = [r for r in bitrix.calls_log if r[0] == "crm.deal.list"]
    assert [p["start"] for _, p in pages] == [0, 50]
    assert all(p["filter"][">=DATE_MODIFY"] for _, p in pages)
    stages = await reader.stages()
    assert [(s.stage_id, s.status) for s in stages][-2:] == [("WON", "won"), ("LOSE", "lost")]


async def test_a_trace_the_portal_refuses_does_not_lose_the_lead(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    bitrix.denied_methods.add("crm.tracking.trace.add")
    result = await make(bitrix, session).deliver(CALL, key(CALL))

    assert len(bitrix.leads) == 1
    assert result.remote_ids["lead_id"] == str(next(iter(bitrix.leads)))
    assert "Access denied" in result.remote_ids["trace_error"]
