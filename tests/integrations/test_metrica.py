"""Contract tests: the Yandex Metrica offline-calls adapter against a fake upload endpoint."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from calltracker.integrations.base import Visit
from calltracker.integrations.errors import AuthError, PermanentError, TemporaryError
from calltracker.integrations.metrica import MetricaAdapter
from calltracker.integrations.registry import parse_config

from .calls import CALL, NOW, a_call, key
from .fakes.metrica import FakeMetrica

COLUMNS = [
    "ClientId",
    "DateTime",
    "StaticCall",
    "PhoneNumber",
    "TalkDuration",
    "HoldDuration",
    "CallMissed",
    "Tag",
    "FirstTimeCaller",
    "URL",
]


def make(metrica: FakeMetrica, session: aiohttp.ClientSession, **config: Any) -> MetricaAdapter:
    raw = {
        "counter_id": metrica.counter_id,
        "oauth_token": metrica.token,
        "base_url": metrica.url,
        **config,
    }
    return MetricaAdapter(parse_config("metrica", raw), session, clock=lambda: NOW)


async def test_a_batch_is_one_csv_upload_with_exactly_our_columns(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    calls = [
        CALL,
        a_call(call_id=43, status="missed", talk_seconds=0, unique=False, caller="+79990000043"),
    ]

    result = await make(metrica, session).deliver_batch(calls)

    (upload,) = metrica.uploads
    assert upload.columns == COLUMNS
    assert result.upload_id == str(upload.id)
    assert result.status == "UPLOADED"
    assert result.sent == (42, 43)
    first, second = upload.rows
    assert first == {
        "ClientId": "1730000000123456789",
        "DateTime": str(int(CALL.started_at.timestamp())),
        "StaticCall": "0",
        "PhoneNumber": "+79991234567",
        "TalkDuration": "125",
        "HoldDuration": "12",
        "CallMissed": "0",
        "Tag": "brand_msk",
        "FirstTimeCaller": "1",
        "URL": "https://divan.example/sofas?utm_source=yandex",
    }
    assert (second["CallMissed"], second["FirstTimeCaller"], second["TalkDuration"]) == (
        "1",
        "0",
        "0",
    )


async def test_the_upload_uses_the_oauth_header_and_a_multipart_file_part(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    await make(metrica, session, new_goal_name="Call").deliver_batch([CALL])

    (request,) = metrica.requests
    assert (
        request.path
        == f"/management/v1/counter/{metrica.counter_id}/offline_conversions/upload_calls"
    )
    assert request.headers["Authorization"] == f"OAuth {metrica.token}"
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    assert metrica.token not in str(request.query)
    assert request.query == {
        "comment": "calltracker",
        "new_goal_name": "Call",
        "client_id_type": "CLIENT_ID",
    }


async def test_calls_metrica_cannot_join_are_left_out_with_a_reason(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    calls = [
        CALL,
        a_call(call_id=2, visit=None, attribution="static"),
        a_call(call_id=3, visit=Visit(visit_id="v", ga_client_id="1.2")),
        a_call(call_id=4, started_at=NOW - timedelta(days=22)),
        a_call(call_id=5, stage="ring", ended_at=None),
    ]

    result = await make(metrica, session).deliver_batch(calls)

    assert result.sent == (42,)
    assert set(result.skipped) == {2, 3, 4, 5}
    assert "21-day" in result.skipped[4]
    assert [row["ClientId"] for row in metrica.rows] == ["1730000000123456789"]


async def test_the_join_window_is_configurable(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    result = await make(metrica, session, join_window_days=7).deliver_batch(
        [a_call(started_at=NOW - timedelta(days=8))]
    )

    assert result.sent == ()
    assert metrica.requests == []


async def test_a_batch_with_nothing_to_send_makes_no_request(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    result = await make(metrica, session).deliver_batch([a_call(visit=None)])

    assert (result.upload_id, result.sent) == ("", ())
    assert metrica.requests == []


async def test_price_and_call_link_columns_are_added_when_configured(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    await make(
        metrica, session, price=1500, call_url_template="https://ct.example/calls/{call_id}"
    ).deliver_batch([CALL])

    (upload,) = metrica.uploads
    assert upload.columns == [*COLUMNS, "Price", "Currency", "CallTrackerURL"]
    row = upload.rows[0]
    assert (row["Price"], row["Currency"], row["CallTrackerURL"]) == (
        "1500.00",
        "RUB",
        "https://ct.example/calls/42",
    )


async def test_a_single_delivery_is_a_batch_of_one(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    result = await make(metrica, session).deliver(CALL, key(CALL))

    assert result.remote_ids == {"upload_id": "1"}
    assert len(metrica.rows) == 1


async def test_a_400_is_permanent_with_metrica_message(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    metrica.fail_next(
        1,
        400,
        {
            "errors": [{"error_type": "invalid_parameter", "message": "Invalid ClientId"}],
            "code": 400,
            "message": "Invalid ClientId",
        },
    )

    with pytest.raises(PermanentError) as caught:
        await make(metrica, session).deliver_batch([CALL])

    assert caught.value.code == "invalid_parameter"
    assert "Invalid ClientId" in str(caught.value)


@pytest.mark.parametrize("status", [420, 429, 503])
async def test_quota_and_backend_errors_are_temporary(
    metrica: FakeMetrica, session: aiohttp.ClientSession, status: int
) -> None:
    metrica.fail_next(
        1, status, {"errors": [{"error_type": "backend_error", "message": "later"}], "code": status}
    )

    with pytest.raises(TemporaryError) as caught:
        await make(metrica, session).deliver_batch([CALL])

    assert caught.value.status == status


async def test_a_bad_token_is_an_auth_error(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    raw = {"counter_id": metrica.counter_id, "oauth_token": "wrong", "base_url": metrica.url}

    with pytest.raises(AuthError) as caught:
        await MetricaAdapter(
            parse_config("metrica", raw), session, clock=lambda: NOW
        ).deliver_batch([CALL])

    assert caught.value.code == "invalid_token"


async def test_more_than_three_parallel_uploads_hit_the_quota(
    session: aiohttp.ClientSession,
) -> None:
    metrica = FakeMetrica(clock=lambda: NOW, processing_delay=0.5)
    await metrica.start()
    try:
        adapter = make(metrica, session, rate_limit=30)
        results = await asyncio.gather(
            *(adapter.deliver_batch([CALL]) for _ in range(4)), return_exceptions=True
        )
    finally:
        await metrica.close()

    assert sum(isinstance(r, TemporaryError) and r.status == 429 for r in results) == 1


async def test_the_csv_round_trips_through_a_csv_reader(
    metrica: FakeMetrica, session: aiohttp.ClientSession
) -> None:
    awkward = a_call(
        campaign='brand, "msk"',
        visit=Visit(visit_id="v", ym_client_id="17", landing_url="https://a.b/?x=1,2"),
    )

    await make(metrica, session).deliver_batch([awkward])

    assert metrica.rows[0]["Tag"] == 'brand, "msk"'
    assert metrica.rows[0]["URL"] == "https://a.b/?x=1,2"
