"""Our outgoing webhooks, signed per Standard Webhooks; the payload is documented in docs/webhook.md."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from msgspec import Meta

from calltracker.integrations import roistat
from calltracker.integrations.base import (
    HANGUP,
    ConfigShape,
    ConfiguredAdapter,
    DeliveryResult,
    LeadCall,
    Stages,
    parse_retry_after,
    send,
)
from calltracker.integrations.errors import (
    AuthError,
    EndpointGone,
    PermanentError,
    TemporaryError,
)
from calltracker.settings import Secret

log = logging.getLogger(__name__)

KIND = "webhook"
SECRET_PREFIX = "whsec_"
EVENT_TYPES = {"ring": "call.ringing", "hangup": "call.ended"}
PAYLOAD_VERSION = 1


def generate_secret() -> str:
    """A new signing secret in the ``whsec_<base64>`` form receivers paste into their verifier."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: Secret) -> bytes:
    """The HMAC key: the base64-decoded part after ``whsec_``; ValueError if it is not one."""
    text = secret.reveal().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("must be whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("must decode to 24..64 bytes")
    return key


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


class WebhookConfig(ConfigShape, frozen=True):
    """One receiver URL."""

    url: Secret  # receivers often put a token in the path or query
    secret: Secret
    previous_secret: Secret | None = None  # during rotation we sign with both
    format: Literal["standard", "roistat"] = "standard"
    stages: Stages = HANGUP
    timeout: Annotated[float, Meta(gt=0, le=60)] = 20.0  # Standard Webhooks: 15-30 s
    rate_limit: Annotated[float, Meta(gt=0, le=100)] = 10.0
    allow_private_network: bool = False  # only for tests and receivers on our own LAN

    def __post_init__(self) -> None:
        parts = urlsplit(self.url.reveal())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url: must be an http:// or https:// URL")
        for name, value in (("secret", self.secret), ("previous_secret", self.previous_secret)):
            if value is not None:
                try:
                    secret_key(value)
                except ValueError as err:
                    raise ValueError(f"{name}: {err}") from None

    def keys(self) -> list[bytes]:
        keys = [secret_key(self.secret)]
        if self.previous_secret is not None:
            keys.append(secret_key(self.previous_secret))
        return keys


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_payload(call: LeadCall) -> dict[str, Any]:
    """The documented JSON body (docs/webhook.md); depends only on the call, so retries match."""
    visit = call.visit
    return {
        "type": EVENT_TYPES[call.stage],
        "timestamp": _time(
            call.ended_at if call.stage == "hangup" and call.ended_at else call.started_at
        ),
        "version": PAYLOAD_VERSION,
        "data": {
            "call": {
                "id": call.call_id,
                "uuid": call.external_id,
                "linkedid": call.linkedid,
                "site": {"id": call.site_id, "name": call.site_name},
                "tracking_number": call.tracking_number,
                "caller": call.caller or None,
                "started_at": _time(call.started_at),
                "answered_at": _time(call.answered_at),
                "ended_at": _time(call.ended_at),
                "wait_seconds": call.wait_seconds,
                "talk_seconds": call.talk_seconds,
                "status": call.status,
                "operator": call.operator or None,
                "recording_url": call.recording_url or None,
                "unique": call.unique,
                "target": call.target,
            },
            "visit": None
            if visit is None
            else {
                "id": visit.visit_id,
                "landing_url": visit.landing_url or None,
                "referrer": visit.referrer or None,
                "ga_client_id": visit.ga_client_id or None,
                "ym_client_id": visit.ym_client_id or None,
                "visited_at": _time(visit.visited_at),
            },
            "attribution": {
                "confidence": call.attribution,
                "source": call.source or None,
                "medium": call.medium or None,
                "campaign": call.campaign or None,
                "keyword": call.keyword or None,
                "content": call.content or None,
            },
        },
    }


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookAdapter(ConfiguredAdapter[WebhookConfig]):
    """POSTs each call to one receiver, signed, with the delivery's idempotency key as webhook-id."""

    kind = KIND

    def _prepare(self) -> None:
        self._keys = self.config.keys()
        parts = urlsplit(self.config.url.reveal())
        self._host = parts.hostname or "?"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)

    def __repr__(self) -> str:
        return f"WebhookAdapter(host={self._host!r})"

    def body_for(self, call: LeadCall) -> bytes:
        if self.config.format == "roistat":
            return encode(roistat.build_payload(call))
        return encode(build_payload(call))

    async def deliver(self, call: LeadCall, idempotency_key: str) -> DeliveryResult:
        if call.stage not in self.config.stages:
            return DeliveryResult(skipped=f"stage {call.stage} is not enabled")
        if not self.config.allow_private_network:
            await self._refuse_private_target()
        body = self.body_for(call)
        timestamp = int(self._clock().timestamp())
        headers = {
            "webhook-id": idempotency_key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._keys, idempotency_key, timestamp, body),
            "Content-Type": "application/json",
            "User-Agent": "calltracker-webhook/1",
        }
        service = f"webhook {self._host}"
        reply = await send(
            self._session,
            "POST",
            self.config.url.reveal(),
            service=service,
            limiter=self._limiter,
            timeout=self.config.timeout,
            data=body,
            headers=headers,
        )
        status = reply.status
        if 200 <= status < 300:
            log.info(
                "webhook delivered call_id=%s key=%s host=%s status=%s",
                call.call_id,
                idempotency_key,
                self._host,
                status,
            )
            return DeliveryResult(remote_ids={"webhook_id": idempotency_key})
        snippet = reply.body[:200].decode(errors="replace").strip()
        message = f"{service}: HTTP {status}" + (f": {snippet}" if snippet else "")
        if status == 410:
            raise EndpointGone(message, status=status)
        if status in (401, 403):
            raise AuthError(message, status=status)
        if 300 <= status < 400:
            # Standard Webhooks: redirects are not followed and count as a failed attempt.
            raise TemporaryError(f"{service}: HTTP {status} redirect not followed", status=status)
        if status in (408, 425, 429) or status >= 500:
            raise TemporaryError(
                message,
                status=status,
                retry_after=parse_retry_after(reply.headers.get("Retry-After")),
            )
        raise PermanentError(message, status=status)

    async def _refuse_private_target(self) -> None:
        # Receiver URLs are typed in by users; without this a URL could reach our own LAN (SSRF).
        # Checked per delivery because DNS can change; the connection may still race a rebinding.
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM
            )
        except OSError:
            raise TemporaryError(f"webhook {self._host}: cannot resolve the host name") from None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # drop a v6 scope
            if not address.is_global:
                raise PermanentError(f"webhook {self._host}: refusing non-public address {address}")
