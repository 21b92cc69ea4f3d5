"""The shared adapter interface: call data, config parsing, the error tree, rate limiting."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from calltracker.integrations.amocrm import AmoCrmAdapter
from calltracker.integrations.base import (
    Adapter,
    BatchAdapter,
    HttpReply,
    RateLimiter,
    Visit,
    http_error,
    parse_retry_after,
)
from calltracker.integrations.bitrix24 import Bitrix24Adapter
from calltracker.integrations.errors import (
    AuthError,
    ConfigError,
    EndpointGone,
    IntegrationError,
    PermanentError,
    TemporaryError,
)
from calltracker.integrations.ga4 import Ga4Adapter
from calltracker.integrations.metrica import MetricaAdapter
from calltracker.integrations.registry import build_adapter
from calltracker.integrations.webhook import WebhookAdapter

from .calls import CALL, a_call

CONFIGS: dict[str, dict[str, Any]] = {
    "bitrix24": {"webhook_url": "https://portal.bitrix24.ru/rest/1/c0de/"},
    "amocrm": {"base_url": "https://shop.amocrm.ru", "access_token": "t0ken"},
    "webhook": {
        "url": "https://hooks.example/in",
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    },
    "ga4": {"measurement_id": "G-ABC123", "api_secret": "s3cret"},
    "metrica": {"counter_id": 44147844, "oauth_token": "y0t0ken"},
}
CLASSES: dict[str, type] = {
    "bitrix24": Bitrix24Adapter,
    "amocrm": AmoCrmAdapter,
    "webhook": WebhookAdapter,
    "ga4": Ga4Adapter,
    "metrica": MetricaAdapter,
}


def reply(status: int, headers: dict[str, str] | None = None) -> HttpReply:
    return HttpReply(status, CIMultiDictProxy(CIMultiDict(headers or {})), b"")


@pytest.mark.parametrize("kind", sorted(CONFIGS))
async def test_build_adapter_makes_the_adapter_of_each_kind(kind: str) -> None:
    async with aiohttp.ClientSession() as session:
        adapter = build_adapter(kind, CONFIGS[kind], session)

    assert type(adapter) is CLASSES[kind]
    assert isinstance(adapter, Adapter)
    assert adapter.kind == kind
    assert adapter.rate_limit > 0
    assert adapter.stages <= {"ring", "hangup"}


async def test_metrica_is_the_batch_adapter() -> None:
    async with aiohttp.ClientSession() as session:
        adapters = {kind: build_adapter(kind, raw, session) for kind, raw in CONFIGS.items()}

    assert [kind for kind, a in adapters.items() if isinstance(a, BatchAdapter)] == ["metrica"]


async def test_an_unknown_kind_is_a_config_error() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match="telegram"):
            build_adapter("telegram", {}, session)


@pytest.mark.parametrize(
    ("kind", "change", "field"),
    [
        ("bitrix24", {"webhook_url": None}, "bitrix24.webhook_url"),
        ("bitrix24", {"webhook_url": "https://portal.bitrix24.ru/"}, "bitrix24.webhook_url"),
        ("bitrix24", {"repeat_caller": "merge"}, "bitrix24.repeat_caller"),
        ("bitrix24", {"operator_users": {"101": "seven"}}, "bitrix24.operator_users"),
        ("bitrix24", {"app": {"portal_url": "https://p.bitrix24.ru"}}, "bitrix24.app.client_id"),
        ("bitrix24", {"stages": ["answer"]}, "bitrix24.stages[0]"),
        ("bitrix24", {"stages": []}, "bitrix24.stages"),
        ("amocrm", {"access_token": None}, "amocrm.access_token"),
        ("amocrm", {"base_url": "shop.amocrm.ru"}, "amocrm.base_url"),
        ("amocrm", {"pipeline_id": "main"}, "amocrm.pipeline_id"),
        ("webhook", {"timeout": 0}, "webhook.timeout"),
        ("webhook", {"url": "ftp://x"}, "webhook.url"),
        ("ga4", {"measurement_id": "UA-1"}, "ga4.measurement_id"),
        ("ga4", {"only_target": "yes"}, "ga4.only_target"),
        ("metrica", {"counter_id": True}, "metrica.counter_id"),
        ("metrica", {"call_url_template": "https://ct/x"}, "metrica.call_url_template"),
        ("metrica", {"currency": "rub"}, "metrica.currency"),
    ],
)
async def test_a_bad_config_field_is_named_in_the_error(
    kind: str, change: dict[str, Any], field: str
) -> None:
    raw = {**CONFIGS[kind], **change}
    raw = {k: v for k, v in raw.items() if v is not None}

    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError) as caught:
            build_adapter(kind, raw, session)

    assert str(caught.value).startswith(field + ":")


@pytest.mark.parametrize("kind", sorted(CONFIGS))
async def test_an_unknown_config_field_is_refused(kind: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match="unknown field.*webhok_url"):
            build_adapter(kind, {**CONFIGS[kind], "webhok_url": "x"}, session)


def test_config_errors_are_value_errors() -> None:
    assert issubclass(ConfigError, ValueError)


def test_the_error_tree() -> None:
    for cls in (TemporaryError, AuthError, PermanentError):
        assert issubclass(cls, IntegrationError)
    assert issubclass(EndpointGone, PermanentError)
    assert not issubclass(AuthError, PermanentError)
    assert TemporaryError("x", retry_after=3.0).retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, AuthError),
        (403, AuthError),
        (400, PermanentError),
        (404, PermanentError),
        (422, PermanentError),
        (301, PermanentError),
        (408, TemporaryError),
        (420, TemporaryError),
        (429, TemporaryError),
        (500, TemporaryError),
        (502, TemporaryError),
        (503, TemporaryError),
    ],
)
def test_http_statuses_map_onto_the_error_tree(
    status: int, expected: type[IntegrationError]
) -> None:
    assert type(http_error("x", reply(status), "")) is expected


def test_a_retry_after_header_becomes_the_retry_hint() -> None:
    error = http_error("x", reply(503, {"Retry-After": "17"}), "")

    assert isinstance(error, TemporaryError)
    assert error.retry_after == 17.0


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)

    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Sat, 07 Mar 2026 10:01:30 GMT", now) == 90.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_call_needs_aware_times_and_e164_numbers() -> None:
    with pytest.raises(ValueError, match="started_at"):
        a_call(started_at=datetime(2026, 3, 7, 10, 0))
    with pytest.raises(ValueError, match="caller"):
        a_call(caller="89991234567")
    with pytest.raises(ValueError, match="tracking_number"):
        a_call(tracking_number="+7 495 000-00-01")
    with pytest.raises(ValueError, match="status"):
        a_call(status="no-answer")


def test_a_call_without_a_uuid_gets_a_stable_one_of_its_own() -> None:
    first = a_call(call_uuid="")
    again = a_call(call_uuid="", stage="ring", ended_at=None)
    other = a_call(call_uuid="", call_id=43)

    assert first.external_id == again.external_id
    assert first.external_id != other.external_id
    assert CALL.external_id == CALL.call_uuid


async def test_the_rate_limiter_spaces_requests_at_its_rate() -> None:
    limiter = RateLimiter(20)
    started = time.monotonic()

    for _ in range(5):
        await limiter.acquire()

    assert time.monotonic() - started >= 4 / 20


async def test_a_paused_rate_limiter_holds_requests_back() -> None:
    limiter = RateLimiter(1000)
    limiter.pause(0.2)
    started = time.monotonic()

    await limiter.acquire()

    assert time.monotonic() - started >= 0.19


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_visits_need_aware_times() -> None:
    with pytest.raises(ValueError, match="visited_at"):
        Visit(visit_id="v", visited_at=datetime(2026, 3, 7))


async def test_a_late_wake_up_does_not_shorten_the_next_gap() -> None:
    readings = iter([0.0, 0.0, 0.5, 0.55, 0.61])
    limiter = RateLimiter(10, clock=lambda: next(readings))
    await limiter.acquire()
    await limiter.acquire()  # planned for 0.11, but the clock says it woke up at 0.5
    started = time.monotonic()

    await limiter.acquire()  # at 0.55: the gap after 0.5 still has to be kept

    assert time.monotonic() - started >= 0.05
