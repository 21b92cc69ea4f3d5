"""Contract tests: our signed webhooks, checked the way a Standard Webhooks consumer checks them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest

from calltracker.integrations.errors import (
    AuthError,
    ConfigError,
    EndpointGone,
    PermanentError,
    TemporaryError,
)
from calltracker.integrations.registry import parse_config
from calltracker.integrations.webhook import (
    WebhookAdapter,
    build_payload,
    generate_secret,
)

from .calls import CALL, NOW, a_call, key
from .fakes.webhook_receiver import FakeWebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the spec's example secret
OLD_SECRET = "whsec_" + base64.b64encode(b"an older key of thirty-two bytes").decode()


class VerificationError(Exception):
    pass


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: int = 300
) -> Any:
    """A consumer's verifier, written from the Standard Webhooks spec, not from our signer."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > tolerance:
        raise VerificationError("timestamp outside the tolerance")
    key_bytes = base64.b64decode(secret.split("_", 1)[1])
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = hmac.new(key_bytes, content, hashlib.sha256).digest()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, encoded = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(expected, base64.b64decode(encoded)):
            return json.loads(body)
    raise VerificationError("no matching signature")


def make(
    receiver: FakeWebhookReceiver,
    session: aiohttp.ClientSession,
    *,
    clock: Any = None,
    **config: Any,
) -> WebhookAdapter:
    raw = {"url": receiver.hook_url, "secret": SECRET, "allow_private_network": True, **config}
    return WebhookAdapter(parse_config("webhook", raw), session, clock=clock or (lambda: NOW))


async def test_a_delivery_verifies_with_the_documented_secret_and_headers(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    result = await make(receiver, session).deliver(CALL, "7:42:hangup")

    (delivery,) = receiver.deliveries
    assert delivery.headers["webhook-id"] == "7:42:hangup"
    assert delivery.headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert delivery.headers["Content-Type"] == "application/json"
    payload = verify(SECRET, delivery.headers, delivery.body, now=NOW.timestamp())
    assert payload["type"] == "call.ended"
    assert result.remote_ids == {"webhook_id": "7:42:hangup"}


async def test_the_payload_carries_call_visit_and_attribution_as_documented(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    await make(receiver, session).deliver(CALL, key(CALL))

    payload = json.loads(receiver.deliveries[0].body)
    assert set(payload) == {"type", "timestamp", "version", "data"}
    assert payload["timestamp"] == "2026-03-07T10:27:17Z"
    call, visit, attribution = (
        payload["data"]["call"],
        payload["data"]["visit"],
        payload["data"]["attribution"],
    )
    assert call["id"] == 42 and call["uuid"] == CALL.call_uuid
    assert (call["caller"], call["tracking_number"]) == ("+79991234567", "+74950000001")
    assert (call["status"], call["talk_seconds"], call["wait_seconds"]) == ("answered", 125, 12)
    assert call["started_at"] == "2026-03-07T10:25:00Z"
    assert call["recording_url"] == CALL.recording_url
    assert call["site"] == {"id": 1, "name": "Divan MSK"}
    assert (visit["id"], visit["ga_client_id"], visit["ym_client_id"]) == (
        "v-9001",
        "123456.7654321",
        "1730000000123456789",
    )
    assert attribution == {
        "confidence": "exact",
        "source": "yandex",
        "medium": "cpc",
        "campaign": "brand_msk",
        "keyword": "купить диван",
        "content": "ad_42",
    }


async def test_a_ring_event_is_sent_when_enabled(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    ring = a_call(stage="ring", answered_at=None, ended_at=None, talk_seconds=0, recording_url="")

    await make(receiver, session, stages=["ring", "hangup"]).deliver(ring, key(ring))

    payload = json.loads(receiver.deliveries[0].body)
    assert payload["type"] == "call.ringing"
    assert payload["data"]["call"]["ended_at"] is None


async def test_a_retry_keeps_the_id_and_body_and_signs_its_own_timestamp(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    later = NOW + timedelta(minutes=5)
    await make(receiver, session).deliver(CALL, key(CALL))
    await make(receiver, session, clock=lambda: later).deliver(CALL, key(CALL))

    first, second = receiver.deliveries
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    verify(SECRET, second.headers, second.body, now=later.timestamp())


async def test_the_verifier_rejects_a_tampered_body_a_wrong_secret_and_a_stale_timestamp(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    await make(receiver, session).deliver(CALL, key(CALL))
    delivery = receiver.deliveries[0]
    reserialised = json.dumps(json.loads(delivery.body)).encode()

    with pytest.raises(VerificationError):
        verify(SECRET, delivery.headers, reserialised, now=NOW.timestamp())
    with pytest.raises(VerificationError):
        verify(generate_secret(), delivery.headers, delivery.body, now=NOW.timestamp())
    with pytest.raises(VerificationError):
        verify(SECRET, delivery.headers, delivery.body, now=NOW.timestamp() + 301)


async def test_during_rotation_both_the_new_and_the_old_secret_verify(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    await make(receiver, session, previous_secret=OLD_SECRET).deliver(CALL, key(CALL))

    delivery = receiver.deliveries[0]
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    verify(SECRET, delivery.headers, delivery.body, now=NOW.timestamp())
    verify(OLD_SECRET, delivery.headers, delivery.body, now=NOW.timestamp())


async def test_500_500_200_fails_twice_then_delivers_the_same_message(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.answer(500, 500)
    adapter = make(receiver, session)

    for _ in range(2):
        with pytest.raises(TemporaryError) as caught:
            await adapter.deliver(CALL, key(CALL))
        assert caught.value.status == 500
    await adapter.deliver(CALL, key(CALL))

    assert len(receiver.deliveries) == 3
    assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 1


async def test_410_gone_asks_to_disable_the_endpoint(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.answer(410)

    with pytest.raises(EndpointGone):
        await make(receiver, session).deliver(CALL, key(CALL))


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.answer(307)

    with pytest.raises(TemporaryError) as caught:
        await make(receiver, session).deliver(CALL, key(CALL))

    assert caught.value.status == 307
    assert receiver.redirect_hits == 0


async def test_429_is_temporary_and_honours_retry_after(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.answer(429, headers={"Retry-After": "120"})

    with pytest.raises(TemporaryError) as caught:
        await make(receiver, session).deliver(CALL, key(CALL))

    assert caught.value.retry_after == 120.0


async def test_a_400_is_permanent_with_the_receiver_message(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.answer(400, text="unknown site id")

    with pytest.raises(PermanentError) as caught:
        await make(receiver, session).deliver(CALL, key(CALL))

    assert "unknown site id" in str(caught.value)


async def test_a_401_is_an_auth_error(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.answer(401)

    with pytest.raises(AuthError):
        await make(receiver, session).deliver(CALL, key(CALL))


async def test_a_receiver_that_never_answers_times_out(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.hang = True
    started = time.monotonic()

    with pytest.raises(TemporaryError, match="no answer"):
        await make(receiver, session, timeout=0.3).deliver(CALL, key(CALL))

    assert time.monotonic() - started < 5


async def test_a_receiver_that_is_down_is_temporary_and_gets_the_delivery_once_back(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    adapter = make(receiver, session)
    await receiver.down()

    with pytest.raises(TemporaryError):
        await adapter.deliver(CALL, key(CALL))

    await receiver.up()
    await adapter.deliver(CALL, key(CALL))
    assert len(receiver.deliveries) == 1


async def test_private_addresses_are_refused_by_default(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    adapter = WebhookAdapter(
        parse_config("webhook", {"url": receiver.hook_url, "secret": SECRET}), session
    )

    with pytest.raises(PermanentError, match="non-public address"):
        await adapter.deliver(CALL, key(CALL))

    assert receiver.requests == []


async def test_the_roistat_format_sends_roistat_fields(
    receiver: FakeWebhookReceiver, session: aiohttp.ClientSession
) -> None:
    await make(receiver, session, format="roistat").deliver(CALL, key(CALL))

    delivery = receiver.deliveries[0]
    payload = verify(SECRET, delivery.headers, delivery.body, now=NOW.timestamp())
    assert (payload["caller"], payload["callee"]) == ("79991234567", "74950000001")
    assert (payload["visit_id"], payload["marker"], payload["date"]) == (
        "v-9001",
        "yandex_cpc",
        "2026-03-07 10:25:00",
    )
    assert (payload["utm_source"], payload["utm_term"]) == ("yandex", "купить диван")
    assert (payload["domain"], payload["landing_page"]) == ("divan.example", "divan.example/sofas")
    assert payload["google_client_id"] == "123456.7654321"


@pytest.mark.parametrize(
    "secret",
    [
        "not-base64!!",
        "whsec_" + base64.b64encode(b"too short").decode(),
        "whsec_" + base64.b64encode(bytes(65)).decode(),
    ],
)
def test_a_bad_secret_is_a_config_error_that_does_not_show_it(secret: str) -> None:
    with pytest.raises(ConfigError, match=r"webhook\.secret") as caught:
        parse_config("webhook", {"url": "https://hooks.example/in", "secret": secret})

    assert secret not in str(caught.value)


def test_generated_secrets_follow_the_whsec_convention() -> None:
    secret = generate_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_the_payload_timestamp_is_the_call_end_not_the_send_time() -> None:
    stamp = build_payload(CALL)["timestamp"]

    assert datetime.fromisoformat(stamp) == CALL.ended_at
