"""Pages for people: the admin's users and tokens, and each user's own account."""

from __future__ import annotations

from aiohttp import web

from calltracker.accounts import users
from calltracker.accounts.roles import Role
from calltracker.accounts.sessions import SessionInfo
from calltracker.errors import CalltrackerError, Invalid
from calltracker.keys import sessionmaker_key, token_verifier_key
from calltracker.web import pages
from calltracker.web.auth import roles
from calltracker.web.sessions import current_session

ROLES = [r.value for r in Role]


def _session(request: web.Request) -> SessionInfo:
    info = current_session(request)
    if info is None:  # a bearer token reached a page: pages are for people who logged in
        raise Invalid("this page needs a login session, not an API token", code="needs_login")
    return info


async def users_page(
    request: web.Request, *, error: str = "", notice: str = "", status: int = 200
) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        rows = await users.list_users(session)
        tokens = await users.list_user_tokens(session)
    context = {
        "users": rows,
        "tokens": tokens,
        "owners": {u.id: u.username for u in rows},
        "roles": ROLES,
        "revoke_base": "/admin/tokens",
        "error": error,
        "notice": notice or _notice(request),
    }
    return pages.render(request, "users.html", context, status=status)


def _notice(request: web.Request) -> str:
    done = request.query.get("done", "")
    return {
        "created": "User added.",
        "saved": "Saved.",
        "password": "Password set; the user's sessions were ended.",
        "revoked": "Token revoked.",
    }.get(done, "")


def _user_id(request: web.Request) -> int:
    return int(request.match_info["user"])


async def create_user(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        async with request.app[sessionmaker_key].begin() as session:
            await users.create_user(
                session,
                username=pages.form_text(form, "username"),
                role=pages.form_text(form, "role"),
                password=str(form.get("password", "")),
                extension=pages.form_text(form, "extension"),
            )
    except CalltrackerError as err:
        return await users_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther("/admin/users?done=created")


async def update_user(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        async with request.app[sessionmaker_key].begin() as session:
            await users.update_user(
                session,
                _user_id(request),
                role=pages.form_text(form, "role") or None,
                disabled=pages.form_text(form, "disabled") == "1",
                extension=pages.form_text(form, "extension"),
                acting_user_id=_session(request).user_id,
            )
    except CalltrackerError as err:
        return await users_page(request, error=err.message, status=400)
    request.app[token_verifier_key].forget()  # role or state changed: drop cached answers
    raise web.HTTPSeeOther("/admin/users?done=saved")


async def reset_password(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        async with request.app[sessionmaker_key].begin() as session:
            user = await users.get_user(session, _user_id(request))
            await users.set_password(session, user, str(form.get("password", "")))
    except CalltrackerError as err:
        return await users_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther("/admin/users?done=password")


async def create_token_for_user(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        async with request.app[sessionmaker_key].begin() as session:
            row, plaintext = await users.create_user_token(
                session, _user_id(request), pages.form_text(form, "name")
            )
    except CalltrackerError as err:
        return await users_page(request, error=err.message, status=400)
    context = {"token_name": row.name, "plaintext": plaintext, "back": "/admin/users"}
    return pages.render(request, "token_created.html", context)


async def revoke_token(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key].begin() as session:
        await users.revoke_user_token(session, int(request.match_info["token"]), None)
    request.app[token_verifier_key].forget()
    raise web.HTTPSeeOther("/admin/users?done=revoked")


# -- each user's own account --------------------------------------------------------------


@roles(Role.MARKETER, Role.OPERATOR)
async def account_page(
    request: web.Request, *, error: str = "", notice: str = "", status: int = 200
) -> web.Response:
    me = _session(request)
    async with request.app[sessionmaker_key]() as session:
        tokens = await users.list_user_tokens(session, me.user_id)
    context = {
        "tokens": tokens,
        "owners": {me.user_id: me.username},
        "revoke_base": "/account/tokens",
        "error": error,
        "notice": notice
        or {
            "password": "Password changed; your other sessions were ended.",
            "revoked": "Token revoked.",
        }.get(request.query.get("done", ""), ""),
    }
    return pages.render(request, "account.html", context, status=status)


@roles(Role.MARKETER, Role.OPERATOR)
async def change_password(request: web.Request) -> web.Response:
    me = _session(request)
    form = await request.post()
    try:
        async with request.app[sessionmaker_key].begin() as session:
            await users.change_own_password(
                session,
                me.user_id,
                str(form.get("current", "")),
                str(form.get("password", "")),
                keep_session=me.id_hash,
            )
    except CalltrackerError as err:
        return await account_page(request, error=err.message, status=400)
    raise web.HTTPSeeOther("/account?done=password")


@roles(Role.MARKETER, Role.OPERATOR)
async def create_own_token(request: web.Request) -> web.Response:
    me = _session(request)
    form = await request.post()
    try:
        async with request.app[sessionmaker_key].begin() as session:
            row, plaintext = await users.create_user_token(
                session, me.user_id, pages.form_text(form, "name")
            )
    except CalltrackerError as err:
        return await account_page(request, error=err.message, status=400)
    context = {"token_name": row.name, "plaintext": plaintext, "back": "/account"}
    return pages.render(request, "token_created.html", context)


@roles(Role.MARKETER, Role.OPERATOR)
async def revoke_own_token(request: web.Request) -> web.Response:
    me = _session(request)
    async with request.app[sessionmaker_key].begin() as session:
        await users.revoke_user_token(session, int(request.match_info["token"]), me.user_id)
    request.app[token_verifier_key].forget()
    raise web.HTTPSeeOther("/account?done=revoked")
