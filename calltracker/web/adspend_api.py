"""Private JSON API for ad spend from the platforms: ad accounts (admin), unmapped spend and
the campaign mapping (marketer), currency rates (marketer reads, admin writes)."""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from calltracker.accounts.roles import Role
from calltracker.adspend import accounts, store
from calltracker.catalog import sites
from calltracker.clock import utcnow
from calltracker.db.adspend_models import CampaignMapping
from calltracker.errors import Invalid
from calltracker.keys import sessionmaker_key
from calltracker.reports import money, rates
from calltracker.reports.rows import BadRows
from calltracker.web.auth import roles
from calltracker.web.catalog_api import field, json_body
from calltracker.web.reports import (
    CSV_TYPES,
    bad_rows,
    local_today,
    parse_day,
    report_params,
    upload_text,
)

ID = r"{account:\d+}"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/ad-accounts", list_accounts)
    r.add_post("/api/v1/ad-accounts", create_account)
    r.add_get(f"/api/v1/ad-accounts/{ID}", get_account)
    r.add_patch(f"/api/v1/ad-accounts/{ID}", update_account)
    r.add_delete(f"/api/v1/ad-accounts/{ID}", delete_account)
    r.add_post(f"/api/v1/ad-accounts/{ID}/sync", sync_account)
    r.add_get("/api/v1/spend/unmapped", list_unmapped)
    r.add_get("/api/v1/ad-mappings", list_mappings)
    r.add_put("/api/v1/ad-mappings", put_mapping)
    r.add_delete(r"/api/v1/ad-mappings/{mapping:\d+}", delete_mapping)
    r.add_get("/api/v1/currency-rates", list_rates)
    r.add_post("/api/v1/currency-rates", post_rates)


def _account_id(request: web.Request) -> int:
    return int(request.match_info["account"])


def _site_ref(value: object) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise Invalid("site is required: the site's key or id", code="invalid_field")
    return str(value).strip()


# --- ad accounts (admin) --------------------------------------------------------------------


async def list_accounts(request: web.Request) -> web.Response:
    """Ad accounts with their sync status; ?site=key-or-id narrows to one site."""
    async with request.app[sessionmaker_key]() as session:
        site_id = None
        if request.query.get("site"):
            site_id = (await sites.get_site(session, request.query["site"])).id
        rows = await accounts.list_accounts(session, site_id)
    return web.json_response({"ad_accounts": [accounts.public_view(a) for a in rows]})


async def create_account(request: web.Request) -> web.Response:
    """Body: site, platform, name, config; optionally enabled, interval_minutes, lookback_days."""
    data = await json_body(request)
    async with request.app[sessionmaker_key].begin() as session:
        site = await sites.get_site(session, _site_ref(data.get("site")))
        account = await accounts.create_account(
            session,
            site_id=site.id,
            platform=field(data, "platform", str),
            name=field(data, "name", str),
            config=field(data, "config", dict),
            enabled=field(data, "enabled", bool, True),
            interval_minutes=field(data, "interval_minutes", int, 180),
            lookback_days=field(data, "lookback_days", int, 7),
        )
        body = accounts.public_view(account)
    return web.json_response(body, status=201)


async def get_account(request: web.Request) -> web.Response:
    """One ad account, its status and its alert, if any."""
    async with request.app[sessionmaker_key]() as session:
        account = await accounts.get_account(session, _account_id(request))
    return web.json_response(accounts.public_view(account))


async def update_account(request: web.Request) -> web.Response:
    """Body: any of name, config (merged; omitted secrets kept), enabled, interval_minutes,
    lookback_days. New credentials make the account due at once."""
    data = await json_body(request)
    async with request.app[sessionmaker_key].begin() as session:
        account = await accounts.get_account(session, _account_id(request))
        await accounts.update_account(
            session,
            account,
            name=field(data, "name", str, None),
            config_patch=field(data, "config", dict, None),
            enabled=field(data, "enabled", bool, None),
            interval_minutes=field(data, "interval_minutes", int, None),
            lookback_days=field(data, "lookback_days", int, None),
        )
        body = accounts.public_view(account)
    return web.json_response(body)


async def delete_account(request: web.Request) -> web.Response:
    """Remove an ad account with the spend it pulled."""
    async with request.app[sessionmaker_key].begin() as session:
        account = await accounts.get_account(session, _account_id(request))
        await accounts.delete_account(session, account)
    return web.Response(status=204)


async def sync_account(request: web.Request) -> web.Response:
    """Make the account due now: the server's sync pulls it within a tick (202)."""
    async with request.app[sessionmaker_key].begin() as session:
        account = await accounts.get_account(session, _account_id(request))
        await accounts.request_sync(session, account)
        body = accounts.public_view(account)
    return web.json_response(body, status=202)


# --- unmapped spend and the mapping (marketer) --------------------------------------------


def unmapped_json(row: store.UnmappedCampaign) -> dict[str, Any]:
    return {
        "account_id": row.account_id,
        "account": row.account_name,
        "platform": row.platform,
        "campaign_id": row.campaign_id,
        "campaign_name": row.campaign_name,
        "currency": row.currency,
        "amount": float(money.major(row.cost)),
        "impressions": row.impressions,
        "clicks": row.clicks,
        "from": row.first_day.isoformat(),
        "to": row.last_day.isoformat(),
        "tracking": row.tracking,
    }


@roles(Role.MARKETER)
async def list_unmapped(request: web.Request) -> web.Response:
    """Pulled spend of ?site=&from=&to= that maps to no labels, per platform campaign."""
    async with request.app[sessionmaker_key]() as session:
        site = await sites.get_site(session, _site_ref(request.query.get("site")))
        params = report_params(request.query, local_today(site))
        rows = await store.unmapped(session, site.id, params.first_day, params.last_day)
    return web.json_response(
        {
            "site": site.key,
            "from": params.first_day.isoformat(),
            "to": params.last_day.isoformat(),
            "campaigns": [unmapped_json(r) for r in rows],
        }
    )


def mapping_json(m: CampaignMapping) -> dict[str, Any]:
    return {
        "id": m.id,
        "site_id": m.site_id,
        "platform": m.platform,
        "campaign_id": m.campaign_id,
        "source": m.source,
        "medium": m.medium,
        "campaign": m.campaign,
        "updated_at": m.updated_at.isoformat(),
    }


@roles(Role.MARKETER)
async def list_mappings(request: web.Request) -> web.Response:
    """The mapping table of ?site=: (platform, campaign id) -> source, medium, campaign."""
    async with request.app[sessionmaker_key]() as session:
        site = await sites.get_site(session, _site_ref(request.query.get("site")))
        rows = await store.list_mappings(session, site.id)
    return web.json_response({"site": site.key, "mappings": [mapping_json(m) for m in rows]})


@roles(Role.MARKETER)
async def put_mapping(request: web.Request) -> web.Response:
    """Body: site, platform, campaign_id, source, medium, campaign. Stored pulls are re-mapped."""
    data = await json_body(request)
    async with request.app[sessionmaker_key].begin() as session:
        site = await sites.get_site(session, _site_ref(data.get("site")))
        found, remapped = await store.set_mapping(
            session,
            site_id=site.id,
            platform=field(data, "platform", str),
            campaign_id=data.get("campaign_id"),
            source=data.get("source"),
            medium=data.get("medium"),
            campaign=data.get("campaign", ""),
            now=utcnow(),
        )
        body = mapping_json(found) | {"rows_remapped": remapped}
    return web.json_response(body)


@roles(Role.MARKETER)
async def delete_mapping(request: web.Request) -> web.Response:
    """Forget a mapping; its campaign's rows fall back to tracking parameters or unmapped."""
    async with request.app[sessionmaker_key].begin() as session:
        remapped = await store.delete_mapping(session, int(request.match_info["mapping"]), utcnow())
    return web.json_response({"rows_remapped": remapped})


# --- currency rates -------------------------------------------------------------------------


def rate_json(rate: rates.Rate) -> dict[str, Any]:
    return {
        "date": rate.day.isoformat(),
        "currency": rate.currency,
        "base": rate.base,
        "rate": rates.rate_text(rate.rate),
        "source": rate.source,
    }


@roles(Role.MARKETER)
async def list_rates(request: web.Request) -> web.Response:
    """Stored rates, newest first; ?currency=USD&from=&to= narrow them."""
    first = parse_day(request.query["from"], "from") if request.query.get("from") else None
    last = parse_day(request.query["to"], "to") if request.query.get("to") else None
    currency = request.query.get("currency") or None
    if currency:
        try:
            currency = money.parse_currency(currency)
        except ValueError as err:
            raise Invalid(str(err), code="invalid_field") from None
    async with request.app[sessionmaker_key]() as session:
        found = await rates.list_rates(session, currency=currency, first=first, last=last)
    return web.json_response({"rates": [rate_json(r) for r in found]})


async def post_rates(request: web.Request) -> web.Response:
    """JSON {"rates": [{date, currency, rate, base, source}]} or a CSV with those columns:
    1 currency = rate base on that date. A day's rate replaces the one stored."""
    try:
        if request.content_type == "application/json":
            data = await json_body(request)
            batch = rates.parse_json_rows(data.get("rates"))
        elif request.content_type in CSV_TYPES | {"multipart/form-data"}:
            text, _ = await upload_text(request)
            batch = rates.parse_csv(text)
        else:
            raise Invalid("send JSON, text/csv or a multipart upload", code="unsupported_type")
        async with request.app[sessionmaker_key].begin() as session:
            stored = await rates.store_rates(session, batch, "import")
    except BadRows as err:
        return bad_rows(err)
    days: list[date] = [r.day for r in batch.items]
    return web.json_response(
        {"stored": stored, "from": min(days).isoformat(), "to": max(days).isoformat()}
    )
