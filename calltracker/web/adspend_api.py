"""Private JSON API for ad spend from the platforms: ad accounts (admin), unmapped spend and
the campaign mapping (marketer), currency rates (marketer reads, admin writes)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

from calltracker.accounts.roles import Role
from calltracker.adspend import accounts, store
from calltracker.adspend.accounts import AccountView
from calltracker.catalog import sites
from calltracker.clock import utcnow
from calltracker.db.adspend_models import CampaignMapping
from calltracker.errors import Invalid
from calltracker.keys import sessionmaker_key
from calltracker.reports import money, rates
from calltracker.reports.rows import BadRows
from calltracker.shapes import INVALID
from calltracker.web.auth import roles
from calltracker.web.bodies import api
from calltracker.web.reports import (
    CSV_TYPES,
    UPLOADS,
    BadRowsBody,
    SiteRef,
    bad_rows,
    day_range,
    local_today,
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


Day = Annotated[date | None, msgspec.Meta(extra={INVALID: "must be a date, YYYY-MM-DD"})]


# --- ad accounts (admin) --------------------------------------------------------------------


class AccountInput(msgspec.Struct, frozen=True):
    """A new ad account of a site; ``config`` is the platform's model (docs/adspend.md)."""

    site: SiteRef
    platform: str
    name: str
    config: dict[str, Any]
    enabled: bool = True
    interval_minutes: int = accounts.DEFAULT_INTERVAL_MINUTES
    lookback_days: int = accounts.DEFAULT_LOOKBACK_DAYS


class AccountPatch(msgspec.Struct, frozen=True):
    """Changes to an ad account: ``config`` is merged, so secrets left out are kept."""

    name: str | None = None
    config: dict[str, Any] | None = None  # a null field inside removes it
    enabled: bool | None = None
    interval_minutes: int | None = None
    lookback_days: int | None = None


class AdAccounts(msgspec.Struct, frozen=True):
    ad_accounts: list[AccountView]


class SiteQuery(msgspec.Struct, frozen=True):
    site: str | None = None  # a site's key or id: only its accounts


@api()
async def list_accounts(request: web.Request, query: SiteQuery) -> AdAccounts:
    """Ad accounts with their sync status; ?site=key-or-id narrows to one site."""
    async with request.app[sessionmaker_key]() as session:
        site_id = None
        if query.site:
            site_id = (await sites.get_site(session, query.site)).id
        rows = await accounts.list_accounts(session, site_id)
    return AdAccounts([accounts.public_view(a) for a in rows])


@api(status=201)
async def create_account(request: web.Request, body: AccountInput) -> AccountView:
    """Add an ad account to a site; its config is checked by the platform's model."""
    async with request.app[sessionmaker_key].begin() as session:
        site = await sites.get_site(session, body.site)
        account = await accounts.create_account(
            session,
            site_id=site.id,
            platform=body.platform,
            name=body.name,
            config=body.config,
            enabled=body.enabled,
            interval_minutes=body.interval_minutes,
            lookback_days=body.lookback_days,
        )
        return accounts.public_view(account)


@api()
async def get_account(request: web.Request) -> AccountView:
    """One ad account, its status and its alert, if any."""
    async with request.app[sessionmaker_key]() as session:
        account = await accounts.get_account(session, _account_id(request))
    return accounts.public_view(account)


@api()
async def update_account(request: web.Request, body: AccountPatch) -> AccountView:
    """Change any of name, config (merged; omitted secrets kept), enabled, interval_minutes,
    lookback_days. New credentials make the account due at once."""
    async with request.app[sessionmaker_key].begin() as session:
        account = await accounts.get_account(session, _account_id(request))
        await accounts.update_account(
            session,
            account,
            name=body.name,
            config_patch=body.config,
            enabled=body.enabled,
            interval_minutes=body.interval_minutes,
            lookback_days=body.lookback_days,
        )
        return accounts.public_view(account)


@api()
async def delete_account(request: web.Request) -> None:
    """Remove an ad account with the spend it pulled."""
    async with request.app[sessionmaker_key].begin() as session:
        account = await accounts.get_account(session, _account_id(request))
        await accounts.delete_account(session, account)


@api(status=202)
async def sync_account(request: web.Request) -> AccountView:
    """Make the account due now: the server's sync pulls it within a tick (202)."""
    async with request.app[sessionmaker_key].begin() as session:
        account = await accounts.get_account(session, _account_id(request))
        await accounts.request_sync(session, account)
        return accounts.public_view(account)


# --- unmapped spend and the mapping (marketer) --------------------------------------------


class RangeQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A site and a range of its local days; the last 30 days unless given."""

    site: str  # the site's key or id
    first_day: Day = msgspec.field(default=None, name="from")
    last_day: Day = msgspec.field(default=None, name="to")


class UnmappedCampaignJson(msgspec.Struct, frozen=True, kw_only=True):
    """One platform campaign's pulled spend that maps to no labels."""

    account_id: int
    account: str  # the ad account's name
    platform: str
    campaign_id: str
    campaign_name: str
    currency: str
    amount: float  # major units
    impressions: int
    clicks: int
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")
    tracking: str  # the campaign's tracking parameters as pulled: why it is unmapped


class UnmappedList(msgspec.Struct, frozen=True, kw_only=True):
    site: str
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")
    campaigns: list[UnmappedCampaignJson]


def unmapped_json(row: store.UnmappedCampaign) -> UnmappedCampaignJson:
    return UnmappedCampaignJson(
        account_id=row.account_id,
        account=row.account_name,
        platform=row.platform,
        campaign_id=row.campaign_id,
        campaign_name=row.campaign_name,
        currency=row.currency,
        amount=float(money.major(row.cost)),
        impressions=row.impressions,
        clicks=row.clicks,
        first_day=row.first_day,
        last_day=row.last_day,
        tracking=row.tracking,
    )


@roles(Role.MARKETER)
@api()
async def list_unmapped(request: web.Request, query: RangeQuery) -> UnmappedList:
    """Pulled spend of ?site=&from=&to= that maps to no labels, per platform campaign."""
    async with request.app[sessionmaker_key]() as session:
        site = await sites.get_site(session, query.site)
        first, last = day_range(query.first_day, query.last_day, local_today(site))
        rows = await store.unmapped(session, site.id, first, last)
    return UnmappedList(
        site=site.key,
        first_day=first,
        last_day=last,
        campaigns=[unmapped_json(r) for r in rows],
    )


class MappingInput(msgspec.Struct, frozen=True):
    """A platform campaign's labels; it replaces the campaign's earlier mapping."""

    site: SiteRef
    platform: str
    campaign_id: str
    source: str  # utm_source
    medium: str  # utm_medium
    campaign: str = ""  # utm_campaign


class MappingView(msgspec.Struct, frozen=True, kw_only=True):
    """(platform, campaign id) -> source, medium, campaign."""

    id: int
    site_id: int
    platform: str
    campaign_id: str
    source: str
    medium: str
    campaign: str
    updated_at: datetime


class MappingSaved(MappingView, frozen=True, kw_only=True):
    rows_remapped: int  # stored rows moved to the new labels


class Remapped(msgspec.Struct, frozen=True):
    rows_remapped: int  # stored rows that fell back to tracking parameters or unmapped


class Mappings(msgspec.Struct, frozen=True):
    site: str
    mappings: list[MappingView]


class MappingsQuery(msgspec.Struct, frozen=True):
    site: str  # the site's key or id


def mapping_view(m: CampaignMapping) -> MappingView:
    return msgspec.convert(m, MappingView, from_attributes=True)


@roles(Role.MARKETER)
@api()
async def list_mappings(request: web.Request, query: MappingsQuery) -> Mappings:
    """The mapping table of ?site=: (platform, campaign id) -> source, medium, campaign."""
    async with request.app[sessionmaker_key]() as session:
        site = await sites.get_site(session, query.site)
        rows = await store.list_mappings(session, site.id)
    return Mappings(site.key, [mapping_view(m) for m in rows])


@roles(Role.MARKETER)
@api()
async def put_mapping(request: web.Request, body: MappingInput) -> MappingSaved:
    """Map a platform campaign to labels; its stored pulls are re-mapped at once."""
    async with request.app[sessionmaker_key].begin() as session:
        site = await sites.get_site(session, body.site)
        found, remapped = await store.set_mapping(
            session,
            site_id=site.id,
            platform=body.platform,
            campaign_id=body.campaign_id,
            source=body.source,
            medium=body.medium,
            campaign=body.campaign,
            now=utcnow(),
        )
        view = mapping_view(found)
    return MappingSaved(**msgspec.structs.asdict(view), rows_remapped=remapped)


@roles(Role.MARKETER)
@api()
async def delete_mapping(request: web.Request) -> Remapped:
    """Forget a mapping; its campaign's rows fall back to tracking parameters or unmapped."""
    async with request.app[sessionmaker_key].begin() as session:
        remapped = await store.delete_mapping(session, int(request.match_info["mapping"]), utcnow())
    return Remapped(remapped)


# --- currency rates -------------------------------------------------------------------------


class RateView(msgspec.Struct, frozen=True, kw_only=True):
    """1 ``currency`` = ``rate`` ``base`` on ``date``."""

    date: date
    currency: str
    base: str
    rate: str  # a decimal of up to eight places, at least two: no binary rounding
    source: str


class Rates(msgspec.Struct, frozen=True):
    rates: list[RateView]


class RatesQuery(msgspec.Struct, frozen=True, kw_only=True):
    currency: str | None = None  # only this currency's rates
    first_day: Day = msgspec.field(default=None, name="from")
    last_day: Day = msgspec.field(default=None, name="to")


class RatesInput(msgspec.Struct, frozen=True):
    """Rates to store; each row is checked on its own and every bad one listed."""

    rates: Annotated[
        list[Any],
        msgspec.Meta(
            description=f"objects with {', '.join(rates.REQUIRED)}, optionally "
            f"{', '.join(rates.OPTIONAL)}: 1 currency = rate base on that date"
        ),
    ] = []


class RatesStored(msgspec.Struct, frozen=True, kw_only=True):
    """How many rates were stored, and the days they are of."""

    stored: int
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")


def rate_view(rate: rates.Rate) -> RateView:
    return RateView(
        date=rate.day,
        currency=rate.currency,
        base=rate.base,
        rate=rates.rate_text(rate.rate),
        source=rate.source,
    )


@roles(Role.MARKETER)
@api()
async def list_rates(request: web.Request, query: RatesQuery) -> Rates:
    """Stored rates, newest first; ?currency=USD&from=&to= narrow them."""
    currency = None
    if query.currency:
        try:
            currency = money.parse_currency(query.currency)
        except ValueError as err:
            raise Invalid(str(err), code="invalid_field") from None
    async with request.app[sessionmaker_key]() as session:
        found = await rates.list_rates(
            session, currency=currency, first=query.first_day, last=query.last_day
        )
    return Rates([rate_view(r) for r in found])


@api(accepts=UPLOADS, errors={400: BadRowsBody})
async def post_rates(request: web.Request, body: RatesInput | None) -> RatesStored:
    """Store rates: JSON {"rates": [{date, currency, rate, base, source}]} or a CSV with those
    columns: 1 currency = rate base on that date. A day's rate replaces the one stored."""
    try:
        if body is not None:
            batch = rates.parse_json_rows(body.rates)
        elif request.content_type in CSV_TYPES | {"multipart/form-data"}:
            text, _ = await upload_text(request)
            batch = rates.parse_csv(text)
        else:
            raise Invalid("send JSON, text/csv or a multipart upload", code="unsupported_type")
        async with request.app[sessionmaker_key].begin() as session:
            stored = await rates.store_rates(session, batch, "import")
    except BadRows as err:
        raise bad_rows(err) from None
    days = [r.day for r in batch.items]
    return RatesStored(stored=stored, first_day=min(days), last_day=max(days))
