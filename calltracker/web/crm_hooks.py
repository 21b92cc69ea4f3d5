"""The CRMs' outgoing webhooks: public routes, checked by the CRM's own token, that only name
the deals to read (deals/sync.py reads them through the CRM's API, with retries).

A post is answered at once: amoCRM gives a webhook two seconds, and a slow answer counts as a
failure on both sides. A post naming the same deal twice, or posted twice, queues it once.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from calltracker.clock import utcnow
from calltracker.db.integration_models import Integration
from calltracker.deals import hooks
from calltracker.deals.hooks import Named
from calltracker.deals.sync import name_records
from calltracker.errors import Invalid, NotFound
from calltracker.integrations import registry
from calltracker.integrations.amocrm import AmoCrmConfig
from calltracker.integrations.bitrix24 import Bitrix24Config
from calltracker.integrations.errors import ConfigError
from calltracker.keys import sessionmaker_key
from calltracker.web.auth import public
from calltracker.web.bodies import FORM, Refusal, api
from calltracker.web.errors import ErrorBody

log = logging.getLogger(__name__)

BITRIX = r"/api/v1/crm/bitrix24/{integration:\d+}/events"
AMO = r"/api/v1/crm/amocrm/{integration:\d+}/{secret}/events"
MAX_FORM = 256 * 1024  # a webhook post: a few kilobytes


def events_path(kind: str, integration_id: int, config: object) -> str | None:
    """Where the CRM posts its events, to give its admin; None unless deals are read back."""
    if getattr(config, "deals", None) is None:
        return None
    if kind == "bitrix24":
        return BITRIX.replace(r"{integration:\d+}", str(integration_id))
    if kind == "amocrm":
        # The secret is not shown back: the admin set it and puts it in place of the braces.
        return AMO.replace(r"{integration:\d+}", str(integration_id)).replace(
            "{secret}", "{webhook_secret}"
        )
    return None


def add_routes(app: web.Application) -> None:
    app.router.add_post(BITRIX, bitrix24_events)
    app.router.add_post(AMO, amocrm_events)


class Accepted(msgspec.Struct, frozen=True):
    """The post was read; ``queued`` records will be fetched from the CRM."""

    queued: int
    event: str


WebhookBody = dict[str, Any]  # a JSON post, flattened to the form's bracketed keys


async def _fields(request: web.Request, body: WebhookBody | None) -> dict[str, str]:
    if body is not None:
        return dict(hooks.flatten(body))
    if request.content_type != FORM:
        raise Invalid("send the webhook as a form (application/x-www-form-urlencoded)")
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise Invalid("the webhook post is too large")
    try:
        form = await request.post()
    except ValueError:  # undecodable bytes (UnicodeDecodeError is one)
        raise Invalid("the webhook post is not a readable form") from None
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def _config(request: web.Request, kind: str) -> tuple[int, Any]:
    integration_id = int(request.match_info["integration"])
    async with request.app[sessionmaker_key]() as session:
        integration = await session.get(Integration, integration_id)
    if integration is None or integration.kind != kind or not integration.enabled:
        raise NotFound(
            f"no enabled {kind} integration {integration_id}", code="unknown_integration"
        )
    try:
        config = registry.parse_config(kind, integration.config)
    except ConfigError:
        raise NotFound(f"integration {integration_id} has an invalid config") from None
    if getattr(config, "deals", None) is None:
        raise NotFound(f"integration {integration_id} does not read deals back")
    return integration_id, config


async def _queue(request: web.Request, integration_id: int, named: Named) -> Accepted:
    try:
        async with request.app[sessionmaker_key].begin() as session:
            queued = await name_records(session, integration_id, named.records, utcnow())
    except SQLAlchemyError:
        # Not the post's fault: the CRM retries a failed webhook, so it is not lost.
        log.exception("event=crm_webhook_store_failed integration_id=%s", integration_id)
        raise Refusal(
            503, ErrorBody("unavailable", "the database is unavailable; retry later")
        ) from None
    log.info(
        "event=crm_webhook integration_id=%s event=%s queued=%s",
        integration_id,
        named.event,
        queued,
    )
    return Accepted(queued, named.event)


@public  # the CRM's token (Bitrix24) or the URL's secret (amoCRM) is the credential
@api(accepts=(FORM,), errors={503: ErrorBody})
async def bitrix24_events(request: web.Request, body: WebhookBody | None) -> Accepted:
    """An event of a Bitrix24 outgoing webhook: ONCRMDEALADD/UPDATE/DELETE, ONCRMLEADUPDATE."""
    integration_id, config = await _config(request, "bitrix24")
    assert isinstance(config, Bitrix24Config) and config.deals is not None
    token = config.deals.application_token
    named = hooks.bitrix24(await _fields(request, body), token.reveal() if token else "")
    return await _queue(request, integration_id, named)


@public
@api(accepts=(FORM,), errors={503: ErrorBody})
async def amocrm_events(request: web.Request, body: WebhookBody | None) -> Accepted:
    """An amoCRM webhook post: leads[add|update|status|delete][n][id]."""
    integration_id, config = await _config(request, "amocrm")
    assert isinstance(config, AmoCrmConfig) and config.deals is not None
    secret = config.deals.webhook_secret
    named = hooks.amocrm(
        await _fields(request, body),
        request.match_info["secret"],
        secret.reveal() if secret else "",
    )
    return await _queue(request, integration_id, named)
