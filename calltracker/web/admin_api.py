"""The JSON API behind the console: users, tokens, site and pool settings, import, calls."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from calltracker.accounts import users
from calltracker.accounts.roles import Role
from calltracker.catalog import edits
from calltracker.catalog.edits import PoolHealth
from calltracker.catalog.numbers_csv import CsvImportFailed
from calltracker.catalog.sites import NewNumberError
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
from calltracker.web import calls_page
from calltracker.web.auth import roles
from calltracker.web.catalog_api import (
    field,
    json_body,
    number_json,
    pool_json,
    site_json,
    str_list,
)
from calltracker.web.sessions import current_session

EVERYONE = (Role.MARKETER, Role.OPERATOR)


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "extension": user.extension,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "user_id": token.user_id,
        "created_at": token.created_at.isoformat(),
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def health_json(h: PoolHealth) -> dict[str, Any]:
    body = pool_json(h.pool)
    body["site_key"] = h.site_key
    body["numbers"] = h.numbers
    s = h.stats
    body["live"] = None
    if s is not None:
        body["live"] = {
            "size": s.size,
            "leased": s.leased,
            "utilisation": s.utilisation,
            "peak_concurrent": s.peak_concurrent,
            "exhaustion_count": s.exhaustion_count,
            "recommended_size": s.recommended_size,
        }
    return body


def call_json(view: CallView) -> dict[str, Any]:
    c, v = view.call, view.visit

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": c.id,
        "linkedid": c.linkedid,
        "site_id": c.site_id,
        "site_key": view.site_key or None,
        "tracking_number": c.tracking_number,
        "caller": c.caller,
        "started_at": c.started_at.isoformat(),
        "answered_at": iso(c.answered_at),
        "ended_at": iso(c.ended_at),
        "wait_seconds": c.wait_seconds,
        "talk_seconds": c.talk_seconds,
        "status": c.status,
        "operator": c.operator,
        "source": c.source,
        "medium": c.medium,
        "campaign": c.campaign,
        "keyword": c.keyword,
        "attribution": c.attribution,
        "unique": c.unique,
        "target": c.target,
        "recording_url": f"/api/v1/calls/{c.id}/recording" if c.recording else None,
        "visit": None
        if v is None
        else {
            "id": v.id,
            "started_at": v.started_at.isoformat(),
            "url": v.url,
            "referrer": v.referrer,
            "touch_source": v.touch_source,
            "touch_medium": v.touch_medium,
        },
    }


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
async def get_me(request: web.Request) -> web.Response:
    principal = request[principal_key]
    body: dict[str, Any] = {"name": principal.name, "role": principal.role.value, "user": None}
    try:
        user_id = await current_user_id(request)
    except Invalid:
        return web.json_response(body)
    async with request.app[sessionmaker_key]() as session:
        body["user"] = user_json(await users.get_user(session, user_id))
    return web.json_response(body)


@roles(*EVERYONE)
async def list_my_tokens(request: web.Request) -> web.Response:
    user_id = await current_user_id(request)
    async with request.app[sessionmaker_key]() as session:
        rows = await users.list_user_tokens(session, user_id)
    return web.json_response({"tokens": [token_json(t) for t in rows]})


@roles(*EVERYONE)
async def create_my_token(request: web.Request) -> web.Response:
    data = await json_body(request)
    user_id = await current_user_id(request)
    async with request.app[sessionmaker_key].begin() as session:
        row, plaintext = await users.create_user_token(session, user_id, field(data, "name", str))
    return web.json_response(token_json(row) | {"token": plaintext}, status=201)


@roles(*EVERYONE)
async def revoke_my_token(request: web.Request) -> web.Response:
    user_id = await current_user_id(request)
    async with request.app[sessionmaker_key].begin() as session:
        await users.revoke_user_token(session, int(request.match_info["token"]), user_id)
    request.app[token_verifier_key].forget()
    return web.Response(status=204)


@roles(*EVERYONE)
async def change_my_password(request: web.Request) -> web.Response:
    data = await json_body(request)
    user_id = await current_user_id(request)
    info = current_session(request)
    async with request.app[sessionmaker_key].begin() as session:
        await users.change_own_password(
            session,
            user_id,
            field(data, "current", str),
            field(data, "password", str),
            keep_session=info.id_hash if info is not None else "",
        )
    return web.Response(status=204)


# -- users and tokens (admin) -------------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        rows = await users.list_users(session)
    return web.json_response({"users": [user_json(u) for u in rows]})


async def create_user(request: web.Request) -> web.Response:
    data = await json_body(request)
    async with request.app[sessionmaker_key].begin() as session:
        user = await users.create_user(
            session,
            username=field(data, "username", str),
            role=field(data, "role", str),
            password=field(data, "password", str),
            extension=field(data, "extension", str, ""),
        )
    return web.json_response(user_json(user), status=201)


async def get_user(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        user = await users.get_user(session, int(request.match_info["user"]))
    return web.json_response(user_json(user))


async def update_user(request: web.Request) -> web.Response:
    data = await json_body(request)
    info = current_session(request)
    async with request.app[sessionmaker_key].begin() as session:
        user = await users.update_user(
            session,
            int(request.match_info["user"]),
            role=field(data, "role", str, None),
            disabled=field(data, "disabled", bool, None),
            extension=field(data, "extension", str, None),
            acting_user_id=info.user_id if info is not None else None,
        )
        password = field(data, "password", str, None)
        if password is not None:
            await users.set_password(session, user, password)
    request.app[token_verifier_key].forget()
    return web.json_response(user_json(user))


async def list_tokens(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        rows = await users.list_user_tokens(session)
    return web.json_response({"tokens": [token_json(t) for t in rows]})


async def create_user_token(request: web.Request) -> web.Response:
    data = await json_body(request)
    async with request.app[sessionmaker_key].begin() as session:
        row, plaintext = await users.create_user_token(
            session, int(request.match_info["user"]), field(data, "name", str)
        )
    return web.json_response(token_json(row) | {"token": plaintext}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key].begin() as session:
        await users.revoke_user_token(session, int(request.match_info["token"]), None)
    request.app[token_verifier_key].forget()
    return web.Response(status=204)


# -- catalog settings (admin) -------------------------------------------------------------


async def update_site(request: web.Request) -> web.Response:
    data = await json_body(request)
    site = await request.app[catalog_service_key].update_site(
        request.match_info["site"],
        name=field(data, "name", str, None),
        domains=str_list(data, "domains") if "domains" in data else None,
        default_number=field(data, "default_number", str, None),
        country=field(data, "country", str, None),
        timezone=field(data, "timezone", str, None),
        pooled_mediums=str_list(data, "pooled_mediums") if "pooled_mediums" in data else None,
        target_min_talk_seconds=field(data, "target_min_talk_seconds", int, None),
        unique_window_days=field(data, "unique_window_days", int, None),
        fallback_number_id=field(data, "fallback_number_id", int, None),
    )
    return web.json_response(site_json(site))


async def list_pools(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        health = await edits.pool_overview(session, request.app[pools_key])
    return web.json_response({"pools": [health_json(h) for h in health]})


async def update_pool(request: web.Request) -> web.Response:
    data = await json_body(request)
    pool = await request.app[catalog_service_key].update_pool(
        int(request.match_info["pool"]),
        name=field(data, "name", str, None),
        hold_seconds=field(data, "hold_seconds", int, None),
        policy=field(data, "policy", str, None),
    )
    return web.json_response(pool_json(pool))


async def update_number(request: web.Request) -> web.Response:
    data = await json_body(request)
    row = await request.app[catalog_service_key].set_number_active(
        int(request.match_info["number"]), field(data, "active", bool)
    )
    return web.json_response(number_json(row))


def _line_json(e: NewNumberError) -> dict[str, Any]:
    return {"line": e.line, "value": e.value, "reason": e.reason}


async def import_numbers(request: web.Request) -> web.Response:
    """Body: the CSV itself (text/csv); every bad line comes back in `errors`."""
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8 text") from None
    try:
        rows = await request.app[catalog_service_key].import_numbers_csv(text)
    except CsvImportFailed as err:
        lines = err.details if isinstance(err.details, list) else []
        return web.json_response(
            {"error": err.code, "message": err.message, "errors": [_line_json(e) for e in lines]},
            status=400,
        )
    return web.json_response({"numbers": [number_json(n) for n in rows]}, status=201)


# -- calls (every role) -------------------------------------------------------------------


@roles(*EVERYONE)
async def list_calls(request: web.Request) -> web.Response:
    f = calls_page.parse_call_filter(request.query)
    async with request.app[sessionmaker_key]() as session:
        page = await call_log.list_calls(session, f)
    return web.json_response(
        {
            "calls": [call_json(v) for v in page.calls],
            "total": page.total,
            "next_offset": page.next_offset,
        }
    )


@roles(*EVERYONE)
async def get_call(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        view = await call_log.get_call(session, int(request.match_info["call"]))
    return web.json_response(call_json(view))
