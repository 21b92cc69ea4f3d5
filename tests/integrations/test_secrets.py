"""Secrets stay out of logs, reprs and error messages, on success and on every failure path."""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from calltracker.integrations.amocrm import AmoCrmAdapter
from calltracker.integrations.bitrix24 import Bitrix24Adapter
from calltracker.integrations.errors import IntegrationError
from calltracker.integrations.ga4 import Ga4Adapter
from calltracker.integrations.metrica import MetricaAdapter
from calltracker.integrations.registry import parse_config
from calltracker.integrations.webhook import WebhookAdapter

from .calls import CALL, NOW, key
from .fakes.amocrm import FakeAmoCrm
from .fakes.bitrix24 import FakeBitrix24
from .fakes.ga4 import FakeGa4
from .fakes.metrica import FakeMetrica
from .fakes.server import FakeServer
from .fakes.webhook_receiver import FakeWebhookReceiver

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"webhook-signing-key-32-bytes-ok!").decode()
RECEIVER_TOKEN = "rcv-path-t0ken"

# Each case: the fake, the adapter built on it, the secrets it must never show, and a way to break it.
Built = Bitrix24Adapter | AmoCrmAdapter | Ga4Adapter | MetricaAdapter | WebhookAdapter
Case = tuple[FakeServer, Callable[[aiohttp.ClientSession], Built], list[str]]


def bitrix_case() -> Case:
    fake = FakeBitrix24()

    def build(session: aiohttp.ClientSession) -> Built:
        config = parse_config(
            "bitrix24",
            {
                "webhook_url": fake.webhook_url,
                "rate_limit": 50,
                "app": {
                    "portal_url": fake.url,
                    "client_id": fake.client_id,
                    "client_secret": fake.client_secret,
                    "access_token": fake.access_token,
                    "refresh_token": fake.refresh_token,
                    "oauth_url": f"{fake.url}/oauth/token/",
                },
            },
        )
        return Bitrix24Adapter(config, session)

    return fake, build, [fake.code, fake.client_secret, fake.access_token, fake.refresh_token]


def amo_case() -> Case:
    fake = FakeAmoCrm()
    return (
        fake,
        lambda s: AmoCrmAdapter(
            parse_config("amocrm", {"base_url": fake.url, "access_token": fake.token}), s
        ),
        [fake.token],
    )


def ga4_case() -> Case:
    fake = FakeGa4(clock=lambda: NOW)
    raw = {"measurement_id": fake.measurement_id, "api_secret": fake.api_secret, "validate": True}
    return (
        fake,
        lambda s: Ga4Adapter(
            parse_config("ga4", {**raw, "base_url": fake.url}), s, clock=lambda: NOW
        ),
        [fake.api_secret],
    )


def metrica_case() -> Case:
    fake = FakeMetrica(clock=lambda: NOW)
    raw = {"counter_id": fake.counter_id, "oauth_token": fake.token}
    return (
        fake,
        lambda s: MetricaAdapter(
            parse_config("metrica", {**raw, "base_url": fake.url}), s, clock=lambda: NOW
        ),
        [fake.token],
    )


def webhook_case() -> Case:
    fake = FakeWebhookReceiver()

    def build(session: aiohttp.ClientSession) -> Built:
        raw = {
            "url": f"{fake.url}/hook?token={RECEIVER_TOKEN}",
            "secret": WEBHOOK_SECRET,
            "allow_private_network": True,
        }
        return WebhookAdapter(parse_config("webhook", raw), session, clock=lambda: NOW)

    return fake, build, [WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_"), RECEIVER_TOKEN]


CASES = {
    "bitrix24": bitrix_case,
    "amocrm": amo_case,
    "ga4": ga4_case,
    "metrica": metrica_case,
    "webhook": webhook_case,
}


async def _fail_auth(fake: FakeServer) -> None:
    fake.fail_next(
        20, 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}
    )


async def _fail_validation(fake: FakeServer) -> None:
    fake.fail_next(
        20,
        400,
        {"error": "ERROR_CORE", "detail": "bad", "errors": [{"error_type": "invalid_parameter"}]},
    )


async def _fail_busy(fake: FakeServer) -> None:
    fake.fail_next(20, 503, {"error": "QUERY_LIMIT_EXCEEDED"}, headers={"Retry-After": "1"})


async def _go_down(fake: FakeServer) -> None:
    await fake.down()


async def _fine(fake: FakeServer) -> None:
    return None


BREAKS: dict[str, Callable[[FakeServer], Awaitable[None]]] = {
    "ok": _fine,
    "401": _fail_auth,
    "400": _fail_validation,
    "503": _fail_busy,
    "down": _go_down,
}


def _shown(value: Any) -> str:
    return f"{value!s}\n{value!r}"


@pytest.mark.parametrize("outcome", sorted(BREAKS))
@pytest.mark.parametrize("kind", sorted(CASES))
async def test_no_secret_reaches_logs_reprs_or_errors(
    kind: str, outcome: str, caplog: pytest.LogCaptureFixture, session: aiohttp.ClientSession
) -> None:
    fake, build, secrets = CASES[kind]()
    await fake.start()
    try:
        adapter = build(session)
        await BREAKS[outcome](fake)
        seen = [_shown(adapter), _shown(adapter.config)]
        with caplog.at_level(logging.DEBUG):
            try:
                await adapter.deliver(CALL, key(CALL))
            except IntegrationError as err:
                assert outcome != "ok", err
                seen += [_shown(err), "".join(traceback.format_exception(err))]
            else:
                assert outcome == "ok", "a broken remote must fail the delivery"
                assert caplog.records, "a delivery logs what it did"
    finally:
        await fake.close()

    seen += [caplog.text] + [_shown(r.args) for r in caplog.records]
    for secret in secrets:
        for text in seen:
            assert secret not in text
