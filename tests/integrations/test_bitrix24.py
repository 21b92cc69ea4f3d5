"""Contract tests: the Bitrix24 adapter against a fake portal that enforces integrations.md section 1."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest

from calltracker.integrations.bitrix24 import Bitrix24Adapter
from calltracker.integrations.errors import AuthError, PermanentError, TemporaryError
from calltracker.integrations.registry import parse_config

from .calls import CALL, a_call, key
from .fakes.bitrix24 import FakeBitrix24
from .tokens import MemoryTokens


def make(bitrix: FakeBitrix24, session: aiohttp.ClientSession, **config: Any) -> Bitrix24Adapter:
    raw = {"webhook_url": bitrix.webhook_url, "rate_limit": 50, **config}
    return Bitrix24Adapter(parse_config("bitrix24", raw), session)


def with_app(bitrix: FakeBitrix24, **extra: Any) -> dict[str, Any]:
    return {
        "portal_url": bitrix.url,
        "client_id": bitrix.client_id,
        "client_secret": bitrix.client_secret,
        "access_token": bitrix.access_token,
        "refresh_token": bitrix.refresh_token,
        "oauth_url": f"{bitrix.url}/oauth/token/",
        **extra,
    }


async def test_a_new_caller_gets_one_lead_with_source_campaign_keyword_and_e164_phone(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    result = await make(bitrix, session).deliver(CALL, key(CALL))

    assert len(bitrix.leads) == 1
    (lead,) = bitrix.leads.values()
    assert result.remote_ids["lead_id"] == str(lead["ID"])
    assert lead["PHONE"] == [{"VALUE": "+79991234567", "VALUE_TYPE": "WORK"}]
    assert (lead["UTM_SOURCE"], lead["UTM_MEDIUM"], lead["UTM_CAMPAIGN"]) == (
        "yandex",
        "cpc",
        "brand_msk",
    )
    assert (lead["UTM_TERM"], lead["UTM_CONTENT"]) == ("купить диван", "ad_42")
    assert lead["SOURCE_ID"] == "CALL"
    assert lead["ORIGIN_ID"] == CALL.call_uuid
    assert lead["ORIGINATOR_ID"] == "calltracker"
    assert "+74950000001" in lead["SOURCE_DESCRIPTION"]
    assert bitrix.lead_params == [{"REGISTER_SONET_EVENT": "Y"}]


async def test_requests_go_to_the_webhook_path_as_json_posts(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    await make(bitrix, session, call_logging="activity").deliver(CALL, key(CALL))

    prefix = f"/rest/{bitrix.user_id}/{bitrix.code}/"
    assert [r.path.removeprefix(prefix) for r in bitrix.requests] == [
        "crm.settings.mode.get",
        "crm.lead.list",
        "crm.duplicate.findbycomm",
        "crm.lead.add",
        "crm.tracking.trace.add",
        "crm.activity.list",
        "crm.activity.add",
    ]
    for request in bitrix.requests:
        assert request.method == "POST"
        assert request.headers["Content-Type"].startswith("application/json")
        assert isinstance(json.loads(request.body), dict)


async def test_the_configured_source_id_and_sonet_flag_are_sent(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    await make(bitrix, session, source_id="ADVERTISING", register_sonet_event=False).deliver(
        CALL, key(CALL)
    )

    (lead,) = bitrix.leads.values()
    assert lead["SOURCE_ID"] == "ADVERTISING"
    assert bitrix.lead_params == [{"REGISTER_SONET_EVENT": "N"}]


async def test_delivering_the_same_call_twice_leaves_one_lead_and_one_call(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    adapter = make(bitrix, session, call_logging="activity")

    first = await adapter.deliver(CALL, key(CALL))
    second = await adapter.deliver(CALL, key(CALL))

    assert len(bitrix.leads) == 1
    assert len(bitrix.call_activities()) == 1
    assert len(bitrix.traces) == 1  # attached to the lead when it was made, once
    assert first.remote_ids == {**second.remote_ids, "trace_id": first.remote_ids["trace_id"]}


async def test_a_ring_then_a_hangup_delivery_share_one_lead(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    adapter = make(bitrix, session, stages=["ring", "hangup"], call_logging="activity")

    ring = await adapter.deliver(a_call(stage="ring", ended_at=None), key(a_call(stage="ring")))
    hangup = await adapter.deliver(CALL, key(CALL))

    assert len(bitrix.leads) == 1
    assert ring.remote_ids["lead_id"] == hangup.remote_ids["lead_id"]
    assert "activity_id" not in ring.remote_ids
    assert len(bitrix.call_activities()) == 1


async def test_a_stage_not_enabled_is_skipped_without_a_request(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    result = await make(bitrix, session).deliver(a_call(stage="ring", ended_at=None), "1:42:ring")

    assert result.skipped
    assert bitrix.requests == []


async def test_a_repeat_caller_is_attached_to_their_contact_not_given_a_new_lead(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    contact_id = bitrix.add_contact("+79991234567")

    result = await make(bitrix, session, call_logging="activity").deliver(CALL, key(CALL))

    assert bitrix.leads == {}
    assert result.remote_ids["contact_id"] == str(contact_id)
    (activity,) = bitrix.call_activities()
    assert (activity["OWNER_TYPE_ID"], activity["OWNER_ID"]) == (3, contact_id)
    assert activity["COMMUNICATIONS"][0]["VALUE"] == "+79991234567"


async def test_a_second_call_from_a_new_caller_is_attached_to_their_first_lead(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    adapter = make(bitrix, session, call_logging="activity")
    first = await adapter.deliver(CALL, key(CALL))

    later = a_call(call_id=43)
    second = await adapter.deliver(later, key(later))

    assert len(bitrix.leads) == 1
    assert second.remote_ids["lead_id"] == first.remote_ids["lead_id"]
    assert len(bitrix.call_activities()) == 2


async def test_a_repeat_caller_gets_a_repeat_lead_on_their_contact_when_configured(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    contact_id = bitrix.add_contact("+79991234567")

    result = await make(bitrix, session, repeat_caller="new_lead", call_logging="activity").deliver(
        CALL, key(CALL)
    )

    (lead,) = bitrix.leads.values()
    assert lead["CONTACT_ID"] == contact_id
    assert result.remote_ids["contact_id"] == str(contact_id)


async def test_telephony_refused_to_a_webhook_falls_back_to_a_call_activity_once_per_portal(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    adapter = make(bitrix, session)  # no app credentials: telephony goes through the webhook

    await adapter.deliver(CALL, key(CALL))
    later = a_call(call_id=43)
    await adapter.deliver(later, key(later))

    registers = [r for r in bitrix.requests if r.path.endswith("telephony.externalCall.register")]
    assert len(registers) == 1
    activities = bitrix.call_activities()
    assert len(activities) == 2
    assert activities[0]["ORIGIN_ID"] == CALL.call_uuid
    assert activities[0]["OWNER_TYPE_ID"] == 1
    assert CALL.recording_url in activities[0]["DESCRIPTION"]


async def test_with_app_credentials_the_call_is_registered_finished_and_its_record_attached(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    result = await make(bitrix, session, app=with_app(bitrix)).deliver(CALL, key(CALL))

    methods = bitrix.methods()
    assert methods[-3:] == [
        "telephony.externalcall.register",
        "telephony.externalcall.finish",
        "telephony.externalcall.attachrecord",
    ]
    (call,) = bitrix.calls.values()
    register, finish = call["register"], call["finish"]
    assert register["TYPE"] == 2
    assert register["SHOW"] == 0
    assert register["PHONE_NUMBER"] == "+79991234567"
    assert register["USER_ID"] == 1
    assert register["EXTERNAL_CALL_ID"] == CALL.call_uuid
    assert register["LINE_NUMBER"] == "+74950000001"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", register["CALL_START_DATE"])
    assert (register["CRM_ENTITY_TYPE"], str(register["CRM_ENTITY_ID"])) == (
        "LEAD",
        result.remote_ids["lead_id"],
    )
    assert finish["CALL_ID"] == result.remote_ids["call_id"]
    assert (finish["STATUS_CODE"], finish["DURATION"]) == ("200", 125)
    assert call["records"] == [CALL.recording_url]


@pytest.mark.parametrize(
    ("status", "code"), [("answered", "200"), ("missed", "304"), ("busy", "486")]
)
async def test_the_call_outcome_maps_to_a_finish_status_code(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession, status: str, code: str
) -> None:
    talk = 125 if status == "answered" else 0
    await make(bitrix, session, app=with_app(bitrix)).deliver(
        a_call(status=status, talk_seconds=talk, recording_url=""), key(CALL)
    )

    (call,) = bitrix.calls.values()
    assert call["finish"]["STATUS_CODE"] == code
    assert call["finish"]["DURATION"] == talk
    assert "telephony.externalcall.attachrecord" not in bitrix.methods()


async def test_an_operator_extension_maps_to_its_bitrix_user(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    await make(bitrix, session, app=with_app(bitrix), operator_users={"101": 7}).deliver(
        CALL, key(CALL)
    )

    (call,) = bitrix.calls.values()
    assert call["register"]["USER_ID"] == 7
    (lead,) = bitrix.leads.values()
    assert lead["ASSIGNED_BY_ID"] == 7


async def test_redelivering_a_finished_telephony_call_adds_no_second_call(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    adapter = make(bitrix, session, app=with_app(bitrix))

    first = await adapter.deliver(CALL, key(CALL))
    second = await adapter.deliver(CALL, key(CALL))

    assert len(bitrix.calls) == 1
    assert len(bitrix.call_activities()) == 1
    assert first.remote_ids == {**second.remote_ids, "trace_id": first.remote_ids["trace_id"]}


async def test_an_expired_app_token_is_refreshed_once_and_the_call_retried(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    store = MemoryTokens()
    config = parse_config(
        "bitrix24", {"webhook_url": bitrix.webhook_url, "rate_limit": 50, "app": with_app(bitrix)}
    )
    bitrix.expire_access_token()

    await Bitrix24Adapter(config, session, tokens=store).deliver(CALL, key(CALL))

    assert bitrix.refreshes == 1
    assert len(bitrix.calls) == 1
    assert store.saved == [
        {"app": {"access_token": bitrix.access_token, "refresh_token": bitrix.refresh_token}}
    ]


async def test_a_wrong_webhook_code_is_an_auth_error(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    raw = {"webhook_url": f"{bitrix.url}/rest/1/not-the-code/"}

    with pytest.raises(AuthError) as caught:
        await Bitrix24Adapter(parse_config("bitrix24", raw), session).deliver(CALL, key(CALL))

    assert (caught.value.status, caught.value.code) == (401, "NO_AUTH_FOUND")
    assert bitrix.leads == {}


async def test_a_webhook_without_the_crm_scope_is_an_auth_error(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    bitrix.scopes = frozenset({"telephony"})

    with pytest.raises(AuthError) as caught:
        await make(bitrix, session).deliver(CALL, key(CALL))

    assert (caught.value.status, caught.value.code) == (403, "insufficient_scope")


async def test_query_limit_exceeded_is_a_temporary_error_with_a_retry_hint(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    bitrix.bucket_size, bitrix.drain_per_second = 2, 0.01

    with pytest.raises(TemporaryError) as caught:
        await make(bitrix, session).deliver(CALL, key(CALL))

    assert (caught.value.status, caught.value.code) == (503, "QUERY_LIMIT_EXCEEDED")
    assert caught.value.retry_after is not None and caught.value.retry_after > 0


async def test_a_validation_refusal_is_permanent_and_carries_bitrix_message(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    bitrix.denied_methods.add("crm.lead.add")

    with pytest.raises(PermanentError) as caught:
        await make(bitrix, session).deliver(CALL, key(CALL))

    assert caught.value.status == 400
    assert "Access denied." in str(caught.value)


async def test_an_unknown_source_id_is_permanent(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(PermanentError) as caught:
        await make(bitrix, session, source_id="RADIO").deliver(CALL, key(CALL))

    assert caught.value.code == "INVALID_ARG_VALUE"


async def test_a_portal_that_is_down_is_temporary_and_delivery_works_once_it_is_back(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    adapter = make(bitrix, session, call_logging="activity")
    await bitrix.down()

    with pytest.raises(TemporaryError):
        await adapter.deliver(CALL, key(CALL))

    await bitrix.up()
    await adapter.deliver(CALL, key(CALL))
    assert len(bitrix.leads) == 1


async def test_500s_are_temporary(bitrix: FakeBitrix24, session: aiohttp.ClientSession) -> None:
    bitrix.fail_next(
        1, 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}
    )

    with pytest.raises(TemporaryError) as caught:
        await make(bitrix, session).deliver(CALL, key(CALL))

    assert caught.value.code == "INTERNAL_SERVER_ERROR"


async def test_a_hidden_caller_still_gets_one_lead_without_a_phone(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    adapter = make(bitrix, session, call_logging="activity")
    hidden = a_call(caller="")

    await adapter.deliver(hidden, key(hidden))
    await adapter.deliver(hidden, key(hidden))

    (lead,) = bitrix.leads.values()
    assert "PHONE" not in lead
    assert "crm.duplicate.findbycomm" not in bitrix.methods()
