"""Bitrix24 CRM: one lead per new caller, and every call logged on the lead or the caller's card."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
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
    Text,
    Url,
    http_error,
    iso_utc,
    send,
)
from calltracker.integrations.errors import (
    AuthError,
    IntegrationError,
    PermanentError,
    TemporaryError,
)
from calltracker.settings import Secret

log = logging.getLogger(__name__)

KIND = "bitrix24"
PHONE_VALUE_TYPES = ("WORK", "MOBILE", "FAX", "HOME", "PAGER", "MAILING", "OTHER")
# crm.activity.add OWNER_TYPE_ID values.
OWNER_TYPE_IDS = {"LEAD": 1, "CONTACT": 3, "COMPANY": 4}
# Our call outcome -> telephony.externalCall.finish STATUS_CODE.
STATUS_CODES = {"answered": "200", "missed": "304", "busy": "486", "failed": "OTHER"}
_AUTH_CODES = frozenset(
    {
        "NO_AUTH_FOUND",
        "expired_token",
        "invalid_token",
        "insufficient_scope",
        "INVALID_CREDENTIALS",
        "ACCESS_DENIED",
    }
)


class Bitrix24App(ConfigShape, frozen=True):
    """OAuth credentials of a local Bitrix24 app; the telephony methods refuse webhooks."""

    portal_url: Url
    client_id: Text
    client_secret: Secret
    access_token: Secret
    refresh_token: Secret
    oauth_url: Url = "https://oauth.bitrix.info/oauth/token/"

    def __post_init__(self) -> None:
        force_setattr(self, "portal_url", self.portal_url.rstrip("/"))


class Bitrix24Config(ConfigShape, frozen=True):
    """One Bitrix24 portal."""

    webhook_url: Secret  # https://{portal}/rest/{user_id}/{code}/: the code is a credential
    source_id: Annotated[str, Meta(max_length=50)] = "CALL"
    responsible_user_id: Annotated[int, Meta(ge=1)] = 1
    operator_users: dict[str, int] = {}  # extension -> Bitrix user id
    repeat_caller: Literal["attach", "new_lead"] = "attach"
    register_sonet_event: bool = True
    originator_id: Annotated[str, Meta(max_length=100)] = "calltracker"
    call_logging: Literal["telephony", "activity"] = "telephony"
    app: Bitrix24App | None = None
    stages: Stages = HANGUP
    # The non-Enterprise leaky bucket drains 2 requests a second.
    rate_limit: Annotated[float, Meta(gt=0, le=50)] = 2.0
    timeout: Annotated[float, Meta(gt=0, le=120)] = 60.0  # Bitrix itself gives a request 60 s

    def __post_init__(self) -> None:
        parts = urlsplit(self.webhook_url.reveal())
        if parts.scheme not in ("http", "https") or not parts.netloc or "/rest/" not in parts.path:
            raise ValueError("webhook_url: must look like https://{portal}/rest/{user_id}/{code}/")


@dataclass(frozen=True)
class _Entity:
    type: Literal["LEAD", "CONTACT", "COMPANY"]
    id: int
    created: bool = False


def lead_fields(
    call: LeadCall, config: Bitrix24Config, *, contact_id: int | None = None
) -> dict[str, Any]:
    """The ``fields`` of crm.lead.add for a call."""
    label = " / ".join(part for part in (call.source, call.medium) if part) or "no source"
    who = call.caller or "a hidden number"
    comments = [
        f"Call {call.status}, talked {call.talk_seconds} s, attribution {call.attribution}."
    ]
    if call.recording_url:
        comments.append(f"Recording: {call.recording_url}")
    if call.visit is not None and call.visit.landing_url:
        comments.append(f"Landing page: {call.visit.landing_url}")
    if call.visit is not None and call.visit.referrer:
        comments.append(f"Referrer: {call.visit.referrer}")
    fields: dict[str, Any] = {
        "TITLE": f"Call from {who} ({label})",
        "SOURCE_ID": config.source_id,
        "SOURCE_DESCRIPTION": f"Tracked number {call.tracking_number} ({call.site_name})",
        "UTM_SOURCE": call.source,
        "UTM_MEDIUM": call.medium,
        "UTM_CAMPAIGN": call.campaign,
        "UTM_CONTENT": call.content,
        "UTM_TERM": call.keyword,
        "COMMENTS": "\n".join(comments),
        "ASSIGNED_BY_ID": _user_for(call, config),
        "OPENED": "Y",
        "ORIGINATOR_ID": config.originator_id,
        "ORIGIN_ID": call.external_id,
    }
    if call.caller:
        fields["NAME"] = call.caller
        fields["PHONE"] = [{"VALUE": call.caller, "VALUE_TYPE": "WORK"}]
    if contact_id is not None:
        fields["CONTACT_ID"] = contact_id
    return fields


def _user_for(call: LeadCall, config: Bitrix24Config) -> int:
    return config.operator_users.get(call.operator, config.responsible_user_id)


def _ids(value: Any) -> list[int]:
    if not isinstance(value, list):
        return []
    return sorted(int(v) for v in value if str(v).isdigit())


def _row_ids(rows: Any) -> list[int]:
    """The ``ID``s of a list method's rows, which Bitrix sends as strings."""
    if not isinstance(rows, list):
        return []
    return _ids([row.get("ID") for row in rows if isinstance(row, dict)])


class Bitrix24Adapter(ConfiguredAdapter[Bitrix24Config]):
    """Delivers calls to one Bitrix24 portal through its incoming webhook (and app, if set)."""

    kind = KIND

    def _prepare(self) -> None:
        self._access_token = self.config.app.access_token if self.config.app else Secret("")
        self._refresh_token = self.config.app.refresh_token if self.config.app else Secret("")
        self._telephony_refused = False
        self._host = urlsplit(self.config.webhook_url.reveal()).hostname or "?"

    def __repr__(self) -> str:
        return f"Bitrix24Adapter(host={self._host!r})"

    async def deliver(self, call: LeadCall, idempotency_key: str) -> DeliveryResult:
        if call.stage not in self.config.stages:
            return DeliveryResult(skipped=f"stage {call.stage} is not enabled")
        entity, ids = await self._find_or_create_lead(call)
        if call.stage == "hangup":
            ids.update(await self._log_call(call, entity))
        log.info(
            "bitrix24 delivered call_id=%s key=%s entity=%s:%s created=%s",
            call.call_id,
            idempotency_key,
            entity.type,
            entity.id,
            entity.created,
        )
        return DeliveryResult(remote_ids=ids)

    async def _find_or_create_lead(self, call: LeadCall) -> tuple[_Entity, dict[str, str]]:
        # Our own lead first: a retry, or the hangup after a ring delivery, must not add another.
        own = await self._call(
            "crm.lead.list",
            {
                "filter": {
                    "ORIGINATOR_ID": self.config.originator_id,
                    "ORIGIN_ID": call.external_id,
                },
                "select": ["ID"],
            },
        )
        own_ids = _row_ids(own)
        if own_ids:
            return _Entity("LEAD", own_ids[0]), {"lead_id": str(own_ids[0])}

        known = await self._find_by_phone(call.caller) if call.caller else None
        if known is not None and self.config.repeat_caller == "attach":
            return known, {f"{known.type.lower()}_id": str(known.id)}

        contact_id = known.id if known is not None and known.type == "CONTACT" else None
        lead_id = await self._call(
            "crm.lead.add",
            {
                "fields": lead_fields(call, self.config, contact_id=contact_id),
                "params": {
                    "REGISTER_SONET_EVENT": "Y" if self.config.register_sonet_event else "N"
                },
            },
        )
        if isinstance(lead_id, bool) or not str(lead_id).isdigit():
            raise TemporaryError(f"bitrix24 crm.lead.add: unexpected result {str(lead_id)[:100]!r}")
        ids = {"lead_id": str(lead_id)}
        if contact_id is not None:
            ids["contact_id"] = str(contact_id)
        return _Entity("LEAD", int(lead_id), created=True), ids

    async def _find_by_phone(self, phone: str) -> _Entity | None:
        result = await self._call("crm.duplicate.findbycomm", {"type": "PHONE", "values": [phone]})
        # Nothing found comes back as [] rather than {}.
        if not isinstance(result, dict):
            return None
        for entity_type in ("CONTACT", "COMPANY", "LEAD"):
            found = _ids(result.get(entity_type))
            if found:
                # The newest card is the one people work with now.
                return _Entity(entity_type, found[-1])
        return None

    async def _log_call(self, call: LeadCall, entity: _Entity) -> dict[str, str]:
        if self.config.call_logging == "telephony" and call.caller and not self._telephony_refused:
            try:
                return await self._register_call(call, entity)
            except PermanentError as err:
                if err.code != "WRONG_AUTH_TYPE":
                    raise
                # Webhooks may not use telephony.* (docs, 2026); stop trying for this portal.
                self._telephony_refused = True
                log.warning(
                    "bitrix24 telephony refused host=%s; logging calls as CRM activities",
                    self._host,
                )
        return await self._add_activity(call, entity)

    async def _register_call(self, call: LeadCall, entity: _Entity) -> dict[str, str]:
        user_id = _user_for(call, self.config)
        registered = await self._call(
            "telephony.externalCall.register",
            {
                "USER_ID": user_id,
                "PHONE_NUMBER": call.caller,
                "TYPE": 2,
                "CALL_START_DATE": iso_utc(call.started_at),
                "CRM_CREATE": 0,
                "CRM_SOURCE": self.config.source_id,
                "CRM_ENTITY_TYPE": entity.type,
                "CRM_ENTITY_ID": entity.id,
                "SHOW": 0,
                "ADD_TO_CHAT": 0,
                "LINE_NUMBER": call.tracking_number,
                # Same id within 30 min returns the same CALL_ID, so a retry does not add a call.
                "EXTERNAL_CALL_ID": call.external_id,
            },
            app=True,
        )
        if not isinstance(registered, dict) or not isinstance(registered.get("CALL_ID"), str):
            raise TemporaryError(
                "bitrix24 telephony.externalCall.register: no CALL_ID in the reply"
            )
        call_id = registered["CALL_ID"]
        finish: dict[str, Any] = {
            "CALL_ID": call_id,
            "USER_ID": user_id,
            "DURATION": call.talk_seconds,
            "STATUS_CODE": STATUS_CODES[call.status],
            "ADD_TO_CHAT": 0,
        }
        if call.status == "failed":
            finish["FAILED_REASON"] = "failed"
        try:
            await self._call("telephony.externalCall.finish", finish, app=True)
        except PermanentError as err:
            # A retry after a finish whose reply was lost: register hands back the same CALL_ID,
            # which Bitrix has already moved out of the open calls, so finish no longer finds it.
            if "not found" not in err.message.lower():
                raise
            log.info(
                "bitrix24 call already finished call_id=%s bitrix_call_id=%s", call.call_id, call_id
            )
        if call.recording_url:
            # Only after finish: attachRecord needs the call in the statistics table.
            await self._call(
                "telephony.externalCall.attachRecord",
                {"CALL_ID": call_id, "RECORD_URL": call.recording_url},
                app=True,
            )
        return {"call_id": call_id}

    async def _add_activity(self, call: LeadCall, entity: _Entity) -> dict[str, str]:
        origin = {"ORIGINATOR_ID": self.config.originator_id, "ORIGIN_ID": call.external_id}
        existing = await self._call("crm.activity.list", {"filter": origin, "select": ["ID"]})
        existing_ids = _row_ids(existing)
        if existing_ids:
            return {"activity_id": str(existing_ids[0])}
        lines = [
            f"Call to {call.tracking_number} ({call.site_name}), {call.status}, talked {call.talk_seconds} s."
        ]
        lines.append(
            f"Source: {call.source or '-'} / {call.medium or '-'}, campaign {call.campaign or '-'}"
        )
        if call.keyword:
            lines.append(f"Keyword: {call.keyword}")
        if call.recording_url:
            lines.append(f"Recording: {call.recording_url}")
        owner_type = OWNER_TYPE_IDS[entity.type]
        activity_id = await self._call(
            "crm.activity.add",
            {
                "fields": {
                    "OWNER_TYPE_ID": owner_type,
                    "OWNER_ID": entity.id,
                    "TYPE_ID": 2,
                    "DIRECTION": 1,
                    "COMMUNICATIONS": [
                        {
                            "VALUE": call.caller or call.tracking_number,
                            "TYPE": "PHONE",
                            "ENTITY_TYPE_ID": owner_type,
                            "ENTITY_ID": entity.id,
                        }
                    ],
                    "SUBJECT": f"Incoming call from {call.caller or 'a hidden number'}",
                    "START_TIME": iso_utc(call.started_at),
                    "END_TIME": iso_utc(call.ended_at or call.started_at),
                    "COMPLETED": "Y",
                    "RESPONSIBLE_ID": _user_for(call, self.config),
                    "DESCRIPTION": "\n".join(lines),
                    **origin,
                }
            },
        )
        return {"activity_id": str(activity_id)}

    async def _call(self, method: str, params: dict[str, Any], *, app: bool = False) -> Any:
        """Call one REST method and return its ``result``, or raise from the error tree."""
        use_app = app and self.config.app is not None
        for attempt in (1, 2):
            if use_app:
                assert self.config.app is not None
                url = f"{self.config.app.portal_url}/rest/{method}"
                body = {**params, "auth": self._access_token.reveal()}
            else:
                url = self.config.webhook_url.reveal().rstrip("/") + "/" + method
                body = params
            reply = await send(
                self._session,
                "POST",
                url,
                service=f"bitrix24 {method}",
                limiter=self._limiter,
                timeout=self.config.timeout,
                json=body,
            )
            try:
                data = reply.json()
            except ValueError:
                data = None
            if 200 <= reply.status < 300 and isinstance(data, dict) and "result" in data:
                return data["result"]
            code, detail = _error_of(data)
            if use_app and code == "expired_token" and attempt == 1:
                await self._refresh_tokens()
                continue
            raise self._error(method, reply, data, code, detail)
        raise AssertionError("unreachable")

    def _error(
        self, method: str, reply: HttpReply, data: Any, code: str, detail: str
    ) -> IntegrationError:
        service = f"bitrix24 {method}"
        text = ": ".join(part for part in (code, detail) if part) or "no error description"
        if 200 <= reply.status < 300:
            return TemporaryError(f"{service}: unreadable reply ({text})", status=reply.status)
        if code == "QUERY_LIMIT_EXCEEDED":
            # The bucket drains at rate_limit a second; a couple of drained slots is enough.
            wait = 2.0 / self.config.rate_limit
            self._limiter.pause(wait)
            return TemporaryError(
                f"{service}: {text}", status=reply.status, code=code, retry_after=wait
            )
        if code == "OPERATION_TIME_LIMIT":
            reset = (
                data.get("time", {}).get("operating_reset_at") if isinstance(data, dict) else None
            )
            wait = 60.0
            if isinstance(reset, int | float):
                wait = max(1.0, reset - datetime.now(UTC).timestamp())
            return TemporaryError(
                f"{service}: {text}", status=reply.status, code=code, retry_after=wait
            )
        if code in _AUTH_CODES:
            return AuthError(f"{service}: {text}", status=reply.status, code=code)
        if code == "WRONG_AUTH_TYPE":
            return PermanentError(f"{service}: {text}", status=reply.status, code=code)
        return http_error(service, reply, text if (code or detail) else "", code)

    async def _refresh_tokens(self) -> None:
        app = self.config.app
        assert app is not None
        reply = await send(
            self._session,
            "GET",
            app.oauth_url,
            service="bitrix24 oauth refresh",
            limiter=self._limiter,
            timeout=self.config.timeout,
            params={
                "grant_type": "refresh_token",
                "client_id": app.client_id,
                "client_secret": app.client_secret.reveal(),
                "refresh_token": self._refresh_token.reveal(),
            },
        )
        try:
            data = reply.json()
        except ValueError:
            data = None
        if reply.status != 200 or not isinstance(data, dict) or not data.get("access_token"):
            code, detail = _error_of(data)
            if reply.status >= 500:
                raise TemporaryError(
                    f"bitrix24 oauth refresh: HTTP {reply.status}", status=reply.status
                )
            raise AuthError(
                f"bitrix24 oauth refresh failed: {code or detail or reply.status}",
                status=reply.status,
            )
        self._access_token = Secret(str(data["access_token"]))
        self._refresh_token = Secret(str(data.get("refresh_token") or self._refresh_token.reveal()))
        log.info("bitrix24 oauth tokens refreshed host=%s", self._host)
        if self._on_tokens_refreshed is not None:
            await self._on_tokens_refreshed(self._access_token, self._refresh_token)


def _error_of(data: Any) -> tuple[str, str]:
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("error") or ""), str(data.get("error_description") or "")[:500]
