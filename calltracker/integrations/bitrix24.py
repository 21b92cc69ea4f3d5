"""Bitrix24 CRM: one lead per new caller, and every call logged on the lead or the caller's card."""

from __future__ import annotations

import json
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
from calltracker.integrations.deal_source import DealSyncConfig
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
OWNER_TYPE_IDS = {"LEAD": 1, "DEAL": 2, "CONTACT": 3, "COMPANY": 4}
# What `fields` may write into the portal's own UF_CRM_* fields of the lead or deal.
FIELD_KEYS = ("gclid", "gbraid", "wbraid", "yclid", "ga_client_id", "ym_client_id", "call_id")
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


class Bitrix24Deals(DealSyncConfig, frozen=True):
    """The portal's deals back: its outgoing webhook's token, and the polling backstop."""

    # Shown by Bitrix24 when the outgoing webhook is made; events without it are refused.
    application_token: Secret | None = None


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
    # "simple" portals work without leads (crm.settings.mode.get = 2): a contact and a deal.
    crm_mode: Literal["auto", "classic", "simple"] = "auto"
    deal_category_id: Annotated[int, Meta(ge=0)] | None = None  # simple mode's pipeline
    # Our source -> the UTM_SOURCE of a source configured in the portal's Sales Intelligence,
    # which only counts an entity whose UTM_SOURCE matches one of its sources.
    utm_sources: dict[str, str] = {}
    source_ids: dict[str, str] = {}  # our source -> the lead's SOURCE_ID; others: source_id
    trace: bool = True  # attach the visit's route with crm.tracking.trace.add
    trace_sources: dict[str, str] = {}  # our source -> Sales Intelligence source ID
    fields: dict[str, str] = {}  # gclid, yclid, ga_client_id, ... -> the portal's UF_CRM_*
    deals: Bitrix24Deals | None = None
    stages: Stages = HANGUP
    # The non-Enterprise leaky bucket drains 2 requests a second.
    rate_limit: Annotated[float, Meta(gt=0, le=50)] = 2.0
    timeout: Annotated[float, Meta(gt=0, le=120)] = 60.0  # Bitrix itself gives a request 60 s

    def __post_init__(self) -> None:
        parts = urlsplit(self.webhook_url.reveal())
        if parts.scheme not in ("http", "https") or not parts.netloc or "/rest/" not in parts.path:
            raise ValueError("webhook_url: must look like https://{portal}/rest/{user_id}/{code}/")
        for name, target in self.fields.items():
            if name not in FIELD_KEYS:
                raise ValueError(f"fields: {name!r} is not one of {', '.join(FIELD_KEYS)}")
            if not target.startswith("UF_CRM_"):
                raise ValueError(f"fields: {name} must name a UF_CRM_... field")


@dataclass(frozen=True)
class _Entity:
    type: Literal["LEAD", "DEAL", "CONTACT", "COMPANY"]
    id: int
    created: bool = False


def _label(call: LeadCall) -> str:
    return " / ".join(part for part in (call.source, call.medium) if part) or "no source"


def tracking_fields(call: LeadCall, config: Bitrix24Config) -> dict[str, Any]:
    """Source and UTM fields every entity we add carries, mapped to the portal's names."""
    return {
        "SOURCE_ID": config.source_ids.get(call.source, config.source_id),
        "SOURCE_DESCRIPTION": f"Tracked number {call.tracking_number} ({call.site_name})",
        "UTM_SOURCE": config.utm_sources.get(call.source, call.source),
        "UTM_MEDIUM": call.medium,
        "UTM_CAMPAIGN": call.campaign,
        "UTM_CONTENT": call.content,
        "UTM_TERM": call.keyword,
        "ASSIGNED_BY_ID": _user_for(call, config),
        "OPENED": "Y",
        "ORIGINATOR_ID": config.originator_id,
        "ORIGIN_ID": call.external_id,
    }


def click_values(call: LeadCall) -> dict[str, str]:
    """Our ids of the visit that ad platforms and analytics know it by (FIELD_KEYS)."""
    values = {"call_id": str(call.call_id)}
    visit = call.visit
    if visit is not None:
        if visit.click_id and visit.click_id_type in ("gclid", "gbraid", "wbraid", "yclid"):
            values[visit.click_id_type] = visit.click_id
        values["ga_client_id"] = visit.ga_client_id
        values["ym_client_id"] = visit.ym_client_id
    return {key: value for key, value in values.items() if value}


def user_fields(call: LeadCall, config: Bitrix24Config) -> dict[str, str]:
    values = click_values(call)
    return {target: values[name] for name, target in config.fields.items() if name in values}


def comments(call: LeadCall) -> str:
    lines = [f"Call {call.status}, talked {call.talk_seconds} s, attribution {call.attribution}."]
    if call.recording_url:
        lines.append(f"Recording: {call.recording_url}")
    if call.visit is not None and call.visit.landing_url:
        lines.append(f"Landing page: {call.visit.landing_url}")
    if call.visit is not None and call.visit.referrer:
        lines.append(f"Referrer: {call.visit.referrer}")
    return "\n".join(lines)


def trace_of(call: LeadCall, config: Bitrix24Config) -> str:
    """The TRACE of crm.tracking.trace.add: the visit's source and landing page, as JSON text."""
    trace: dict[str, Any] = {
        "SOURCE_DESC": " / ".join(p for p in (call.source, call.medium, call.campaign) if p)
        or "calltracker",
    }
    source = config.trace_sources.get(call.source)
    if source:
        trace["SOURCE_ID"] = source
    visit = call.visit
    if visit is not None and visit.landing_url:
        visited = visit.visited_at or call.started_at
        trace["PAGES"] = [{"URL": visit.landing_url, "DATE": iso_utc(visited)}]
    return json.dumps(trace, ensure_ascii=False)


def lead_fields(
    call: LeadCall, config: Bitrix24Config, *, contact_id: int | None = None
) -> dict[str, Any]:
    """The ``fields`` of crm.lead.add for a call."""
    who = call.caller or "a hidden number"
    fields: dict[str, Any] = {
        "TITLE": f"Call from {who} ({_label(call)})",
        **tracking_fields(call, config),
        "COMMENTS": comments(call),
        **user_fields(call, config),
    }
    if call.caller:
        fields["NAME"] = call.caller
        fields["PHONE"] = [{"VALUE": call.caller, "VALUE_TYPE": "WORK"}]
    if contact_id is not None:
        fields["CONTACT_ID"] = contact_id
    return fields


def contact_fields(call: LeadCall, config: Bitrix24Config) -> dict[str, Any]:
    """The ``fields`` of crm.contact.add for a caller of a portal without leads."""
    fields: dict[str, Any] = {"NAME": call.caller, **tracking_fields(call, config)}
    fields["PHONE"] = [{"VALUE": call.caller, "VALUE_TYPE": "WORK"}]
    return fields


def deal_fields(call: LeadCall, config: Bitrix24Config, contact_id: int) -> dict[str, Any]:
    """The ``fields`` of crm.deal.add for a call to a portal without leads."""
    fields: dict[str, Any] = {
        "TITLE": f"Call from {call.caller} ({_label(call)})",
        "CONTACT_ID": contact_id,
        **tracking_fields(call, config),
        "COMMENTS": comments(call),
        **user_fields(call, config),
    }
    if config.deal_category_id is not None:
        fields["CATEGORY_ID"] = config.deal_category_id
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
        self._mode: Literal["classic", "simple"] | None = (
            None if self.config.crm_mode == "auto" else self.config.crm_mode
        )

    def __repr__(self) -> str:
        return f"Bitrix24Adapter(host={self._host!r})"

    async def deliver(self, call: LeadCall, idempotency_key: str) -> DeliveryResult:
        if call.stage not in self.config.stages:
            return DeliveryResult(skipped=f"stage {call.stage} is not enabled")
        if await self.crm_mode() == "simple" and call.caller:
            entity, ids, created = await self._find_or_create_deal(call)
        else:
            entity, ids = await self._find_or_create_lead(call)
            created = [entity] if entity.created else []
        if created and self.config.trace and call.visit is not None:
            ids.update(await self._attach_trace(call, created))
        if call.stage == "hangup":
            ids.update(await self._log_call(call, entity))
        log.info(
            "bitrix24 delivered call_id=%s key=%s entity=%s:%s created=%s",
            call.call_id,
            idempotency_key,
            entity.type,
            entity.id,
            ",".join(e.type for e in created) or "-",
        )
        return DeliveryResult(remote_ids=ids)

    async def crm_mode(self) -> Literal["classic", "simple"]:
        """Classic (with leads) or simple (contacts and deals only), as the portal says."""
        if self._mode is None:
            mode = await self.call("crm.settings.mode.get", {})
            # 1 classic, 2 without leads (crm.enum.settings.mode).
            self._mode = "simple" if str(mode) == "2" else "classic"
            log.info("bitrix24 crm mode host=%s mode=%s", self._host, self._mode)
        return self._mode

    def _origin(self, call: LeadCall) -> dict[str, Any]:
        return {"ORIGINATOR_ID": self.config.originator_id, "ORIGIN_ID": call.external_id}

    async def _own(self, method: str, call: LeadCall, *extra: str) -> dict[str, Any] | None:
        """Our own entity for this call (a retry, or the hangup after the ring), if any."""
        rows = await self.call(method, {"filter": self._origin(call), "select": ["ID", *extra]})
        found = [r for r in rows if isinstance(r, dict) and str(r.get("ID", "")).isdigit()]
        return min(found, key=lambda r: int(r["ID"])) if found else None

    async def _find_or_create_lead(self, call: LeadCall) -> tuple[_Entity, dict[str, str]]:
        own = await self._own("crm.lead.list", call)
        if own is not None:
            return _Entity("LEAD", int(own["ID"])), {"lead_id": str(own["ID"])}

        known = await self._find_by_phone(call.caller) if call.caller else None
        if known is not None and self.config.repeat_caller == "attach":
            return known, {f"{known.type.lower()}_id": str(known.id)}

        contact_id = known.id if known is not None and known.type == "CONTACT" else None
        lead_id = _new_id(
            "crm.lead.add",
            await self.call(
                "crm.lead.add",
                {
                    "fields": lead_fields(call, self.config, contact_id=contact_id),
                    "params": self._sonet(),
                },
            ),
        )
        ids = {"lead_id": str(lead_id)}
        if contact_id is not None:
            ids["contact_id"] = str(contact_id)
        return _Entity("LEAD", lead_id, created=True), ids

    def _sonet(self) -> dict[str, str]:
        return {"REGISTER_SONET_EVENT": "Y" if self.config.register_sonet_event else "N"}

    async def _find_or_create_deal(
        self, call: LeadCall
    ) -> tuple[_Entity, dict[str, str], list[_Entity]]:
        """A portal without leads: the caller's contact and a deal (entity to log the call on,
        remote ids, what was created now)."""
        own = await self._own("crm.deal.list", call, "CONTACT_ID")
        if own is not None:
            ids = {"deal_id": str(own["ID"])}
            own_contact_id = str(own.get("CONTACT_ID") or "")
            if own_contact_id.isdigit():
                ids["contact_id"] = own_contact_id
                return _Entity("CONTACT", int(own_contact_id)), ids, []
            return _Entity("DEAL", int(own["ID"])), ids, []
        created: list[_Entity] = []
        own_contact = await self._own("crm.contact.list", call)
        if own_contact is not None:
            contact = _Entity("CONTACT", int(own_contact["ID"]))
        else:
            known = await self._find_by_phone(call.caller)
            if known is not None and self.config.repeat_caller == "attach":
                return known, {f"{known.type.lower()}_id": str(known.id)}, []
            if known is not None and known.type == "CONTACT":
                contact = known
            else:
                contact_id = _new_id(
                    "crm.contact.add",
                    await self.call(
                        "crm.contact.add",
                        {"fields": contact_fields(call, self.config), "params": self._sonet()},
                    ),
                )
                contact = _Entity("CONTACT", contact_id, created=True)
                created.append(contact)
        deal_id = _new_id(
            "crm.deal.add",
            await self.call(
                "crm.deal.add",
                {
                    "fields": deal_fields(call, self.config, contact.id),
                    "params": self._sonet(),
                },
            ),
        )
        created.append(_Entity("DEAL", deal_id, created=True))
        return contact, {"deal_id": str(deal_id), "contact_id": str(contact.id)}, created

    async def _attach_trace(self, call: LeadCall, entities: list[_Entity]) -> dict[str, str]:
        """Bitrix24's own end-to-end analytics counts our leads only with a trace on them."""
        try:
            trace_id = await self.call(
                "crm.tracking.trace.add",
                {
                    "TRACE": trace_of(call, self.config),
                    "ENTITIES": [{"TYPE": e.type, "ID": e.id} for e in entities],
                },
            )
        except (PermanentError, AuthError) as err:
            # The lead is there already; a portal without Sales Intelligence must not lose it.
            log.warning(
                "bitrix24 trace not attached call_id=%s host=%s error=%s",
                call.call_id,
                self._host,
                err.message,
            )
            return {"trace_error": err.message[:200]}
        return {"trace_id": str(trace_id)}

    async def _find_by_phone(self, phone: str) -> _Entity | None:
        result = await self.call("crm.duplicate.findbycomm", {"type": "PHONE", "values": [phone]})
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
        params: dict[str, Any] = {
            "USER_ID": user_id,
            "PHONE_NUMBER": call.caller,
            "TYPE": 2,
            "CALL_START_DATE": iso_utc(call.started_at),
            "CRM_CREATE": 0,
            "CRM_SOURCE": self.config.source_id,
            "SHOW": 0,
            "ADD_TO_CHAT": 0,
            "LINE_NUMBER": call.tracking_number,
            # Same id within 30 min returns the same CALL_ID, so a retry does not add a call.
            "EXTERNAL_CALL_ID": call.external_id,
        }
        if entity.type != "DEAL":  # register binds to a contact, company or lead only
            params.update(CRM_ENTITY_TYPE=entity.type, CRM_ENTITY_ID=entity.id)
        registered = await self.call("telephony.externalCall.register", params, app=True)
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
            await self.call("telephony.externalCall.finish", finish, app=True)
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
            await self.call(
                "telephony.externalCall.attachRecord",
                {"CALL_ID": call_id, "RECORD_URL": call.recording_url},
                app=True,
            )
        return {"call_id": call_id}

    async def _add_activity(self, call: LeadCall, entity: _Entity) -> dict[str, str]:
        origin = {"ORIGINATOR_ID": self.config.originator_id, "ORIGIN_ID": call.external_id}
        existing = await self.call("crm.activity.list", {"filter": origin, "select": ["ID"]})
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
        activity_id = await self.call(
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

    async def call(self, method: str, params: dict[str, Any], *, app: bool = False) -> Any:
        """Call one REST method and return its ``result``, or raise from the error tree."""
        return (await self.request(method, params, app=app))["result"]

    async def request(
        self, method: str, params: dict[str, Any], *, app: bool = False
    ) -> dict[str, Any]:
        """Call one REST method; the whole answer (``result``, and ``next`` of list methods)."""
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
                return data
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
        if self._tokens is not None:
            await self._tokens.save(
                {
                    "app": {
                        "access_token": self._access_token.reveal(),
                        "refresh_token": self._refresh_token.reveal(),
                    }
                }
            )


def _new_id(method: str, result: Any) -> int:
    if isinstance(result, bool) or not str(result).isdigit():
        raise TemporaryError(f"bitrix24 {method}: unexpected result {str(result)[:100]!r}")
    return int(result)


def _error_of(data: Any) -> tuple[str, str]:
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("error") or ""), str(data.get("error_description") or "")[:500]
