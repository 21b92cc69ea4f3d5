"""Private JSON API for integrations and their outbox (admin role); secrets are never returned."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.catalog import sites
from calltracker.clock import utcnow
from calltracker.db.integration_models import Integration, OutboxRow
from calltracker.integrations import config, registry
from calltracker.integrations.errors import ConfigError
from calltracker.integrations.outbox import store
from calltracker.integrations.outbox.policy import STATES
from calltracker.keys import outbox_key, sessionmaker_key
from calltracker.web import crm_hooks
from calltracker.web.bodies import api

ID = r"{integration:\d+}"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/integrations", list_integrations)
    r.add_post("/api/v1/integrations", create_integration)
    r.add_get(f"/api/v1/integrations/{ID}", get_integration)
    r.add_patch(f"/api/v1/integrations/{ID}", update_integration)
    r.add_delete(f"/api/v1/integrations/{ID}", delete_integration)
    r.add_get(f"/api/v1/integrations/{ID}/outbox", list_outbox)
    r.add_post(f"/api/v1/integrations/{ID}/retry", retry_outbox)


SiteRef = str | int  # a site's key or id


class IntegrationInput(msgspec.Struct, frozen=True):
    """A new integration of a site; ``config`` is the kind's model (docs/integrations.md)."""

    site: SiteRef
    kind: str
    name: str
    config: dict[str, Any]
    trigger: str = "every"
    stage: str = "hangup"
    enabled: bool = True


class IntegrationPatch(msgspec.Struct, frozen=True):
    """Changes to an integration: ``config`` is merged, so secrets left out are kept."""

    name: str | None = None
    config: dict[str, Any] | None = None  # a null field inside removes it
    trigger: str | None = None
    stage: str | None = None
    enabled: bool | None = None


class RetryInput(msgspec.Struct, frozen=True):
    dead: bool = False  # dead rows too, not just failed ones


class OutboxRowView(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery of one call to one integration."""

    id: int
    call_id: int
    stage: str
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    error_kind: str
    remote_ids: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class IntegrationView(msgspec.Struct, frozen=True, kw_only=True):
    """An integration as the API shows it: its config without secret values."""

    id: int
    site_id: int
    kind: str
    name: str
    trigger: str
    stage: str
    enabled: bool
    config: dict[str, Any]  # every field but the secrets
    secrets_set: list[str]  # the secret fields that have a value
    created_at: datetime
    updated_at: datetime
    outbox: store.Counts
    warnings: list[str]  # what to act on before deliveries stop (a token about to lapse)
    # A CRM whose deals come back: the path, after PUBLIC_URL, of its outgoing webhook.
    events_path: str | None


class IntegrationDetail(IntegrationView, frozen=True, kw_only=True):
    last_errors: list[OutboxRowView]


class Integrations(msgspec.Struct, frozen=True):
    integrations: list[IntegrationView]


class OutboxRows(msgspec.Struct, frozen=True):
    rows: list[OutboxRowView]


class Retried(msgspec.Struct, frozen=True):
    retried: int  # rows due again now


class OutboxQuery(msgspec.Struct, frozen=True):
    state: Annotated[str, msgspec.Meta(description=" | ".join(STATES))] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"state: must be one of {', '.join(STATES)}")


class SiteQuery(msgspec.Struct, frozen=True):
    site: str | None = None  # a site's key or id: only its integrations


def row_view(row: OutboxRow) -> OutboxRowView:
    return msgspec.convert(row, OutboxRowView, from_attributes=True)


def _parsed(integration: Integration) -> object:
    try:
        return registry.parse_config(integration.kind, integration.config)
    except ConfigError:
        return None


def integration_view(integration: Integration, counts: store.Counts) -> IntegrationView:
    shown, secrets_set = config.masked_config(integration.kind, integration.config)
    parsed = _parsed(integration)
    return IntegrationView(
        id=integration.id,
        site_id=integration.site_id,
        kind=integration.kind,
        name=integration.name,
        trigger=integration.trigger,
        stage=integration.stage,
        enabled=integration.enabled,
        config=shown,
        secrets_set=secrets_set,
        created_at=integration.created_at,
        updated_at=integration.updated_at,
        outbox=counts,
        warnings=registry.warnings(integration.kind, integration.config, utcnow()),
        events_path=crm_hooks.events_path(integration.kind, integration.id, parsed),
    )


def _integration_id(request: web.Request) -> int:
    return int(request.match_info["integration"])


def _wake(request: web.Request) -> None:
    workers = request.app.get(outbox_key)
    if workers is not None:
        workers.wake()


async def _detail(session: AsyncSession, integration: Integration) -> IntegrationDetail:
    tally = await store.counts(session, [integration.id])
    errors = await store.last_errors(session, integration.id)
    view = integration_view(integration, tally.get(integration.id, store.Counts()))
    return IntegrationDetail(
        **msgspec.structs.asdict(view), last_errors=[row_view(r) for r in errors]
    )


@api()
async def list_integrations(request: web.Request, query: SiteQuery) -> Integrations:
    """Integrations with their outbox counts; ?site=key-or-id narrows to one site."""
    async with request.app[sessionmaker_key]() as session:
        site_id = None
        if query.site:
            site_id = (await sites.get_site(session, query.site)).id
        rows = await config.list_integrations(session, site_id)
        tally = await store.counts(session, [i.id for i in rows])
    return Integrations([integration_view(i, tally.get(i.id, store.Counts())) for i in rows])


@api(status=201)
async def create_integration(request: web.Request, body: IntegrationInput) -> IntegrationView:
    """Add an integration to a site; its config is checked by the kind's model."""
    async with request.app[sessionmaker_key].begin() as session:
        site = await sites.get_site(session, body.site)
        integration = await config.create_integration(
            session,
            site_id=site.id,
            kind=body.kind,
            name=body.name,
            config=body.config,
            trigger=body.trigger,
            stage=body.stage,
            enabled=body.enabled,
        )
    return integration_view(integration, store.Counts())


@api()
async def get_integration(request: web.Request) -> IntegrationDetail:
    """One integration, its outbox counts and its latest errors."""
    async with request.app[sessionmaker_key]() as session:
        integration = await config.get_integration(session, _integration_id(request))
        return await _detail(session, integration)


@api()
async def update_integration(request: web.Request, body: IntegrationPatch) -> IntegrationDetail:
    """Change any of name, config (merged; omitted secrets kept), trigger, stage, enabled."""
    async with request.app[sessionmaker_key].begin() as session:
        integration = await config.get_integration(session, _integration_id(request))
        await config.update_integration(
            session,
            integration,
            name=body.name,
            config_patch=body.config,
            trigger=body.trigger,
            stage=body.stage,
            enabled=body.enabled,
        )
        detail = await _detail(session, integration)
    _wake(request)
    return detail


@api()
async def delete_integration(request: web.Request) -> None:
    """Remove an integration and its outbox rows."""
    async with request.app[sessionmaker_key].begin() as session:
        integration = await config.get_integration(session, _integration_id(request))
        await config.delete_integration(session, integration)


@api()
async def list_outbox(request: web.Request, query: OutboxQuery) -> OutboxRows:
    """Outbox rows, newest first; ?state=pending|sending|done|failed|dead, ?limit, ?offset."""
    async with request.app[sessionmaker_key]() as session:
        integration = await config.get_integration(session, _integration_id(request))
        rows = await store.list_rows(
            session, integration.id, state=query.state, limit=query.limit, offset=query.offset
        )
    return OutboxRows([row_view(r) for r in rows])


@api()
async def retry_outbox(request: web.Request, body: RetryInput) -> Retried:
    """Failed rows are due again now; with {"dead": true} dead rows too."""
    async with request.app[sessionmaker_key].begin() as session:
        integration = await config.get_integration(session, _integration_id(request))
        count = await store.retry(session, integration.id, utcnow(), dead=body.dead)
    _wake(request)
    return Retried(count)
