"""amoCRM / Kommo API v4: a lead with its contact per new caller, and the call on their card."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from msgspec import Meta
from msgspec.structs import force_setattr

from calltracker.integrations.base import (
    HANGUP,
    ConfigShape,
    ConfiguredAdapter,
    DeliveryResult,
    HttpReply,
    LeadCall,
    Stages,
    Url,
    http_error,
    last_digits,
    parse_retry_after,
    send,
)
from calltracker.integrations.errors import IntegrationError, PermanentError, TemporaryError
from calltracker.settings import Secret

log = logging.getLogger(__name__)

KIND = "amocrm"
# Our call outcome -> /api/v4/calls call_status (4 had a conversation, 6 did not get through,
# 7 line busy, 3 not available).
CALL_STATUSES = {"answered": 4, "missed": 6, "busy": 7, "failed": 3}
_MAX_VALUE = 256  # amoCRM text fields; longer values fail validation


class AmoCrmConfig(ConfigShape, frozen=True):
    """One amoCRM (or Kommo) account, reached with a long-lived token."""

    base_url: Url  # the account's own domain, e.g. https://example.amocrm.ru
    access_token: Secret
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


def tracking_values(call: LeadCall) -> dict[str, str]:
    """Our attribution by amoCRM tracking_data field code."""
    visit = call.visit
    return {
        "UTM_SOURCE": call.source,
        "UTM_MEDIUM": call.medium,
        "UTM_CAMPAIGN": call.campaign,
        "UTM_CONTENT": call.content,
        "UTM_TERM": call.keyword,
        "UTM_REFERRER": visit.referrer if visit else "",
        "_YM_UID": visit.ym_client_id if visit else "",
    }


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
    if config.responsible_user_id is not None:
        lead["responsible_user_id"] = config.responsible_user_id
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
    if config.responsible_user_id is not None:
        item["responsible_user_id"] = config.responsible_user_id
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
        data = await self._request(
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
            data = await self._request(
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
        data = await self._request(
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
        data = await self._request(
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
        data = await self._request("POST", "/api/v4/calls", json=[call_payload(call, self.config)])
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

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = await send(
            self._session,
            method,
            self.config.base_url + path,
            service=f"amocrm {path}",
            limiter=self._limiter,
            timeout=self.config.timeout,
            headers={"Authorization": f"Bearer {self.config.access_token.reveal()}"},
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
        raise self._error(path, reply, data)

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
