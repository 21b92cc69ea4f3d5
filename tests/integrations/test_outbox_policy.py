"""Pure decisions: backoff, outcomes per error, masking and merging configs, link expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calltracker.db.integration_models import Integration
from calltracker.errors import Invalid
from calltracker.integrations import config as integration_config
from calltracker.integrations.base import DeliveryResult
from calltracker.integrations.errors import (
    AuthError,
    EndpointGone,
    PermanentError,
    TemporaryError,
)
from calltracker.integrations.outbox import policy
from calltracker.integrations.outbox.adapters import AdapterCache
from calltracker.integrations.outbox.policy import RetryPolicy
from calltracker.telephony.recording_links import link_expiry

POLICY = RetryPolicy(max_attempts=10, base=10.0, cap=3600.0, auth_delay=3600.0)


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.999, 9.99),  # up to the base
        (1, 0.0, 0.0),  # full jitter: may be zero
        (2, 0.5, 10.0),  # half of 20
        (4, 1.0, 80.0),
        (9, 1.0, 2560.0),
        (10, 1.0, 3600.0),  # capped at 1 h
        (500, 0.5, 1800.0),  # no overflow far past the cap
    ],
)
def test_backoff_is_full_jitter_under_a_capped_exponential(
    attempt: int, rand: float, expected: float
) -> None:
    assert policy.backoff(attempt, POLICY, rand) == pytest.approx(expected)


def test_a_temporary_error_fails_with_backoff_and_honours_retry_after() -> None:
    plain = policy.failed(TemporaryError("bitrix24: HTTP 503"), 3, POLICY, 0.5)
    assert (plain.state, plain.error_kind, plain.delay) == ("failed", "temporary", 20.0)
    hinted = policy.failed(TemporaryError("x", retry_after=300.0), 1, POLICY, 0.5)
    assert hinted.delay == 300.0
    absurd = policy.failed(TemporaryError("x", retry_after=10**9), 1, POLICY, 0.5)
    assert absurd.delay == POLICY.max_retry_after


def test_the_last_allowed_attempt_makes_a_temporary_error_dead() -> None:
    assert policy.failed(TemporaryError("down"), 9, POLICY, 0.5).state == "failed"
    last = policy.failed(TemporaryError("down"), 10, POLICY, 0.5)
    assert (last.state, last.last_error) == ("dead", "gave up after 10 attempts: down")


def test_auth_errors_wait_long_and_give_their_attempt_back() -> None:
    outcome = policy.failed(AuthError("amocrm: HTTP 401: Unauthorized"), 10, POLICY, 0.5)
    assert outcome.state == "failed" and outcome.error_kind == "auth"
    assert outcome.delay == POLICY.auth_delay
    assert outcome.last_error == (
        "authentication failed: check the credentials (amocrm: HTTP 401: Unauthorized)"
    )
    assert outcome.counts_attempt is False


def test_permanent_errors_are_dead_at_once_with_the_remotes_message() -> None:
    outcome = policy.failed(PermanentError("bitrix24: HTTP 400: Access denied."), 1, POLICY, 0.5)
    assert (outcome.state, outcome.error_kind, outcome.last_error) == (
        "dead",
        "permanent",
        "bitrix24: HTTP 400: Access denied.",
    )
    assert policy.failed(EndpointGone("gone"), 1, POLICY, 0.5).error_kind == "gone"


def test_unknown_errors_retry_like_temporary_ones_without_their_message() -> None:
    outcome = policy.failed(KeyError("token=s3cret"), 1, POLICY, 0.5)
    assert (outcome.state, outcome.error_kind) == ("failed", "internal")
    assert "s3cret" not in outcome.last_error and "KeyError" in outcome.last_error


def test_success_keeps_remote_ids_and_a_skip_says_why() -> None:
    assert policy.delivered(DeliveryResult({"lead_id": "7"})).remote_ids == {"lead_id": "7"}
    skipped = policy.delivered(DeliveryResult(skipped="no GA client id"))
    assert (skipped.state, skipped.last_error) == ("done", "skipped: no GA client id")


BITRIX = {
    "webhook_url": "https://b24.example/rest/1/w3bh00k/",
    "source_id": "CALL",
    "app": {
        "portal_url": "https://b24.example",
        "client_id": "local.app.1",
        "client_secret": "app-s3cret",
        "access_token": "acc3ss",
        "refresh_token": "r3fresh",
    },
}


def test_masking_hides_every_secret_and_lists_the_ones_set() -> None:
    shown, secrets_set = integration_config.masked_config("bitrix24", BITRIX)
    assert shown == {
        "source_id": "CALL",
        "app": {"portal_url": "https://b24.example", "client_id": "local.app.1"},
    }
    assert secrets_set == [
        "app.access_token",
        "app.client_secret",
        "app.refresh_token",
        "webhook_url",
    ]


def test_masking_an_unreadable_config_hides_everything() -> None:
    shown, secrets_set = integration_config.masked_config("webhook", {"url": "https://x/?t=1"})
    assert shown == {} and secrets_set == ["url"]


def test_a_patch_keeps_secrets_it_leaves_out_and_null_removes_a_field() -> None:
    merged = integration_config.merge_config(
        BITRIX, {"source_id": "WEB", "app": {"client_id": "local.app.2"}, "webhook_url": None}
    )
    assert merged["source_id"] == "WEB"
    assert merged["app"]["client_id"] == "local.app.2"
    assert merged["app"]["client_secret"] == "app-s3cret"
    assert "webhook_url" not in merged
    assert BITRIX["source_id"] == "CALL"  # the stored config is not touched


@pytest.mark.parametrize(
    ("kind", "config", "trigger", "stage", "message"),
    [
        ("crm", {}, "every", "hangup", "kind must be one of"),
        ("bitrix24", {}, "every", "hangup", "bitrix24.webhook_url: is required"),
        ("bitrix24", BITRIX | {"typo": 1}, "every", "hangup", "unknown field(s) typo"),
        ("bitrix24", BITRIX, "sometimes", "hangup", "trigger must be one of"),
        ("bitrix24", BITRIX, "every", "ring", "stage 'ring' is not one of the stages"),
        ("metrica", {"counter_id": 1, "oauth_token": "t"}, "every", "ring", "stage 'ring'"),
        (
            "bitrix24",
            BITRIX | {"stages": ["ring", "hangup"]},
            "target",
            "ring",
            "trigger 'target' needs stage 'hangup'",
        ),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(
    kind: str, config: dict[str, object], trigger: str, stage: str, message: str
) -> None:
    with pytest.raises(Invalid) as caught:
        integration_config.parse_config(kind, config)
        integration_config.check_rules(kind, config, trigger, stage)
    assert message in caught.value.message
    assert "w3bh00k" not in caught.value.message


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TTL = timedelta(days=90)


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        (NOW - timedelta(hours=1), NOW - timedelta(hours=1) + TTL),  # the usual case
        (NOW - TTL + timedelta(days=2), NOW + timedelta(days=2)),  # still two days left
        (NOW - TTL, NOW + TTL),  # expired: one more ttl
        (NOW - 3 * TTL - timedelta(hours=1), NOW - timedelta(hours=1) + TTL),
    ],
)
def test_a_link_expires_ttl_after_the_call_and_is_never_born_stale(
    anchor: datetime, expected: datetime
) -> None:
    assert link_expiry(anchor, NOW, TTL) == int(expected.timestamp())
    # Retries moments later send the very same link.
    assert link_expiry(anchor, NOW + timedelta(minutes=5), TTL) == int(expected.timestamp())


class _Integration:
    def __init__(self, config: dict[str, object]) -> None:
        self.id = 1
        self.kind = "webhook"
        self.config = config


def test_adapters_are_reused_until_the_config_changes() -> None:
    built: list[object] = []

    def build(kind: str, raw: object, session: object, **_: object) -> object:
        built.append(raw)
        return object()

    cache = AdapterCache(http=None, build=build)  # type: ignore[arg-type]
    first = _Integration({"url": "https://a.example/hook"})
    adapter = cache.get(first)  # type: ignore[arg-type]
    assert cache.get(first) is adapter  # type: ignore[arg-type]
    changed = _Integration({"url": "https://b.example/hook"})
    assert cache.get(changed) is not adapter  # type: ignore[arg-type]
    assert len(built) == 2


def test_an_integrations_repr_shows_no_config() -> None:
    integration = Integration(id=3, site_id=1, kind="bitrix24", name="CRM", config=BITRIX)
    assert "w3bh00k" not in repr(integration) and "app-s3cret" not in repr(integration)
    assert "kind='bitrix24'" in repr(integration)
