"""amoCRM / Kommo API v4: a lead with its contact per new caller, and the call on their card."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from msgspec import Meta
from msgspec.structs import force_setattr

from calltracker.integrations.base import (
    HANGUP,
    ConfigShape,
    ConfiguredAdapter,
    Currency,
    DeliveryResult,
    HttpReply,
    LeadCall,
    Stages,
    Text,
    Url,
    http_error,
    last_digits,
    parse_retry_after,
    send,
)
from calltracker.integrations.deal_source import DealSyncConfig
from calltracker.integrations.errors import (
    AuthError,
    IntegrationError,
    PermanentError,
    TemporaryError,
)
from calltracker.settings import Secret

log = logging.getLogger(__name__)

KIND = "amocrm"
# Our call outcome -> /api/v4/calls call_status (4 had a conversation, 6 did not get through,
# 7 line busy, 3 not available).
CALL_STATUSES = {"answered": 4, "missed": 6, "busy": 7, "failed": 3}
_MAX_VALUE = 256  # amoCRM text fields; longer values fail validation


class AmoOAuth(ConfigShape, frozen=True):
    """An OAuth 2 integration: the access token lapses (a day) and is refreshed with these."""

    client_id: Text
    client_secret: Secret
    redirect_uri: Url  # as set in the integration's settings; the token endpoint checks it
    refresh_token: Secret  # single use: every refresh hands out a new one, stored at once
    expires_at: int | None = None  # Unix time the access token lapses, if known


class AmoDeals(DealSyncConfig, frozen=True):
    """The account's deals (amoCRM "leads") back."""

    # The last part of the webhook URL, /hooks/amocrm/{integration}/{secret}: amoCRM webhooks
    # carry no signature, so the URL itself is the credential.
    webhook_secret: Secret | None = None
    currency: Currency = "RUB"  # a lead's price is in the account's currency


class AmoCrmConfig(ConfigShape, frozen=True):
    """One amoCRM (or Kommo) account, reached with a long-lived token or OAuth 2."""

    base_url: Url  # the account's own domain, e.g. https://example.amocrm.ru
    access_token: Secret  # a long-lived token, or the OAuth access token (refreshed here)
    oauth: AmoOAuth | None = None
    operator_users: dict[str, int] = {}  # extension -> amoCRM user: who answered, not a robot
    token_warning_days: Annotated[int, Meta(ge=1, le=365)] = 14
    deals: AmoDeals | None = None
    new_lead: Literal["complex", "unsorted"] = "complex"
    pipeline_id: Annotated[int, Meta(ge=1)] | None = None
    responsible_user_id: Annotated[int, Meta(ge=1)] | None = None
    tags: tuple[Annotated[str, Meta(min_length=1, max_length=1000)], ...] = ("calltracking",)
    source_name: Annotated[str, Meta(max_length=100)] = "calltracker"
    source_uid: Annotated[str, Meta(max_length=100)] = "calltracker"
    stages: Stages = HANGUP
    rate_limit: Annotated[float, Meta(gt=0, le=7)] = 7.0  # amoCRM allows at most 7 a second
    timeout: Annotated[float, Meta(gt=0, le=120)] = 30.0

    def __post_init__(self) -> None:
        force_setattr(self, "base_url", self.base_url.rstrip("/"))


# amoCRM tracking_data codes of the ad platforms' click ids and the analytics' client ids.
CLICK_CODES = {"gclid": "GCLID", "yclid": "YCLID"}


def tracking_values(call: LeadCall) -> dict[str, str]:
    """Our attribution by amoCRM tracking_data field code."""
    visit = call.visit
    values = {
        "UTM_SOURCE": call.source,
        "UTM_MEDIUM": call.medium,
        "UTM_CAMPAIGN": call.campaign,
        "UTM_CONTENT": call.content,
        "UTM_TERM": call.keyword,
        "UTM_REFERRER": visit.referrer if visit else "",
        "_YM_UID": visit.ym_client_id if visit else "",
        "GCLIENTID": visit.ga_client_id if visit else "",
    }
    if visit is not None and visit.click_id_type in CLICK_CODES:
        values[CLICK_CODES[visit.click_id_type]] = visit.click_id
    return values


def user_for(call: LeadCall, config: AmoCrmConfig) -> int | None:
    """The amoCRM user who answered (by extension), else the configured responsible one."""
    return config.operator_users.get(call.operator, config.responsible_user_id)


def token_expiry(token: str) -> datetime | None:
    """When a long-lived token lapses: the ``exp`` of its JWT payload (not verified)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        payload = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    return datetime.fromtimestamp(exp, UTC)


def warnings(config: AmoCrmConfig, now: datetime) -> list[str]:
    """What an admin must act on before deliveries stop: a long-lived token about to lapse."""
    if config.oauth is not None:
        return []  # refreshed here, as long as the refresh token is used within its life
    expires = token_expiry(config.access_token.reveal())
    if expires is None:
        return []
    left = expires - now
    when = expires.strftime("%Y-%m-%d %H:%M UTC")
    if left <= timedelta(0):
        return [f"the long-lived amoCRM token expired on {when}: issue a new one"]
    if left <= timedelta(days=config.token_warning_days):
        return [f"the long-lived amoCRM token expires on {when}, in {left.days} day(s)"]
    return []


def lead_payload(
    call: LeadCall, config: AmoCrmConfig, tracking_codes: frozenset[str]
) -> dict[str, Any]:
    """One lead of /api/v4/leads/complex, with the caller as its contact."""
    label = "/".join(part for part in (call.source, call.medium) if part) or "no source"
    lead: dict[str, Any] = {
        "name": f"Call {call.caller} — {label}"[:_MAX_VALUE],
        "created_at": int(call.started_at.timestamp()),
        "request_id": call.external_id,
        "_embedded": {
            "tags": [{"name": tag} for tag in config.tags],
            "contacts": [contact_payload(call)],
        },
    }
    # Only codes the account has: an unknown field_code fails the whole request with a 400.
    fields = [
        {"field_code": code, "values": [{"value": value[:_MAX_VALUE]}]}
        for code, value in tracking_values(call).items()
        if value and code in tracking_codes
    ]
    if fields:
        lead["custom_fields_values"] = fields
    if config.pipeline_id is not None:
        lead["pipeline_id"] = config.pipeline_id
    user = user_for(call, config)
    if user is not None:
        lead["responsible_user_id"] = user
    return lead


def contact_payload(call: LeadCall) -> dict[str, Any]:
    return {
        "first_name": call.caller,
        "custom_fields_values": [
            {"field_code": "PHONE", "values": [{"value": call.caller, "enum_code": "WORK"}]}
        ],
    }


def call_payload(call: LeadCall, config: AmoCrmConfig) -> dict[str, Any]:
    """One item of POST /api/v4/calls."""
    item: dict[str, Any] = {
        "direction": "inbound",
        "duration": call.talk_seconds,
        "source": config.source_name,
        "phone": call.caller,
        "uniq": call.external_id,
        "call_status": CALL_STATUSES[call.status],
        "call_result": f"{call.status}; tracked number {call.tracking_number}"[:_MAX_VALUE],
        "created_at": int(call.started_at.timestamp()),
        "request_id": call.external_id,
    }
    if call.recording_url:
        item["link"] = call.recording_url
    user = user_for(call, config)
    if user is not None:
        # Without created_by amoCRM's statistics show the call as made by a robot.
        item["responsible_user_id"] = user
        item["created_by"] = user
    return item


def unsorted_payload(
    call: LeadCall, config: AmoCrmConfig, tracking_codes: frozenset[str]
) -> dict[str, Any]:
    """One item of POST /api/v4/leads/unsorted/sip: a new caller's lead with the call in it."""
    lead = lead_payload(call, config, tracking_codes)
    contact = lead["_embedded"].pop("contacts")
    metadata: dict[str, Any] = {
        "uniq": call.external_id,
        "from": call.caller,
        "phone": call.tracking_number,
        "called_at": int(call.started_at.timestamp()),
        "duration": call.talk_seconds,
        "service_code": config.source_uid,
        "is_call_event_needed": True,
    }
    if call.recording_url:
        metadata["link"] = call.recording_url
    item: dict[str, Any] = {
        "source_name": config.source_name,
        "source_uid": config.source_uid,
        "created_at": int(call.started_at.timestamp()),
        "request_id": call.external_id,
        "metadata": metadata,
        "_embedded": {"leads": [lead], "contacts": contact},
    }
    if config.pipeline_id is not None:
        item["pipeline_id"] = config.pipeline_id
    return item


class AmoCrmAdapter(ConfiguredAdapter[AmoCrmConfig]):
    """Delivers calls to one amoCRM account."""

    kind = KIND

    def _prepare(self) -> None:
        self._tracking_codes: frozenset[str] | None = None
        self._host = urlsplit(self.config.base_url).hostname or "?"
        self._access = self.config.access_token
        oauth = self.config.oauth
        self._refresh_token = oauth.refresh_token if oauth else Secret("")
        self._expires_at = oauth.expires_at if oauth else None
        self._refreshing = asyncio.Lock()
        self._warned_on: str = ""

    def __repr__(self) -> str:
        return f"AmoCrmAdapter(host={self._host!r})"

    async def deliver(self, call: LeadCall, idempotency_key: str) -> DeliveryResult:
        if call.stage not in self.config.stages:
            return DeliveryResult(skipped=f"stage {call.stage} is not enabled")
        if not call.caller:
            # Without a number there is nothing to find the lead by on a retry, nor to attach to.
            return DeliveryResult(skipped="caller id withheld: amoCRM matches calls by phone")
        # The caller's contact exists once we created their lead: so a retry, or the hangup after a
        # ring delivery, finds it here and adds no second lead. A repeat caller is found the same way.
        ids = await self._find_contact(call.caller)
        call_logged = False
        if ids is None:
            codes = await self._tracking_field_codes()
            if self.config.new_lead == "unsorted":
                ids = await self._add_unsorted(call, codes)
                call_logged = True
            else:
                ids = await self._add_lead(call, codes)
        if call.stage == "hangup" and not call_logged:
            ids.update(await self._add_call(call))
        log.info("amocrm delivered call_id=%s key=%s ids=%s", call.call_id, idempotency_key, ids)
        return DeliveryResult(remote_ids=ids)

    async def _find_contact(self, phone: str) -> dict[str, str] | None:
        wanted = last_digits(phone)
        data = await self.request(
            "GET", "/api/v4/contacts", params={"query": wanted, "with": "leads", "limit": "50"}
        )
        if data is None:  # 204: nobody has that number
            return None
        contacts = data.get("_embedded", {}).get("contacts", []) if isinstance(data, dict) else []
        # query is full text: it also matches a number inside a note or a longer number.
        matching = [c for c in contacts if isinstance(c, dict) and wanted in _phones_of(c)]
        if not matching:
            return None
        contact = max(matching, key=lambda c: int(c.get("id", 0)))
        ids = {"contact_id": str(contact["id"])}
        leads = contact.get("_embedded", {}).get("leads", [])
        lead_ids = [int(lead["id"]) for lead in leads if isinstance(lead, dict) and "id" in lead]
        if lead_ids:
            ids["lead_id"] = str(max(lead_ids))
        return ids

    async def _tracking_field_codes(self) -> frozenset[str]:
        if self._tracking_codes is not None:
            return self._tracking_codes
        codes: set[str] = set()
        page = 1
        while True:
            data = await self.request(
                "GET", "/api/v4/leads/custom_fields", params={"page": str(page), "limit": "250"}
            )
            if not isinstance(data, dict):
                break
            for item in data.get("_embedded", {}).get("custom_fields", []):
                if (
                    isinstance(item, dict)
                    and item.get("type") == "tracking_data"
                    and item.get("code")
                ):
                    codes.add(str(item["code"]))
            if not data.get("_links", {}).get("next") or page >= 20:
                break
            page += 1
        self._tracking_codes = frozenset(codes)
        return self._tracking_codes

    async def _add_lead(self, call: LeadCall, codes: frozenset[str]) -> dict[str, str]:
        data = await self.request(
            "POST", "/api/v4/leads/complex", json=[lead_payload(call, self.config, codes)]
        )
        if (
            not isinstance(data, list)
            or not data
            or not isinstance(data[0], dict)
            or "id" not in data[0]
        ):
            raise TemporaryError("amocrm leads/complex: unexpected reply")
        first = data[0]
        ids = {"lead_id": str(first["id"])}
        if first.get("contact_id"):
            ids["contact_id"] = str(first["contact_id"])
        if first.get("merged"):
            ids["merged"] = "true"
        return ids

    async def _add_unsorted(self, call: LeadCall, codes: frozenset[str]) -> dict[str, str]:
        data = await self.request(
            "POST", "/api/v4/leads/unsorted/sip", json=[unsorted_payload(call, self.config, codes)]
        )
        unsorted = data.get("_embedded", {}).get("unsorted", []) if isinstance(data, dict) else []
        if not unsorted or not isinstance(unsorted[0], dict) or not unsorted[0].get("uid"):
            raise TemporaryError("amocrm leads/unsorted/sip: unexpected reply")
        item = unsorted[0]
        ids = {"unsorted_uid": str(item["uid"])}
        embedded = item.get("_embedded", {})
        for key, name in (("leads", "lead_id"), ("contacts", "contact_id")):
            entities = embedded.get(key) or []
            if entities and isinstance(entities[0], dict) and "id" in entities[0]:
                ids[name] = str(entities[0]["id"])
        return ids

    async def _add_call(self, call: LeadCall) -> dict[str, str]:
        data = await self.request("POST", "/api/v4/calls", json=[call_payload(call, self.config)])
        calls = data.get("_embedded", {}).get("calls", []) if isinstance(data, dict) else []
        for item in calls:
            if (
                isinstance(item, dict)
                and str(item.get("request_id")) == call.external_id
                and "id" in item
            ):
                return {"call_id": str(item["id"])}
        # amoCRM attaches a call only to a contact it can find by phone; ours may not be indexed yet.
        raise TemporaryError(
            "amocrm calls: the call was not attached to any contact", retry_after=60.0
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; its JSON, or None for 204. An OAuth token that lapsed is refreshed
        once and the call repeated."""
        self._warn_expiry()
        if self._expires_at is not None and self._clock().timestamp() >= self._expires_at - 60:
            await self._refresh(self._access)
        for attempt in (1, 2):
            used = self._access
            reply = await send(
                self._session,
                method,
                self.config.base_url + path,
                service=f"amocrm {path}",
                limiter=self._limiter,
                timeout=self.config.timeout,
                headers={"Authorization": f"Bearer {used.reveal()}"},
                **kwargs,
            )
            if reply.status == 204:
                return None
            try:
                data = reply.json()
            except ValueError:
                data = None
            if 200 <= reply.status < 300:
                return data
            if reply.status == 401 and self.config.oauth is not None and attempt == 1:
                await self._refresh(used)
                continue
            raise self._error(path, reply, data)
        raise AssertionError("unreachable")

    async def _refresh(self, failed: Secret) -> None:
        """New tokens for ``failed``; once, however many deliveries found it lapsed."""
        oauth = self.config.oauth
        assert oauth is not None
        async with self._refreshing:
            if self._access != failed:
                return  # refreshed while this call waited for the lock
            reply = await send(
                self._session,
                "POST",
                self.config.base_url + "/oauth2/access_token",
                service="amocrm oauth",
                limiter=self._limiter,
                timeout=self.config.timeout,
                json={
                    "client_id": oauth.client_id,
                    "client_secret": oauth.client_secret.reveal(),
                    "grant_type": "refresh_token",
                    "refresh_token": self._refresh_token.reveal(),
                    "redirect_uri": oauth.redirect_uri,
                },
            )
            try:
                data = reply.json()
            except ValueError:
                data = None
            if reply.status >= 500 or reply.status == 429:
                raise TemporaryError(f"amocrm oauth: HTTP {reply.status}", status=reply.status)
            if reply.status != 200 or not isinstance(data, dict) or not data.get("access_token"):
                if await self._adopt_stored():
                    return
                detail = (
                    str(data.get("hint") or data.get("detail") or "")
                    if isinstance(data, dict)
                    else ""
                )
                raise AuthError(
                    f"amocrm oauth refresh refused: HTTP {reply.status} {detail}".strip(),
                    status=reply.status,
                )
            self._access = Secret(str(data["access_token"]))
            self._refresh_token = Secret(str(data.get("refresh_token") or ""))
            expires_in = data.get("expires_in")
            self._expires_at = (
                int(self._clock().timestamp()) + int(expires_in)
                if isinstance(expires_in, int) and expires_in > 0
                else None
            )
            log.info("amocrm oauth tokens refreshed host=%s", self._host)
            if self._tokens is not None:
                # The old refresh token is spent now: the new pair must outlive a restart.
                await self._tokens.save(
                    {
                        "access_token": self._access.reveal(),
                        "oauth": {
                            "refresh_token": self._refresh_token.reveal(),
                            "expires_at": self._expires_at,
                        },
                    }
                )

    async def _adopt_stored(self) -> bool:
        """Another process refreshed first (our refresh token is spent): take its tokens."""
        if self._tokens is None:
            return False
        stored = await self._tokens.load()
        oauth = stored.get("oauth")
        if not isinstance(oauth, Mapping):
            return False
        refresh = str(oauth.get("refresh_token") or "")
        if not refresh or refresh == self._refresh_token.reveal():
            return False
        self._access = Secret(str(stored.get("access_token") or ""))
        self._refresh_token = Secret(refresh)
        expires = oauth.get("expires_at")
        self._expires_at = int(expires) if isinstance(expires, int) else None
        log.info("amocrm oauth tokens taken from the store host=%s", self._host)
        return True

    def _warn_expiry(self) -> None:
        today = self._clock().date().isoformat()
        if self._warned_on == today:
            return
        self._warned_on = today
        for text in warnings(self.config, self._clock()):
            log.warning("amocrm token host=%s: %s", self._host, text)

    def _error(self, path: str, reply: HttpReply, data: Any) -> IntegrationError:
        service = f"amocrm {path}"
        detail = ""
        if isinstance(data, dict):
            detail = str(data.get("detail") or data.get("title") or "")[:300]
            problems = [
                f"{error.get('path', '?')}: {error.get('detail') or error.get('code', '')}"
                for item in data.get("validation-errors") or []
                if isinstance(item, dict)
                for error in item.get("errors") or []
                if isinstance(error, dict)
            ]
            if problems:
                return PermanentError(
                    f"{service}: HTTP {reply.status}: {detail}: " + "; ".join(problems)[:1000],
                    status=reply.status,
                    code="validation-errors",
                )
        if reply.status == 429:
            wait = parse_retry_after(reply.headers.get("Retry-After")) or 1.0
            self._limiter.pause(wait)
            return TemporaryError(
                f"{service}: HTTP 429: {detail or 'too many requests'}",
                status=429,
                retry_after=wait,
            )
        return http_error(service, reply, detail)


def _phones_of(contact: Mapping[str, Any]) -> set[str]:
    phones: set[str] = set()
    for field in contact.get("custom_fields_values") or []:
        if isinstance(field, dict) and field.get("field_code") == "PHONE":
            for value in field.get("values") or []:
                if isinstance(value, dict):
                    phones.add(last_digits(str(value.get("value", ""))))
    return phones
