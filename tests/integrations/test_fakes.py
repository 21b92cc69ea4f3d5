"""The fakes enforce the documented contracts, so an adapter that breaks one fails its tests."""

from __future__ import annotations

import json

import aiohttp
import pytest

from .fakes.amocrm import FakeAmoCrm
from .fakes.bitrix24 import FakeBitrix24
from .fakes.ga4 import FakeGa4
from .fakes.metrica import FakeMetrica
from .fakes.webhook_receiver import FakeWebhookReceiver

LEAD = {"fields": {"TITLE": "t", "PHONE": [{"VALUE": "+79991234567", "VALUE_TYPE": "WORK"}]}}


async def post_bitrix(
    session: aiohttp.ClientSession, bitrix: FakeBitrix24, method: str, body: object
) -> tuple[int, object]:
    async with session.post(bitrix.webhook_url + method, json=body) as resp:
        return resp.status, await resp.json()


async def test_bitrix_takes_a_lead_and_answers_the_result_envelope(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    status, body = await post_bitrix(session, bitrix, "crm.lead.add.json", LEAD)

    assert status == 200
    assert isinstance(body, dict) and isinstance(body["result"], int) and "time" in body


@pytest.mark.parametrize(
    ("method", "body", "error"),
    [
        ("crm.lead.add", {"fields": {"PHONE": "+79991234567"}}, "INVALID_ARG_VALUE"),
        (
            "crm.lead.add",
            {"fields": {"PHONE": [{"VALUE": "+7999", "VALUE_TYPE": "CELL"}]}},
            "INVALID_ARG_VALUE",
        ),
        ("crm.lead.add", {**LEAD, "params": {"REGISTER_SONET_EVENT": True}}, "INVALID_ARG_VALUE"),
        (
            "crm.duplicate.findbycomm",
            {"values": ["+79991234567"]},
            "Communication type is not defined",
        ),
        ("crm.duplicate.findbycomm", {"type": "PHONE"}, "Communication values is not defined"),
        ("crm.no.such.method", {}, "ERROR_METHOD_NOT_FOUND"),
        (
            "telephony.externalCall.register",
            {"USER_ID": 1, "PHONE_NUMBER": "+79991234567", "TYPE": 2},
            "WRONG_AUTH_TYPE",
        ),
    ],
)
async def test_bitrix_refuses_what_the_docs_refuse(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession, method: str, body: object, error: str
) -> None:
    status, reply = await post_bitrix(session, bitrix, method, body)

    assert status >= 400
    assert isinstance(reply, dict) and reply["error"] == error


async def test_bitrix_findbycomm_answers_an_empty_array_when_nothing_matches(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    _, empty = await post_bitrix(
        session, bitrix, "crm.duplicate.findbycomm", {"type": "PHONE", "values": ["+70000000000"]}
    )
    contact_id = bitrix.add_contact("89991234567")
    _, found = await post_bitrix(
        session, bitrix, "crm.duplicate.findbycomm", {"type": "PHONE", "values": ["+79991234567"]}
    )

    assert isinstance(empty, dict) and empty["result"] == []
    assert isinstance(found, dict) and found["result"] == {"CONTACT": [contact_id]}


async def test_bitrix_takes_json_only(bitrix: FakeBitrix24, session: aiohttp.ClientSession) -> None:
    async with session.post(
        bitrix.webhook_url + "crm.lead.add", data={"fields[TITLE]": "t"}
    ) as resp:
        assert resp.status == 400


async def test_bitrix_telephony_checks_dates_and_order(
    bitrix: FakeBitrix24, session: aiohttp.ClientSession
) -> None:
    bitrix.telephony_via_webhook = True
    register = {
        "USER_ID": 1,
        "PHONE_NUMBER": "+79991234567",
        "TYPE": 2,
        "CALL_START_DATE": "2026-03-07 10:25:00",
    }
    status, reply = await post_bitrix(session, bitrix, "telephony.externalCall.register", register)
    assert (status, reply) == (
        400,
        {
            "error": "ERROR_CORE",
            "error_description": "CALL_START_DATE should be in the ISO-8601 format",
        },
    )

    register["CALL_START_DATE"] = "2026-03-07T10:25:00+00:00"
    _, ok = await post_bitrix(session, bitrix, "telephony.externalCall.register", register)
    assert isinstance(ok, dict)
    call_id = ok["result"]["CALL_ID"]
    status, early = await post_bitrix(
        session,
        bitrix,
        "telephony.externalCall.attachRecord",
        {"CALL_ID": call_id, "RECORD_URL": "https://r"},
    )
    assert (
        status == 400 and isinstance(early, dict) and "not finished" in early["error_description"]
    )


async def test_bitrix_leaky_bucket_answers_query_limit_exceeded(
    session: aiohttp.ClientSession,
) -> None:
    bitrix = FakeBitrix24(bucket_size=3, drain_per_second=0.001)
    await bitrix.start()
    try:
        statuses = [(await post_bitrix(session, bitrix, "crm.lead.list", {}))[0] for _ in range(4)]
        _, body = await post_bitrix(session, bitrix, "crm.lead.list", {})
    finally:
        await bitrix.close()

    assert statuses == [200, 200, 200, 503]
    assert body == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}


async def test_amo_needs_the_bearer_token(amo: FakeAmoCrm, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{amo.url}/api/v4/contacts", params={"query": "1"}) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"


async def test_amo_answers_an_empty_search_with_204_and_no_body(
    amo: FakeAmoCrm, session: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {amo.token}"}
    async with session.get(
        f"{amo.url}/api/v4/contacts", params={"query": "9991234567"}, headers=headers
    ) as resp:
        assert resp.status == 204
        assert await resp.read() == b""


@pytest.mark.parametrize(
    ("path", "body", "error_path"),
    [
        ("/api/v4/leads/complex", [{"name": "x"}] * 51, ""),
        ("/api/v4/leads/complex", [{"_embedded": {"contacts": [{}, {}]}}], "_embedded.contacts"),
        (
            "/api/v4/leads/complex",
            [{"custom_fields_values": [{"field_code": "UTM_X", "values": [{"value": "1"}]}]}],
            "custom_fields_values.0.field_code",
        ),
        (
            "/api/v4/calls",
            [{"direction": "inbound", "duration": 5, "phone": "+79991234567"}],
            "source",
        ),
        (
            "/api/v4/calls",
            [{"direction": "in", "duration": 5, "source": "s", "phone": "+7"}],
            "direction",
        ),
        (
            "/api/v4/calls",
            [
                {
                    "direction": "inbound",
                    "duration": 5,
                    "source": "s",
                    "phone": "+7",
                    "call_status": 9,
                }
            ],
            "call_status",
        ),
        (
            "/api/v4/leads/unsorted/sip",
            [{"source_name": "s", "source_uid": "u", "metadata": {"uniq": "1"}}],
            "metadata.from",
        ),
    ],
)
async def test_amo_answers_validation_errors_with_paths(
    amo: FakeAmoCrm, session: aiohttp.ClientSession, path: str, body: object, error_path: str
) -> None:
    headers = {"Authorization": f"Bearer {amo.token}"}
    async with session.post(amo.url + path, json=body, headers=headers) as resp:
        assert resp.status == 400
        reply = json.loads(await resp.read())

    paths = [e["path"] for item in reply["validation-errors"] for e in item["errors"]]
    assert error_path in paths


async def test_ga4_debug_reports_bad_names_and_misplaced_secrets(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    body = {
        "client_id": "1.2",
        "api_secret": "x",
        "events": [{"name": "_bad", "params": {"v": "x" * 101}}],
    }
    async with session.post(f"{ga4.url}/debug/mp/collect", json=body) as resp:
        reply = await resp.json()

    codes = {(m["fieldPath"], m["validationCode"]) for m in reply["validationMessages"]}
    assert codes == {
        ("api_secret", "VALUE_INVALID"),
        ("events[0].name", "NAME_INVALID"),
        ("events[0].params.v", "VALUE_OUT_OF_BOUNDS"),
    }


async def test_ga4_collect_says_204_even_to_garbage_and_records_nothing(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    async with session.post(f"{ga4.url}/mp/collect", data=b"not json") as resp:
        assert resp.status == 204
    async with session.get(f"{ga4.url}/mp/collect") as resp:
        assert resp.status == 405

    assert ga4.events == []
    assert len(ga4.dropped) == 1


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("ClientId,UserId,DateTime\n1,2,3\n", "exactly one"),
        ("ClientId,DateTime,PhoneNumber\n1,1700000000,+7 999 123\n", "PhoneNumber"),
        ("ClientId,DateTime,CallMissed\n1,1700000000,yes\n", "CallMissed"),
        ('ClientId,DateTime,Price\n1,1700000000,"1,5"\n', "Price"),
        ("ClientId,DateTime,Colour\n1,1700000000,red\n", "unknown columns"),
    ],
)
async def test_metrica_refuses_bad_csv(
    metrica: FakeMetrica, session: aiohttp.ClientSession, csv_text: str, message: str
) -> None:
    form = aiohttp.FormData()
    form.add_field("file", csv_text.encode(), filename="calls.csv", content_type="text/csv")
    url = (
        f"{metrica.url}/management/v1/counter/{metrica.counter_id}/offline_conversions/upload_calls"
    )
    async with session.post(
        url, data=form, headers={"Authorization": f"OAuth {metrica.token}"}
    ) as resp:
        assert resp.status == 400
        reply = await resp.json()

    assert message in reply["errors"][0]["message"]
    assert metrica.uploads == []


async def test_metrica_refuses_a_token_in_the_url(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"ClientId,DateTime\n1,1700000000\n", filename="calls.csv")
    url = (
        f"{metrica.url}/management/v1/counter/{metrica.counter_id}/offline_conversions/upload_calls"
    )
    async with session.post(url, data=form, params={"oauth_token": metrica.token}) as resp:
        assert resp.status == 400


async def test_a_fake_that_is_down_refuses_connections_and_comes_back_on_its_port(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    port = receiver.port
    await receiver.down()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.post(receiver.hook_url, data=b"{}"):
            pass

    await receiver.up()
    async with session.post(receiver.hook_url, data=b"{}") as resp:
        assert resp.status == 200
    assert receiver.port == port
