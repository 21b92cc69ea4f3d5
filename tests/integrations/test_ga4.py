"""Contract tests: the GA4 Measurement Protocol adapter against a fake that validates like GA4."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from calltracker.integrations.base import Visit
from calltracker.integrations.errors import ConfigError, PermanentError, TemporaryError
from calltracker.integrations.ga4 import Ga4Adapter
from calltracker.integrations.registry import parse_config

from .calls import CALL, NOW, a_call, key
from .fakes.ga4 import FakeGa4


def make(ga4: FakeGa4, session: aiohttp.ClientSession, **config: Any) -> Ga4Adapter:
    raw = {
        "measurement_id": ga4.measurement_id,
        "api_secret": ga4.api_secret,
        "base_url": ga4.url,
        **config,
    }
    return Ga4Adapter(parse_config("ga4", raw), session, clock=lambda: NOW)


async def test_a_call_is_one_valid_event_on_the_visitor_client_id(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    result = await make(ga4, session).deliver(CALL, key(CALL))

    assert ga4.dropped == []
    (event,) = ga4.events
    assert event["client_id"] == "123456.7654321"
    assert event["name"] == "phone_call"
    params = event["params"]
    assert (params["source"], params["medium"], params["campaign"]) == (
        "yandex",
        "cpc",
        "brand_msk",
    )
    assert (params["term"], params["content"]) == ("купить диван", "ad_42")
    assert (params["call_duration"], params["call_target"], params["call_status"]) == (
        125,
        1,
        "answered",
    )
    assert result.remote_ids == {"measurement_id": ga4.measurement_id}


async def test_the_secret_and_stream_go_in_the_query_string_not_the_body(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    await make(ga4, session).deliver(CALL, key(CALL))

    (request,) = ga4.requests
    assert (request.method, request.path) == ("POST", "/mp/collect")
    assert request.query == {"measurement_id": ga4.measurement_id, "api_secret": ga4.api_secret}
    body = json.loads(request.body)
    assert ga4.api_secret not in request.body.decode()
    assert body["timestamp_micros"] == int(CALL.started_at.timestamp()) * 1_000_000
    assert len(body["events"]) == 1


async def test_the_event_name_is_configurable(ga4: FakeGa4, session: aiohttp.ClientSession) -> None:
    await make(ga4, session, event_name="generate_lead").deliver(CALL, key(CALL))

    assert [e["name"] for e in ga4.events] == ["generate_lead"]


@pytest.mark.parametrize(
    "name", ["_private", "first_visit", "ga_call", "1call", "call-made", "x" * 41]
)
def test_an_event_name_ga4_would_reject_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=r"ga4\.event_name"):
        parse_config("ga4", {"measurement_id": "G-TEST123", "api_secret": "s", "event_name": name})


async def test_long_values_are_cut_to_ga4_limit(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    await make(ga4, session).deliver(a_call(campaign="c" * 250), key(CALL))

    (event,) = ga4.events
    assert event["params"]["campaign"] == "c" * 100


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (a_call(visit=None), "no GA client id"),
        (a_call(visit=Visit(visit_id="v-1", ym_client_id="17")), "no GA client id"),
        (a_call(started_at=NOW - timedelta(hours=73)), "72-hour"),
        (a_call(stage="ring", ended_at=None), "stage ring"),
    ],
)
async def test_calls_ga4_cannot_take_are_skipped_without_a_request(
    ga4: FakeGa4, session: aiohttp.ClientSession, call: Any, reason: str
) -> None:
    result = await make(ga4, session).deliver(call, key(call))

    assert reason in result.skipped
    assert ga4.requests == []


async def test_only_target_calls_are_sent_when_configured(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    adapter = make(ga4, session, only_target=True)

    skipped = await adapter.deliver(a_call(target=False), key(CALL))
    await adapter.deliver(CALL, key(CALL))

    assert skipped.skipped == "not a target call"
    assert len(ga4.events) == 1


async def test_a_call_value_is_sent_with_its_currency(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    await make(ga4, session, value=1500, currency="RUB").deliver(CALL, key(CALL))

    (event,) = ga4.events
    assert (event["params"]["value"], event["params"]["currency"]) == (1500.0, "RUB")


async def test_validation_mode_checks_on_the_debug_endpoint_first(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    await make(ga4, session, validate=True).deliver(CALL, key(CALL))

    assert [r.path for r in ga4.requests] == ["/debug/mp/collect", "/mp/collect"]
    assert ga4.debug_hits == ga4.hits


async def test_validation_messages_fail_permanently_with_field_path_and_code(
    ga4: FakeGa4, session: aiohttp.ClientSession
) -> None:
    ga4.clock = lambda: NOW + timedelta(hours=80)  # GA4 sees the call as too old

    with pytest.raises(PermanentError) as caught:
        await make(ga4, session, validate=True).deliver(CALL, key(CALL))

    assert "timestamp_micros" in str(caught.value)
    assert "VALUE_OUT_OF_BOUNDS" in str(caught.value)
    assert ga4.hits == []  # never sent for real


async def test_a_5xx_is_temporary(ga4: FakeGa4, session: aiohttp.ClientSession) -> None:
    ga4.fail_next(1, 503, "unavailable")

    with pytest.raises(TemporaryError) as caught:
        await make(ga4, session).deliver(CALL, key(CALL))

    assert caught.value.status == 503
    assert ga4.events == []
