"""Contract tests: the amoCRM adapter against a fake account that enforces integrations.md section 2."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from calltracker.integrations.amocrm import AmoCrmAdapter
from calltracker.integrations.base import RateLimiter
from calltracker.integrations.errors import AuthError, ConfigError, PermanentError, TemporaryError
from calltracker.integrations.registry import parse_config

from .calls import CALL, a_call, key
from .fakes.amocrm import FakeAmoCrm


def make(amo: FakeAmoCrm, session: aiohttp.ClientSession, **config: Any) -> AmoCrmAdapter:
    raw = {"base_url": amo.url, "access_token": amo.token, **config}
    return AmoCrmAdapter(parse_config("amocrm", raw), session)


def values_by_code(entity: dict[str, Any]) -> dict[str, str]:
    return {
        f["field_code"]: f["values"][0]["value"] for f in entity.get("custom_fields_values", [])
    }


async def test_a_new_caller_gets_one_lead_with_tracking_fields_and_a_contact_with_the_phone(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    result = await make(amo, session).deliver(CALL, key(CALL))

    (lead,) = amo.leads.values()
    assert result.remote_ids["lead_id"] == str(lead["id"])
    assert values_by_code(lead) == {
        "UTM_SOURCE": "yandex",
        "UTM_MEDIUM": "cpc",
        "UTM_CAMPAIGN": "brand_msk",
        "UTM_CONTENT": "ad_42",
        "UTM_TERM": "купить диван",
        "UTM_REFERRER": "https://yandex.ru/search/?text=divan",
        "_YM_UID": "1730000000123456789",
        "GCLIENTID": "123456.7654321",
    }
    assert lead["request_id"] == CALL.call_uuid
    assert lead["_embedded"]["tags"] == [{"name": "calltracking"}]
    contact = amo.contacts[lead["contact_id"]]
    assert result.remote_ids["contact_id"] == str(contact["id"])
    assert contact["custom_fields_values"] == [
        {"field_code": "PHONE", "values": [{"value": "+79991234567", "enum_code": "WORK"}]}
    ]


async def test_the_call_is_added_with_the_required_fields_and_attached_to_the_new_lead(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    result = await make(amo, session).deliver(CALL, key(CALL))

    (call,) = amo.calls
    assert result.remote_ids["call_id"] == str(call["id"])
    assert (call["entity_type"], str(call["entity_id"])) == ("lead", result.remote_ids["lead_id"])
    assert call["direction"] == "inbound"
    assert (call["duration"], call["phone"], call["source"]) == (125, "+79991234567", "calltracker")
    assert (call["uniq"], call["link"], call["call_status"]) == (
        CALL.call_uuid,
        CALL.recording_url,
        4,
    )


async def test_only_tracking_codes_the_account_has_are_sent(session: aiohttp.ClientSession) -> None:
    amo = FakeAmoCrm(tracking_codes=("UTM_SOURCE", "UTM_TERM"), custom_fields_page_size=2)
    await amo.start()
    try:
        await make(amo, session).deliver(CALL, key(CALL))
    finally:
        await amo.close()

    (lead,) = amo.leads.values()
    assert values_by_code(lead) == {"UTM_SOURCE": "yandex", "UTM_TERM": "купить диван"}
    assert [r.query.get("page") for r in amo.requests if r.path.endswith("custom_fields")] == [
        "1",
        "2",
    ]


async def test_every_request_carries_the_bearer_token_and_posts_json(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    await make(amo, session).deliver(CALL, key(CALL))

    assert [r.path for r in amo.requests] == [
        "/api/v4/contacts",
        "/api/v4/leads/custom_fields",
        "/api/v4/leads/complex",
        "/api/v4/calls",
    ]
    assert all(r.headers["Authorization"] == f"Bearer {amo.token}" for r in amo.requests)
    (complex_request,) = [r for r in amo.requests if r.path == "/api/v4/leads/complex"]
    body = json.loads(complex_request.body)
    assert isinstance(body, list) and len(body) == 1
    assert len(body[0]["_embedded"]["contacts"]) == 1


async def test_delivering_the_same_call_twice_leaves_one_lead(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    adapter = make(amo, session)

    first = await adapter.deliver(CALL, key(CALL))
    second = await adapter.deliver(CALL, key(CALL))

    assert len(amo.leads) == 1
    assert len(amo.contacts) == 1
    assert second.remote_ids["lead_id"] == first.remote_ids["lead_id"]


async def test_a_ring_then_a_hangup_delivery_share_one_lead(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    adapter = make(amo, session, stages=["ring", "hangup"])

    ring = await adapter.deliver(a_call(stage="ring", ended_at=None), "1:42:ring")
    hangup = await adapter.deliver(CALL, key(CALL))

    assert len(amo.leads) == 1
    assert "call_id" not in ring.remote_ids
    assert hangup.remote_ids["lead_id"] == ring.remote_ids["lead_id"]
    assert len(amo.calls) == 1


async def test_a_repeat_caller_is_attached_to_their_deal_not_given_a_new_lead(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    contact_id, lead_id = amo.add_contact("8 (999) 123-45-67")

    result = await make(amo, session).deliver(CALL, key(CALL))

    assert list(amo.leads) == [lead_id]
    assert result.remote_ids == {
        "contact_id": str(contact_id),
        "lead_id": str(lead_id),
        "call_id": str(amo.calls[0]["id"]),
    }
    assert (amo.calls[0]["entity_type"], amo.calls[0]["entity_id"]) == ("lead", lead_id)


async def test_unsorted_mode_creates_an_incoming_lead_carrying_the_call(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    adapter = make(amo, session, new_lead="unsorted")

    result = await adapter.deliver(CALL, key(CALL))
    await adapter.deliver(CALL, key(CALL))

    (item,) = amo.unsorted
    assert result.remote_ids["unsorted_uid"] == item["uid"]
    assert (item["source_name"], item["source_uid"]) == ("calltracker", "calltracker")
    meta = item["metadata"]
    assert (meta["from"], meta["phone"], meta["uniq"]) == (
        "+79991234567",
        "+74950000001",
        CALL.call_uuid,
    )
    assert (meta["duration"], meta["link"]) == (125, CALL.recording_url)
    assert meta["called_at"] == int(CALL.started_at.timestamp())
    assert len(amo.leads) == 1
    assert values_by_code(next(iter(amo.leads.values())))["UTM_CAMPAIGN"] == "brand_msk"
    assert len(amo.calls) == 1  # the redelivery found the contact and added only the call


@pytest.mark.parametrize("mode", ["errors", "omit"])
async def test_a_call_amocrm_did_not_attach_is_temporary_and_the_retry_adds_no_second_lead(
    amo: FakeAmoCrm, session: aiohttp.ClientSession, mode: Any
) -> None:
    adapter = make(amo, session)
    amo.unmatched_calls = mode
    amo.attach_calls = False  # e.g. amoCRM has not indexed the new contact's phone yet

    with pytest.raises(TemporaryError) as caught:
        await adapter.deliver(CALL, key(CALL))
    assert "not attached" in str(caught.value)
    assert amo.calls == []

    amo.attach_calls = True
    await adapter.deliver(CALL, key(CALL))
    assert len(amo.leads) == 1
    assert len(amo.calls) == 1


async def test_a_hidden_caller_is_skipped(amo: FakeAmoCrm, session: aiohttp.ClientSession) -> None:
    result = await make(amo, session).deliver(a_call(caller=""), "1:42:hangup")

    assert result.skipped
    assert amo.requests == []


async def test_a_bad_token_is_an_auth_error(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    adapter = AmoCrmAdapter(
        parse_config("amocrm", {"base_url": amo.url, "access_token": "wrong"}), session
    )

    with pytest.raises(AuthError) as caught:
        await adapter.deliver(CALL, key(CALL))

    assert caught.value.status == 401
    assert amo.leads == {}


async def test_a_validation_error_is_permanent_and_names_the_path(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    adapter = make(amo, session)
    await adapter.deliver(a_call(caller="+79990000000"), "1:1:hangup")  # caches the field codes
    amo.tracking_codes.remove("UTM_TERM")  # an admin deleted the field since

    with pytest.raises(PermanentError) as caught:
        await adapter.deliver(CALL, key(CALL))

    assert caught.value.status == 400
    assert "custom_fields_values.4.field_code" in str(caught.value)
    assert "not a valid choice" in str(caught.value)


async def test_429_is_temporary_with_the_retry_after_hint(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    amo.fail_next(
        1, 429, {"title": "Too Many Requests", "status": 429}, headers={"Retry-After": "3"}
    )

    with pytest.raises(TemporaryError) as caught:
        await make(amo, session).deliver(CALL, key(CALL))

    assert (caught.value.status, caught.value.retry_after) == (429, 3.0)


async def test_concurrent_deliveries_never_exceed_seven_requests_a_second(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    adapter = make(amo, session)
    calls = [a_call(call_id=100 + i, caller=f"+7999000000{i}") for i in range(4)]

    await asyncio.gather(*(adapter.deliver(call, key(call)) for call in calls))

    assert len(amo.leads) == 4
    assert amo.rejected_for_rate == 0
    assert amo.max_per_second <= 7


async def test_the_fake_rejects_a_client_that_ignores_the_rate_limit(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    adapter = AmoCrmAdapter(
        parse_config("amocrm", {"base_url": amo.url, "access_token": amo.token}),
        session,
        limiter=RateLimiter(1000),
    )
    calls = [a_call(call_id=100 + i, caller=f"+7999000000{i}") for i in range(4)]

    results = await asyncio.gather(
        *(adapter.deliver(c, key(c)) for c in calls), return_exceptions=True
    )

    assert any(isinstance(r, TemporaryError) and r.status == 429 for r in results)


def test_the_config_refuses_a_rate_above_amocrm_limit() -> None:
    with pytest.raises(ConfigError, match=r"amocrm\.rate_limit"):
        parse_config(
            "amocrm", {"base_url": "https://x.amocrm.ru", "access_token": "t", "rate_limit": 10}
        )


async def test_an_account_that_is_down_is_temporary_and_delivery_works_once_it_is_back(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    adapter = make(amo, session)
    amo.fail_for(30, 503, "Service Unavailable")

    with pytest.raises(TemporaryError) as caught:
        await adapter.deliver(CALL, key(CALL))
    assert caught.value.status == 503

    amo.fail_for(0, 503)
    await adapter.deliver(CALL, key(CALL))
    assert len(amo.leads) == 1
