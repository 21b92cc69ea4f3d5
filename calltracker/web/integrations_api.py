"""Private JSON API for integrations and their outbox (admin role); secrets are never returned."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from calltracker.catalog import sites
from calltracker.clock import utcnow
from calltracker.db.integration_models import Integration, OutboxRow
from calltracker.errors import Invalid
from calltracker.integrations import config
from calltracker.integrations.outbox import store
from calltracker.integrations.outbox.policy import STATES
from calltracker.keys import outbox_key, sessionmaker_key
from calltracker.web.catalog_api import field, json_body

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


def row_json(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "call_id": row.call_id,
        "stage": row.stage,
        "idempotency_key": row.idempotency_key,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat(),
        "last_error": row.last_error,
        "error_kind": row.error_kind,
        "remote_ids": row.remote_ids,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
    }


def _integration_id(request: web.Request) -> int:
    return int(request.match_info["integration"])


def _wake(request: web.Request) -> None:
    workers = request.app.get(outbox_key)
    if workers is not None:
        workers.wake()


async def _view(session: Any, integration: Integration, *, errors: bool) -> dict[str, Any]:
    body = config.public_view(integration)
    tally = await store.counts(session, [integration.id])
    body["outbox"] = tally.get(integration.id, store.Counts()).as_dict()
    if errors:
        body["last_errors"] = [
            row_json(r) for r in await store.last_errors(session, integration.id)
        ]
    return body


async def list_integrations(request: web.Request) -> web.Response:
    """Integrations with their outbox counts; ?site=key-or-id narrows to one site."""
    async with request.app[sessionmaker_key]() as session:
        site_id = None
        if request.query.get("site"):
            site_id = (await sites.get_site(session, request.query["site"])).id
        rows = await config.list_integrations(session, site_id)
        tally = await store.counts(session, [i.id for i in rows])
    body = []
    for integration in rows:
        view = config.public_view(integration)
        view["outbox"] = tally.get(integration.id, store.Counts()).as_dict()
        body.append(view)
    return web.json_response({"integrations": body})


async def create_integration(request: web.Request) -> web.Response:
    """Body: site, kind, name, config, and optionally trigger, stage, enabled."""
    data = await json_body(request)
    site_ref = data.get("site")
    if not isinstance(site_ref, str | int) or isinstance(site_ref, bool):
        raise Invalid("site is required: the site's key or id", code="invalid_field")
    async with request.app[sessionmaker_key].begin() as session:
        site = await sites.get_site(session, site_ref)
        integration = await config.create_integration(
            session,
            site_id=site.id,
            kind=field(data, "kind", str),
            name=field(data, "name", str),
            config=field(data, "config", dict),
            trigger=field(data, "trigger", str, "every"),
            stage=field(data, "stage", str, "hangup"),
            enabled=field(data, "enabled", bool, True),
        )
        body = await _view(session, integration, errors=False)
    return web.json_response(body, status=201)


async def get_integration(request: web.Request) -> web.Response:
    """One integration, its outbox counts and its latest errors."""
    async with request.app[sessionmaker_key]() as session:
        integration = await config.get_integration(session, _integration_id(request))
        body = await _view(session, integration, errors=True)
    return web.json_response(body)


async def update_integration(request: web.Request) -> web.Response:
    """Body: any of name, config (merged; omitted secrets kept), trigger, stage, enabled."""
    data = await json_body(request)
    async with request.app[sessionmaker_key].begin() as session:
        integration = await config.get_integration(session, _integration_id(request))
        await config.update_integration(
            session,
            integration,
            name=field(data, "name", str, None),
            config_patch=field(data, "config", dict, None),
            trigger=field(data, "trigger", str, None),
            stage=field(data, "stage", str, None),
            enabled=field(data, "enabled", bool, None),
        )
        body = await _view(session, integration, errors=True)
    _wake(request)
    return web.json_response(body)


async def delete_integration(request: web.Request) -> web.Response:
    """Remove an integration and its outbox rows."""
    async with request.app[sessionmaker_key].begin() as session:
        integration = await config.get_integration(session, _integration_id(request))
        await config.delete_integration(session, integration)
    return web.Response(status=204)


async def list_outbox(request: web.Request) -> web.Response:
    """Outbox rows, newest first; ?state=pending|sending|done|failed|dead, ?limit, ?offset."""
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        raise Invalid(f"state must be one of {', '.join(STATES)}", code="invalid_field")
    limit = _int_query(request, "limit", 100, 1, 1000)
    offset = _int_query(request, "offset", 0, 0, 10**9)
    async with request.app[sessionmaker_key]() as session:
        integration = await config.get_integration(session, _integration_id(request))
        rows = await store.list_rows(
            session, integration.id, state=state, limit=limit, offset=offset
        )
    return web.json_response({"rows": [row_json(r) for r in rows]})


async def retry_outbox(request: web.Request) -> web.Response:
    """Failed rows are due again now; with {"dead": true} dead rows too."""
    data = await json_body(request) if request.can_read_body else {}
    dead = field(data, "dead", bool, False)
    async with request.app[sessionmaker_key].begin() as session:
        integration = await config.get_integration(session, _integration_id(request))
        count = await store.retry(session, integration.id, utcnow(), dead=dead)
    _wake(request)
    return web.json_response({"retried": count})


def _int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise Invalid(f"{name} must be a whole number from {lo} to {hi}", code="invalid_field")
    return int(raw)
