"""Pages for ad spend from the platforms: ad accounts on the integrations page (admin), the
unmapped spend and its mapping (marketer), the currency rate table (admin)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.accounts.roles import Role
from calltracker.adspend import accounts, registry, store
from calltracker.catalog import sites
from calltracker.clock import utcnow
from calltracker.db.adspend_models import AdAccount
from calltracker.db.models import Site
from calltracker.errors import CalltrackerError, Invalid
from calltracker.keys import sessionmaker_key
from calltracker.reports import money, rates
from calltracker.reports.rows import BadRows
from calltracker.web import pages
from calltracker.web.auth import roles
from calltracker.web.reports import MAX_UPLOAD, local_today, report_params


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/reports/spend/unmapped", unmapped_page)
    r.add_post("/reports/spend/mappings", save_mapping)
    r.add_post(r"/reports/spend/mappings/{mapping:\d+}/delete", remove_mapping)
    r.add_get("/admin/currency-rates", rates_page)
    r.add_post("/admin/currency-rates", import_rates)


# --- ad accounts on the integrations page ---------------------------------------------------


@dataclass(frozen=True)
class AccountRow:
    """One ad account as the page shows it: no secret values, only which secrets are set."""

    account: AdAccount
    title: str
    secrets_set: list[str]
    alert: str


async def account_rows(session: AsyncSession) -> dict[int, list[AccountRow]]:
    """The ad accounts per site id, for web/admin.py's integrations page."""
    by_site: dict[int, list[AccountRow]] = {}
    for account in await accounts.list_accounts(session):
        _, secrets_set = accounts.masked_config(account.platform, account.config)
        platform = registry.PLATFORMS.get(account.platform)
        by_site.setdefault(account.site_id, []).append(
            AccountRow(
                account,
                platform.title if platform else account.platform,
                secrets_set,
                accounts.alert(account),
            )
        )
    return by_site


# --- unmapped spend and the mapping ---------------------------------------------------------


async def _unmapped_context(
    session: AsyncSession, site: Site, first: date, last: date
) -> dict[str, Any]:
    rows = await store.unmapped(session, site.id, first, last)
    return {
        "title": "Unmapped ad spend",
        "site": site,
        "sites": await sites.list_sites(session),
        "first": first,
        "last": last,
        "rows": [(r, money.major(r.cost), _default_source(r.platform)) for r in rows],
        "mappings": await store.list_mappings(session, site.id),
        "platform_titles": {name: p.title for name, p in registry.PLATFORMS.items()},
    }


def _default_source(platform: str) -> str:
    found = registry.PLATFORMS.get(platform)
    return found.source if found else ""


@roles(Role.MARKETER)
async def unmapped_page(request: web.Request) -> web.Response:
    """Pulled spend that maps to no labels, with a form to map each campaign."""
    async with request.app[sessionmaker_key]() as session:
        all_sites = await sites.list_sites(session)
        if not all_sites:
            return pages.render(request, "reports/no_sites.html", {})
        site = await sites.get_site(session, request.query.get("site") or all_sites[0].key)
        params = report_params(request.query, local_today(site))
        context = await _unmapped_context(session, site, params.first_day, params.last_day)
    notice = ""
    if request.query.get("done") == "mapped":
        notice = f"Mapped; {request.query.get('rows', '0')} stored row(s) moved to the labels."
    return pages.render(request, "reports/unmapped.html", context | {"notice": notice})


def _back(form: Any, site: str, **extra: str) -> str:
    query = {"site": site}
    for name in ("from", "to"):
        if pages.form_text(form, name):
            query[name] = pages.form_text(form, name)
    return "/reports/spend/unmapped?" + urlencode(query | extra)


@roles(Role.MARKETER)
async def save_mapping(request: web.Request) -> web.Response:
    form = await request.post()
    site_key = pages.form_text(form, "site")
    try:
        async with request.app[sessionmaker_key].begin() as session:
            site = await sites.get_site(session, site_key)
            _, remapped = await store.set_mapping(
                session,
                site_id=site.id,
                platform=pages.form_text(form, "platform"),
                campaign_id=pages.form_text(form, "campaign_id"),
                source=pages.form_text(form, "source"),
                medium=pages.form_text(form, "medium"),
                campaign=pages.form_text(form, "campaign"),
                now=utcnow(),
            )
    except CalltrackerError as err:
        async with request.app[sessionmaker_key]() as session:
            site = await sites.get_site(session, site_key)
            today = local_today(site)
            context = await _unmapped_context(session, site, today - timedelta(days=29), today)
        return pages.render(
            request, "reports/unmapped.html", context | {"error": err.message}, status=400
        )
    raise web.HTTPSeeOther(_back(form, site.key, done="mapped", rows=str(remapped)))


@roles(Role.MARKETER)
async def remove_mapping(request: web.Request) -> web.Response:
    form = await request.post()
    async with request.app[sessionmaker_key].begin() as session:
        remapped = await store.delete_mapping(session, int(request.match_info["mapping"]), utcnow())
    raise web.HTTPSeeOther(
        _back(form, pages.form_text(form, "site"), done="mapped", rows=str(remapped))
    )


def _csv_text(form: Any) -> str:
    upload = form.get("file")
    if isinstance(upload, web.FileField) and upload.filename:
        raw = upload.file.read(MAX_UPLOAD + 1)
        if len(raw) > MAX_UPLOAD:
            raise Invalid("the file is too large; split it in parts of at most 10 MB")
        try:
            return str(raw.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise Invalid("the file is not UTF-8 text; save the CSV as UTF-8") from None
    return pages.form_text(form, "text")


# --- currency rates -------------------------------------------------------------------------


async def rates_page(
    request: web.Request, *, error: str = "", errors: Any = (), status: int = 200
) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        found = await rates.list_rates(session, limit=200)
    notice = ""
    if request.query.get("done") == "imported":
        notice = f"Stored {request.query.get('count', '0')} rate(s)."
    return pages.render(
        request,
        "currency_rates.html",
        {
            "rates": [(r, rates.rate_text(r.rate)) for r in found],
            "error": error,
            "line_errors": list(errors),
            "notice": notice,
            "max_age": rates.MAX_AGE_DAYS,
        },
        status=status,
    )


async def import_rates(request: web.Request) -> web.Response:
    """The page's form: one rate typed in, or a CSV file or pasted lines."""
    form = await request.post()
    try:
        if pages.form_text(form, "rate"):
            names = ("date", "currency", "rate", "base", "source")
            batch = rates.parse_json_rows([{k: pages.form_text(form, k) for k in names}])
        else:
            batch = rates.parse_csv(_csv_text(form))
        async with request.app[sessionmaker_key].begin() as session:
            count = await rates.store_rates(session, batch, "manual")
    except BadRows as err:
        return await rates_page(request, error=err.message, errors=err.errors, status=400)
    except CalltrackerError as err:
        return await rates_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther(f"/admin/currency-rates?done=imported&count={count}")
