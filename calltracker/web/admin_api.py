"""The JSON API behind the console: users, tokens, site and pool settings, import, calls."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from aiohttp import web

from calltracker.accounts import users
from calltracker.accounts.roles import Role
from calltracker.catalog import edits
from calltracker.catalog.edits import PoolHealth
from calltracker.catalog.numbers_csv import CsvImportFailed
from calltracker.db.auth_models import User
from calltracker.db.models import ApiToken
from calltracker.errors import Invalid
from calltracker.keys import (
    catalog_service_key,
    pools_key,
    principal_key,
    sessionmaker_key,
    token_verifier_key,
)
from calltracker.telephony import call_log
from calltracker.telephony.call_log import CallView
from calltracker.web.auth import roles
from calltracker.web.bodies import Refusal, api
from calltracker.web.calls_page import CallQuery
from calltracker.web.catalog_api import (
    LiveStats,
    Numbers,
    NumberView,
    PoolView,
    SiteView,
    number_view,
    pool_view,
    site_view,
)
from calltracker.web.sessions import current_session
from number_pool import ExhaustionPolicy

EVERYONE = (Role.MARKETER, Role.OPERATOR)


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    """A console user."""

    id: int
    username: str
    role: Role
    extension: str  # the operator's phone extension: their call cards ring there
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class TokenView(msgspec.Struct, frozen=True, kw_only=True):
    """An API token; its secret is shown once, when it is made."""

    id: int
    name: str
    role: Role
    user_id: int | None  # the user it acts as; null for a service token
    created_at: datetime
    revoked_at: datetime | None


class NewToken(TokenView, frozen=True, kw_only=True):
    token: Annotated[str, msgspec.Meta(description="shown once; never stored")]


class Me(msgspec.Struct, frozen=True):
    """Who is calling: a user's session or token, or a service token (user null)."""

    name: str
    role: Role
    user: UserView | None


class Users(msgspec.Struct, frozen=True):
    users: list[UserView]


class Tokens(msgspec.Struct, frozen=True):
    tokens: list[TokenView]


class UserInput(msgspec.Struct, frozen=True):
    username: str
    role: str
    password: str
    extension: str = ""


class UserPatch(msgspec.Struct, frozen=True):
    """Fields left out stay as they are."""

    role: str | None = None
    disabled: bool | None = None
    extension: str | None = None
    password: str | None = None


class TokenInput(msgspec.Struct, frozen=True):
    name: str


class PasswordChange(msgspec.Struct, frozen=True):
    current: str
    password: str


def user_view(user: User) -> UserView:
    return msgspec.convert(user, UserView, from_attributes=True)


def token_view(token: ApiToken) -> TokenView:
    return msgspec.convert(token, TokenView, from_attributes=True)


def new_token(token: ApiToken, plaintext: str) -> NewToken:
    return NewToken(**msgspec.structs.asdict(token_view(token)), token=plaintext)


class PoolHealthView(PoolView, frozen=True, kw_only=True):
    """A pool with its site, its size, and its live figures when it is live."""

    site_key: str
    numbers: int
    live: LiveStats | None  # null: not live (no numbers, or not the site's pool)


class Pools(msgspec.Struct, frozen=True):
    pools: list[PoolHealthView]


class SitePatch(msgspec.Struct, frozen=True):
    """A site's settings; fields left out stay as they are."""

    name: str | None = None
    domains: list[str] | None = None
    default_number: str | None = None
    country: str | None = None
    timezone: str | None = None
    pooled_mediums: Annotated[
        list[str] | None, msgspec.Meta(description="mediums that get pooled numbers; [] = all")
    ] = None
    target_min_talk_seconds: Annotated[
        int | None, msgspec.Meta(description="target call: answered, talked >= this")
    ] = None
    unique_window_days: Annotated[
        int | None, msgspec.Meta(description="a caller is unique if silent this long")
    ] = None
    fallback_number_id: Annotated[
        int | None, msgspec.Meta(description="static number for non-pooled traffic; 0 = default")
    ] = None


class PoolPatch(msgspec.Struct, frozen=True):
    name: str | None = None
    hold_seconds: int | None = None
    policy: ExhaustionPolicy | None = None


class NumberPatch(msgspec.Struct, frozen=True):
    active: bool


class BadLine(msgspec.Struct, frozen=True):
    line: int
    value: str
    reason: str


class ImportErrors(msgspec.Struct, frozen=True):
    """Nothing was imported; every bad line is listed."""

    error: str
    message: str
    errors: list[BadLine]


def health_view(h: PoolHealth) -> PoolHealthView:
    live = msgspec.convert(h.stats, LiveStats, from_attributes=True) if h.stats else None
    return PoolHealthView(
        **msgspec.structs.asdict(pool_view(h.pool)),
        site_key=h.site_key,
        numbers=h.numbers,
        live=live,
    )


class CallVisit(msgspec.Struct, frozen=True, kw_only=True):
    """The website visit a call was matched to."""

    id: str
    started_at: datetime
    url: str
    referrer: str
    touch_source: str
    touch_medium: str


class CallJson(msgspec.Struct, frozen=True, kw_only=True):
    """A call with its attribution: where the caller came from, and how sure that is."""

    id: int
    linkedid: str
    site_id: int | None
    site_key: str | None
    tracking_number: str
    caller: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    wait_seconds: int
    talk_seconds: int
    status: str
    operator: str
    source: str
    medium: str
    campaign: str
    keyword: str
    attribution: str
    unique: bool
    target: bool
    recording_url: str | None
    visit: CallVisit | None


class Calls(msgspec.Struct, frozen=True):
    calls: list[CallJson]
    total: int
    next_offset: int | None


def call_json(view: CallView) -> CallJson:
    c, v = view.call, view.visit
    return CallJson(
        id=c.id,
        linkedid=c.linkedid,
        site_id=c.site_id,
        site_key=view.site_key or None,
        tracking_number=c.tracking_number,
        caller=c.caller,
        started_at=c.started_at,
        answered_at=c.answered_at,
        ended_at=c.ended_at,
        wait_seconds=c.wait_seconds,
        talk_seconds=c.talk_seconds,
        status=c.status,
        operator=c.operator,
        source=c.source,
        medium=c.medium,
        campaign=c.campaign,
        keyword=c.keyword,
        attribution=c.attribution,
        unique=c.unique,
        target=c.target,
        recording_url=f"/api/v1/calls/{c.id}/recording" if c.recording else None,
        visit=None if v is None else msgspec.convert(v, CallVisit, from_attributes=True),
    )


async def current_user_id(request: web.Request) -> int:
    """The user behind the request: their session, or the user a bearer token acts for."""
    info = current_session(request)
    if info is not None:
        return info.user_id
    token_id = request[principal_key].token_id
    if token_id is not None:
        async with request.app[sessionmaker_key]() as session:
            user_id = await users.user_id_for_token(session, token_id)
        if user_id is not None:
            return user_id
    raise Invalid("this is a service token, not bound to a user", code="not_a_user")


# -- me -----------------------------------------------------------------------------------


@roles(*EVERYONE)
@api()
async def get_me(request: web.Request) -> Me:
    """Who is calling."""
    principal = request[principal_key]
    try:
        user_id = await current_user_id(request)
    except Invalid:
        return Me(principal.name, principal.role, None)
    async with request.app[sessionmaker_key]() as session:
        user = await users.get_user(session, user_id)
    return Me(principal.name, principal.role, user_view(user))


@roles(*EVERYONE)
@api()
async def list_my_tokens(request: web.Request) -> Tokens:
    """Your API tokens."""
    user_id = await current_user_id(request)
    async with request.app[sessionmaker_key]() as session:
        rows = await users.list_user_tokens(session, user_id)
    return Tokens([token_view(t) for t in rows])


@roles(*EVERYONE)
@api(status=201)
async def create_my_token(request: web.Request, body: TokenInput) -> NewToken:
    """Create an API token for yourself; it is shown once."""
    user_id = await current_user_id(request)
    async with request.app[sessionmaker_key].begin() as session:
        row, plaintext = await users.create_user_token(session, user_id, body.name)
    return new_token(row, plaintext)


@roles(*EVERYONE)
@api()
async def revoke_my_token(request: web.Request) -> None:
    """Revoke one of your tokens."""
    user_id = await current_user_id(request)
    async with request.app[sessionmaker_key].begin() as session:
        await users.revoke_user_token(session, int(request.match_info["token"]), user_id)
    request.app[token_verifier_key].forget()


@roles(*EVERYONE)
@api()
async def change_my_password(request: web.Request, body: PasswordChange) -> None:
    """Change your password; your other sessions end."""
    user_id = await current_user_id(request)
    info = current_session(request)
    async with request.app[sessionmaker_key].begin() as session:
        await users.change_own_password(
            session,
            user_id,
            body.current,
            body.password,
            keep_session=info.id_hash if info is not None else "",
        )


# -- users and tokens (admin) -------------------------------------------------------------


@api()
async def list_users(request: web.Request) -> Users:
    """List users."""
    async with request.app[sessionmaker_key]() as session:
        rows = await users.list_users(session)
    return Users([user_view(u) for u in rows])


@api(status=201)
async def create_user(request: web.Request, body: UserInput) -> UserView:
    """Add a user."""
    async with request.app[sessionmaker_key].begin() as session:
        user = await users.create_user(
            session,
            username=body.username,
            role=body.role,
            password=body.password,
            extension=body.extension,
        )
    return user_view(user)


@api()
async def get_user(request: web.Request) -> UserView:
    """A user."""
    async with request.app[sessionmaker_key]() as session:
        user = await users.get_user(session, int(request.match_info["user"]))
    return user_view(user)


@api()
async def update_user(request: web.Request, body: UserPatch) -> UserView:
    """Change a user's role, extension, password, or disable them."""
    info = current_session(request)
    async with request.app[sessionmaker_key].begin() as session:
        user = await users.update_user(
            session,
            int(request.match_info["user"]),
            role=body.role,
            disabled=body.disabled,
            extension=body.extension,
            acting_user_id=info.user_id if info is not None else None,
        )
        if body.password is not None:
            await users.set_password(session, user, body.password)
        view = user_view(user)
    request.app[token_verifier_key].forget()
    return view


@api()
async def list_tokens(request: web.Request) -> Tokens:
    """Every API token, user and service tokens."""
    async with request.app[sessionmaker_key]() as session:
        rows = await users.list_user_tokens(session)
    return Tokens([token_view(t) for t in rows])


@api(status=201)
async def create_user_token(request: web.Request, body: TokenInput) -> NewToken:
    """Create an API token that acts as the user; it is shown once."""
    async with request.app[sessionmaker_key].begin() as session:
        row, plaintext = await users.create_user_token(
            session, int(request.match_info["user"]), body.name
        )
    return new_token(row, plaintext)


@api()
async def revoke_token(request: web.Request) -> None:
    """Revoke a token."""
    async with request.app[sessionmaker_key].begin() as session:
        await users.revoke_user_token(session, int(request.match_info["token"]), None)
    request.app[token_verifier_key].forget()


# -- catalog settings (admin) -------------------------------------------------------------


@api()
async def update_site(request: web.Request, body: SitePatch) -> SiteView:
    """Change a site's settings (fields left out stay as they are)."""
    # The body's fields are the use case's arguments, name for name; None leaves one as it is.
    site = await request.app[catalog_service_key].update_site(
        request.match_info["site"], **msgspec.structs.asdict(body)
    )
    return site_view(site)


@api()
async def list_pools(request: web.Request) -> Pools:
    """Every pool with live utilisation, peak, exhaustion count, recommended size."""
    async with request.app[sessionmaker_key]() as session:
        health = await edits.pool_overview(session, request.app[pools_key])
    return Pools([health_view(h) for h in health])


@api()
async def update_pool(request: web.Request, body: PoolPatch) -> PoolView:
    """Change a pool's name, hold time or exhaustion policy."""
    pool = await request.app[catalog_service_key].update_pool(
        int(request.match_info["pool"]),
        name=body.name,
        hold_seconds=body.hold_seconds,
        policy=body.policy.value if body.policy is not None else None,
    )
    return pool_view(pool)


@api()
async def update_number(request: web.Request, body: NumberPatch) -> NumberView:
    """Turn a number on or off."""
    row = await request.app[catalog_service_key].set_number_active(
        int(request.match_info["number"]), body.active
    )
    return number_view(row)


@api(status=201, errors={400: ImportErrors}, accepts=("text/csv",))
async def import_numbers(request: web.Request) -> Numbers:
    """Import numbers from CSV: number,site,pool,source,medium,campaign.

    The body is the CSV itself; nothing is imported if a line is bad, and every bad line
    comes back in ``errors``.
    """
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8 text") from None
    try:
        rows = await request.app[catalog_service_key].import_numbers_csv(text)
    except CsvImportFailed as err:
        lines = err.details if isinstance(err.details, list) else []
        bad = [msgspec.convert(e, BadLine, from_attributes=True) for e in lines]
        raise Refusal(400, ImportErrors(err.code, err.message, bad)) from None
    return Numbers([number_view(n) for n in rows])


# -- calls (every role) -------------------------------------------------------------------


@roles(*EVERYONE)
@api()
async def list_calls(request: web.Request, query: CallQuery) -> Calls:
    """Calls, newest first, filtered and paged."""
    async with request.app[sessionmaker_key]() as session:
        page = await call_log.list_calls(session, query.filter())
    return Calls([call_json(v) for v in page.calls], page.total, page.next_offset)


@roles(*EVERYONE)
@api()
async def get_call(request: web.Request) -> CallJson:
    """A call."""
    async with request.app[sessionmaker_key]() as session:
        view = await call_log.get_call(session, int(request.match_info["call"]))
    return call_json(view)
