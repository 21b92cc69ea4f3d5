"""Call recordings over HTTP: for signed-in users (the player), and by signed link (CRMs)."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web

from calltracker.accounts.roles import Role
from calltracker.db.models import Call
from calltracker.errors import NotFound
from calltracker.keys import sessionmaker_key, settings_key
from calltracker.telephony import call_log, recording_links
from calltracker.web.auth import public, roles
from calltracker.web.bodies import described

SIGNED_ROUTE = r"/recordings/{call:\d+}.mp3"


def audio_response(path: Path) -> web.FileResponse:
    # FileResponse answers Range requests, so a player can seek.
    return web.FileResponse(
        path,
        headers={
            "Content-Type": call_log.AUDIO_TYPES[path.suffix.lower()],
            "Cache-Control": "private, max-age=3600",
        },
    )


@roles(Role.MARKETER, Role.OPERATOR)
@described(200, 206, media=tuple(call_log.AUDIO_TYPES.values()))
async def call_recording(request: web.Request) -> web.FileResponse:
    """The call's audio, for the console's player."""
    async with request.app[sessionmaker_key]() as session:
        view = await call_log.get_call(session, int(request.match_info["call"]))
    return audio_response(
        call_log.recording_file(request.app[settings_key].recordings_dir, view.call)
    )


@public  # the signature is the credential: CRMs fetch this without logging in
async def signed_recording(request: web.Request) -> web.FileResponse:
    settings = request.app[settings_key]
    call_id = int(request.match_info["call"])
    recording_links.check(
        settings.secret_key,
        call_id,
        request.query.get("expires", ""),
        request.query.get("sig", ""),
        time.time(),
    )
    async with request.app[sessionmaker_key]() as session:
        call = await session.get(Call, call_id)
    if call is None:
        raise NotFound(f"unknown call {call_id}", code="unknown_call")
    return audio_response(call_log.recording_file(settings.recordings_dir, call))
