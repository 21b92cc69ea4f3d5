"""Admin pages for the catalog: sites, pools, static numbers, CSV import, integrations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from calltracker.adspend import accounts as ad_accounts
from calltracker.adspend.registry import PLATFORMS
from calltracker.catalog import advice as pool_advice
from calltracker.catalog import edits, sites
from calltracker.clock import utcnow
from calltracker.db.integration_models import OutboxRow
from calltracker.db.models import Site
from calltracker.errors import CalltrackerError, Invalid
from calltracker.integrations import config as integration_config
from calltracker.integrations import registry
from calltracker.integrations.base import STAGES
from calltracker.integrations.outbox import store
from calltracker.integrations.registry import KINDS
from calltracker.keys import (
    catalog_service_key,
    outbox_key,
    pools_key,
    sessionmaker_key,
    settings_key,
)
from calltracker.web import pages
from calltracker.web.adspend_pages import AccountRow, account_rows
from number_pool import ExhaustionPolicy

POLICIES = [p.value for p in ExhaustionPolicy]


# -- sites --------------------------------------------------------------------------------


async def sites_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        rows = await sites.list_sites(session)
    return pages.render(request, "sites.html", {"sites": rows, "error": error}, status=status)


async def create_site(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        site = await request.app[catalog_service_key].create_site(
            key=pages.form_text(form, "key"),
            name=pages.form_text(form, "name"),
            domains=pages.form_lines(form, "domains"),
            default_number=pages.form_text(form, "default_number"),
            country=pages.form_text(form, "country"),
            timezone=pages.form_text(form, "timezone"),
        )
    except CalltrackerError as err:
        return await sites_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther(f"/admin/sites/{site.key}")


async def site_page(
    request: web.Request, *, error: str = "", notice: str = "", status: int = 200
) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        site = await sites.get_site(session, request.match_info["site"])
        pools = await sites.list_pools(session, site.id)
        numbers = await sites.list_numbers(session, site.id)
    sizes: dict[int, int] = {}
    for n in numbers:
        if n.pool_id is not None and n.active:
            sizes[n.pool_id] = sizes.get(n.pool_id, 0) + 1
    context = {
        "site": site,
        "pools": pools,
        "pool_sizes": sizes,
        "numbers": numbers,
        "policies": POLICIES,
        "snippet": edits.widget_snippet(site.key, request.app[settings_key].public_url),
        "error": error,
        "notice": notice or _notice(request),
    }
    return pages.render(request, "site.html", context, status=status)


def _notice(request: web.Request) -> str:
    return {"saved": "Saved.", "created": "Created.", "added": "Numbers added."}.get(
        request.query.get("done", ""), ""
    )


def _hold_seconds(form: MultiDictProxy[Any]) -> int | None:
    minutes = pages.form_int(form, "hold_minutes")
    return minutes * 60 if minutes is not None else None


async def update_site(request: web.Request) -> web.Response:
    form = await request.post()
    key = request.match_info["site"]
    try:
        site = await request.app[catalog_service_key].update_site(
            key,
            name=pages.form_text(form, "name"),
            domains=pages.form_lines(form, "domains"),
            default_number=pages.form_text(form, "default_number"),
            country=pages.form_text(form, "country") or None,
            timezone=pages.form_text(form, "timezone") or None,
            pooled_mediums=pages.form_lines(form, "pooled_mediums"),
            target_min_talk_seconds=pages.form_int(form, "target_min_talk_seconds"),
            unique_window_days=pages.form_int(form, "unique_window_days"),
            fallback_number_id=pages.form_int(form, "fallback_number_id"),
        )
    except CalltrackerError as err:
        return await site_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther(f"/admin/sites/{site.key}?done=saved")


async def create_pool(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        pool, _ = await request.app[catalog_service_key].create_pool(
            request.match_info["site"],
            name=pages.form_text(form, "name"),
            hold_seconds=_hold_seconds(form),
            policy=pages.form_text(form, "policy"),
            numbers=pages.form_lines(form, "numbers"),
        )
    except CalltrackerError as err:
        return await site_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther(f"/admin/pools/{pool.id}?done=created")


# -- pools --------------------------------------------------------------------------------


async def pools_page(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        health = await edits.pool_overview(session, request.app[pools_key])
    return pages.render(request, "pools.html", {"health": health})


def _pool_id(request: web.Request) -> int:
    return int(request.match_info["pool"])


async def pool_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        [health] = await edits.pool_overview(session, request.app[pools_key], _pool_id(request))
        numbers = [
            n
            for n in await sites.list_numbers(session, health.pool.site_id, "pool")
            if n.pool_id == health.pool.id
        ]
        # The size the simulation advises for the traffic seen (calltracker/pool_advice.py).
        advice = await pool_advice.pool_advice(
            session,
            health.pool,
            health.numbers,
            live=health.stats is not None,
            grace_seconds=request.app[settings_key].grace_seconds,
            now=datetime.now(UTC),
        )
    context = {
        "health": health,
        "advice": advice,
        "numbers": numbers,
        "policies": POLICIES,
        "error": error,
        "notice": _notice(request),
    }
    return pages.render(request, "pool.html", context, status=status)


async def update_pool(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        await request.app[catalog_service_key].update_pool(
            _pool_id(request),
            name=pages.form_text(form, "name") or None,
            hold_seconds=_hold_seconds(form),
            policy=pages.form_text(form, "policy") or None,
        )
    except CalltrackerError as err:
        return await pool_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther(f"/admin/pools/{_pool_id(request)}?done=saved")


async def add_pool_numbers(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        await request.app[catalog_service_key].add_pool_numbers(
            _pool_id(request), pages.form_lines(form, "numbers")
        )
    except CalltrackerError as err:
        return await pool_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther(f"/admin/pools/{_pool_id(request)}?done=added")


async def set_number_active(request: web.Request) -> web.Response:
    form = await request.post()
    await request.app[catalog_service_key].set_number_active(
        int(request.match_info["number"]), pages.form_text(form, "active") == "1"
    )
    back = pages.form_text(form, "back")
    raise web.HTTPSeeOther(back if back.startswith("/admin/") else "/admin/static-numbers")


# -- static numbers -----------------------------------------------------------------------


async def static_numbers_page(
    request: web.Request,
    *,
    error: str = "",
    form: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        site_rows = await sites.list_sites(session)
        numbers = await sites.list_numbers(session, kind="static")
    context = {
        "sites": site_rows,
        "numbers": numbers,
        "form": form or {},
        "error": error,
        "notice": "Static number added." if request.query.get("done") == "added" else "",
    }
    return pages.render(request, "static_numbers.html", context, status=status)


async def add_static_number(request: web.Request) -> web.Response:
    form = await request.post()
    values = {
        k: pages.form_text(form, k) for k in ("site", "number", "source", "medium", "campaign")
    }
    try:
        await request.app[catalog_service_key].add_static_number(
            values["site"],
            values["number"],
            source=values["source"],
            medium=values["medium"],
            campaign=values["campaign"],
        )
    except CalltrackerError as err:
        return await static_numbers_page(request, error=err.message, form=values, status=400)
    raise web.HTTPSeeOther("/admin/static-numbers?done=added")


# -- CSV import ---------------------------------------------------------------------------


async def import_page(request: web.Request) -> web.Response:
    return pages.render(request, "import.html", {})


def _csv_text(form: MultiDictProxy[Any]) -> str:
    upload = form.get("file")
    if isinstance(upload, web.FileField) and upload.filename:
        try:
            return upload.file.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Invalid("the file is not UTF-8 text; save the CSV as UTF-8") from None
    return pages.form_text(form, "text")


async def import_numbers(request: web.Request) -> web.Response:
    form = await request.post()
    text = ""
    try:
        text = _csv_text(form)
        rows = await request.app[catalog_service_key].import_numbers_csv(text)
    except CalltrackerError as err:
        details = err.details if isinstance(err.details, list) else []
        context = {"error": err.message, "line_errors": details, "text": text}
        return pages.render(request, "import.html", context, status=400)
    notice = f"Imported {len(rows)} number(s)."
    return pages.render(request, "import.html", {"notice": notice, "imported": rows})


# -- integrations ------------------------------------------------------------------------


@dataclass(frozen=True)
class IntegrationRow:
    """One integration as the page shows it: no secret values, only which secrets are set."""

    id: int
    kind: str
    name: str
    trigger: str
    stage: str
    enabled: bool
    secrets_set: list[str]
    counts: store.Counts
    last_errors: list[OutboxRow]
    warnings: list[str]


@dataclass(frozen=True)
class SiteIntegrations:
    site: Site
    integrations: list[IntegrationRow]
    ad_accounts: list[AccountRow]


INTEGRATION_FIELDS = ("site", "kind", "name", "config", "trigger", "stage")


async def integrations_page(
    request: web.Request,
    *,
    error: str = "",
    form: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        site_rows = await sites.list_sites(session)
        rows = await integration_config.list_integrations(session)
        tally = await store.counts(session, [i.id for i in rows])
        by_site: dict[int, list[IntegrationRow]] = {}
        for integration in rows:
            _, secrets_set = integration_config.masked_config(integration.kind, integration.config)
            errors = await store.last_errors(session, integration.id)
            by_site.setdefault(integration.site_id, []).append(
                IntegrationRow(
                    id=integration.id,
                    kind=integration.kind,
                    name=integration.name,
                    trigger=integration.trigger,
                    stage=integration.stage,
                    enabled=integration.enabled,
                    secrets_set=secrets_set,
                    counts=tally.get(integration.id, store.Counts()),
                    last_errors=list(errors),
                    warnings=registry.warnings(integration.kind, integration.config, utcnow()),
                )
            )
        ads = await account_rows(session)
    context = {
        "groups": [
            SiteIntegrations(s, by_site.get(s.id, []), ads.get(s.id, [])) for s in site_rows
        ],
        "ad_alerts": [row for rows in ads.values() for row in rows if row.alert],
        "platforms": [(name, p.title) for name, p in PLATFORMS.items()],
        "sites": site_rows,
        "kinds": tuple(KINDS),
        "triggers": integration_config.TRIGGERS,
        "stages": STAGES,
        "form": form or {},
        "error": error,
        "notice": _integrations_notice(request),
    }
    return pages.render(request, "integrations.html", context, status=status)


def _integrations_notice(request: web.Request) -> str:
    done = request.query.get("done", "")
    if done == "created":
        return "Integration added."
    if done == "retried":
        count = request.query.get("count", "")
        return f"{int(count) if count.isdigit() else 0} row(s) queued again."
    return {
        "ad_account_created": "Ad account added; its first pull starts within a minute.",
        "ad_account_saved": "Ad account saved; it is pulled again within a minute.",
        "ad_account_due": "The account is pulled within a minute.",
    }.get(done, "")


def _config_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise Invalid(f"config is not valid JSON: {err.msg} (line {err.lineno})") from None
    if not isinstance(value, dict):
        raise Invalid("config must be a JSON object", code="invalid_config")
    return value


async def create_integration(request: web.Request) -> web.Response:
    form = await request.post()
    values = {k: pages.form_text(form, k) for k in INTEGRATION_FIELDS}
    try:
        config = _config_json(values["config"])
        async with request.app[sessionmaker_key].begin() as session:
            site = await sites.get_site(session, values["site"])
            await integration_config.create_integration(
                session,
                site_id=site.id,
                kind=values["kind"],
                name=values["name"],
                config=config,
                trigger=values["trigger"] or "every",
                stage=values["stage"] or "hangup",
            )
    except CalltrackerError as err:
        # The form comes back without the config: it may hold secrets.
        values["config"] = ""
        return await integrations_page(request, error=err.message, form=values, status=400)
    _wake_outbox(request)
    raise web.HTTPSeeOther("/admin/integrations?done=created")


async def retry_integration(request: web.Request) -> web.Response:
    form = await request.post()
    integration_id = int(request.match_info["integration"])
    try:
        async with request.app[sessionmaker_key].begin() as session:
            await integration_config.get_integration(session, integration_id)
            count = await store.retry(
                session, integration_id, utcnow(), dead=bool(pages.form_text(form, "dead"))
            )
    except CalltrackerError as err:
        return await integrations_page(request, error=err.message, status=404)
    _wake_outbox(request)
    raise web.HTTPSeeOther(f"/admin/integrations?done=retried&count={count}")


def _wake_outbox(request: web.Request) -> None:
    workers = request.app.get(outbox_key)
    if workers is not None:
        workers.wake()


# -- ad accounts (adspend/) on the integrations page ------------------------------------------

AD_ACCOUNT_FIELDS = ("site", "platform", "name", "interval_minutes", "lookback_days")


async def create_ad_account(request: web.Request) -> web.Response:
    form = await request.post()
    values = {k: pages.form_text(form, k) for k in AD_ACCOUNT_FIELDS}
    try:
        config = _config_json(pages.form_text(form, "config"))
        async with request.app[sessionmaker_key].begin() as session:
            site = await sites.get_site(session, values["site"])
            await ad_accounts.create_account(
                session,
                site_id=site.id,
                platform=values["platform"],
                name=values["name"],
                config=config,
                interval_minutes=pages.form_int(form, "interval_minutes")
                or ad_accounts.DEFAULT_INTERVAL_MINUTES,
                lookback_days=pages.form_int(form, "lookback_days")
                or ad_accounts.DEFAULT_LOOKBACK_DAYS,
            )
    except CalltrackerError as err:
        # The form comes back without the config: it holds tokens.
        form_values = {f"ad_{k}": v for k, v in values.items()}
        return await integrations_page(request, error=err.message, form=form_values, status=400)
    raise web.HTTPSeeOther("/admin/integrations?done=ad_account_created#ad-accounts")


async def update_ad_account(request: web.Request) -> web.Response:
    """The "change credentials" form: a config patch, merged (secrets left out are kept)."""
    form = await request.post()
    try:
        patch = _config_json(pages.form_text(form, "config"))
        async with request.app[sessionmaker_key].begin() as session:
            account = await ad_accounts.get_account(session, int(request.match_info["account"]))
            enabled = pages.form_text(form, "enabled")
            await ad_accounts.update_account(
                session,
                account,
                config_patch=patch or None,
                enabled=enabled == "1" if enabled else None,
            )
    except CalltrackerError as err:
        return await integrations_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther("/admin/integrations?done=ad_account_saved#ad-accounts")


async def sync_ad_account(request: web.Request) -> web.Response:
    await request.post()
    async with request.app[sessionmaker_key].begin() as session:
        account = await ad_accounts.get_account(session, int(request.match_info["account"]))
        await ad_accounts.request_sync(session, account)
    raise web.HTTPSeeOther("/admin/integrations?done=ad_account_due#ad-accounts")
