"""The operator console: its page, and the websocket that pushes call cards to it."""

# A console subscribes with the logged-in user's extension(s) and gets a card when a call
# rings one of them, then every update of that call. Closing codes the page acts on:
# CLOSE_RECONNECT (server restart, extensions changed, a console too slow to keep up):
# reconnect and take the snapshot again; CLOSE_LOGGED_OUT: stop and offer the login page.

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web
from yarl import URL

from calltracker.accounts import sessions as stored_sessions
from calltracker.accounts.roles import Role
from calltracker.accounts.sessions import SessionInfo
from calltracker.keys import operator_hub_key, sessionmaker_key, settings_key
from calltracker.operator.hub import Subscription, parse_extensions
from calltracker.telephony import call_log
from calltracker.telephony.call_log import CallFilter
from calltracker.web import pages, sessions
from calltracker.web.auth import roles
from calltracker.web.errors import error_response
from calltracker.web.sessions import current_session

log = logging.getLogger(__name__)

CLOSE_RECONNECT = 4001
CLOSE_LOGGED_OUT = 4401
HEARTBEAT_SECONDS = 25.0  # pings keep proxies from closing an idle socket, and find dead ones
RECHECK_SECONDS = 60.0  # a logout, a disabled user or a new extension takes effect this fast
MAX_MESSAGE = 1024  # the page sends nothing but pings


@roles(Role.OPERATOR)
async def operator_page(request: web.Request) -> web.Response:
    info = current_session(request)
    extensions = sorted(parse_extensions(info.extension if info is not None else ""))
    # "Today" in UTC, the zone of record; the table shows each call in its site's time.
    today = datetime.now(UTC).date()
    f = CallFilter(
        date_from=today,
        date_to=today,
        operator=extensions[0] if len(extensions) == 1 else None,
        limit=50,
    )
    async with request.app[sessionmaker_key]() as session:
        page = await call_log.list_calls(session, f)
    return pages.render(
        request,
        "operator.html",
        {"page": page, "extensions": extensions, "mine": len(extensions) == 1},
    )


@roles(Role.OPERATOR)
async def console_redirect(request: web.Request) -> web.Response:
    """The console's old address."""
    raise web.HTTPFound("/operator")


def origin_allowed(request: web.Request) -> bool:
    """A browser always sends Origin on a websocket; only our own pages may open this one,
    or any site the operator visits could read the cards with the operator's cookie."""
    raw = request.headers.get("Origin", "")
    try:
        given = URL(raw)
    except ValueError:
        return False
    if not given.is_absolute() or given.host is None:
        return False
    ours = [URL(request.app[settings_key].public_url)]
    # Behind a TLS-terminating proxy the request is http while the page is https.
    ours += [URL.build(scheme=s, authority=request.host) for s in ("http", "https")]
    key = (given.scheme, given.host.lower(), given.port)
    return any(key == (u.scheme, (u.host or "").lower(), u.port) for u in ours)


@roles(Role.OPERATOR)
async def operator_ws(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_MESSAGE)
    if not ws.can_prepare(request).ok:
        return error_response(400, "websocket_required", "connect with a websocket")
    if not origin_allowed(request):
        return error_response(403, "bad_origin", "the console's websocket is for its own page")
    info = current_session(request)
    if info is None:
        return error_response(403, "session_required", "the console needs a login session")
    await ws.prepare(request)
    hub = request.app[operator_hub_key]
    extensions = parse_extensions(info.extension)
    sub = hub.subscribe(extensions)
    # Taken with no await after subscribing: every later change arrives through the queue.
    cards = hub.snapshot(extensions)
    log.info("event=console_connected user=%s extensions=%s", info.username, sorted(extensions))
    pump = asyncio.create_task(_pump(request, ws, sub, info), name="operator-console-pump")
    try:
        await ws.send_json({"type": "hello", "extensions": sorted(extensions), "cards": cards})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_json({"type": "pong"})
    finally:
        hub.unsubscribe(sub)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pump
    return ws


async def _pump(
    request: web.Request, ws: web.WebSocketResponse, sub: Subscription, info: SessionInfo
) -> None:
    """Send the console its cards; close the socket when the hub drops it or the login ends."""
    loop = asyncio.get_running_loop()
    closed = asyncio.create_task(sub.closed.wait())
    getter: asyncio.Task[dict[str, Any]] | None = None
    next_check = loop.time() + RECHECK_SECONDS
    try:
        while not ws.closed:
            if getter is None or getter.done():  # kept across rechecks: it may hold a card
                getter = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait(
                {getter, closed},
                timeout=max(next_check - loop.time(), 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if getter in done:
                await ws.send_json(getter.result())
                continue
            if closed in done:
                await ws.close(code=CLOSE_RECONNECT, message=b"reconnect")
                return
            next_check = loop.time() + RECHECK_SECONDS
            code = await _recheck(request, info)
            if code is not None:
                reason = b"logged out" if code == CLOSE_LOGGED_OUT else b"reconnect"
                await ws.close(code=code, message=reason)
                return
    finally:
        # Also when the handler cancels us mid-wait: no task may outlive the console.
        for task in (closed, getter):
            if task is not None:
                task.cancel()
        await asyncio.gather(closed, *([getter] if getter else []), return_exceptions=True)


async def _recheck(request: web.Request, info: SessionInfo) -> int | None:
    """A close code if the console must go (logged out) or start over (new extensions)."""
    raw = request.cookies.get(sessions.COOKIE, "")
    async with request.app[sessionmaker_key].begin() as session:
        now = await stored_sessions.load_session(session, raw) if raw else None
    if now is None or now.id_hash != info.id_hash:
        return CLOSE_LOGGED_OUT
    if parse_extensions(now.extension) != parse_extensions(info.extension):
        return CLOSE_RECONNECT
    return None


def add_routes(app: web.Application) -> None:
    app.router.add_get("/operator", operator_page)
    app.router.add_get("/operator/ws", operator_ws)
    app.router.add_get("/console", console_redirect)
