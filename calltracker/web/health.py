"""GET /healthz: each dependency reported on its own; 503 when one the server needs is down."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web
from sqlalchemy import func, select, text

from calltracker.db.integration_models import OutboxRow
from calltracker.integrations.outbox.policy import DEAD, FAILED, PENDING, SENDING
from calltracker.keys import ami_key, outbox_key, redis_key, sessionmaker_key, settings_key
from calltracker.web.auth import public

CHECK_TIMEOUT = 2.0
BACKLOG_STATES = (PENDING, SENDING, FAILED, DEAD)


async def check_database(app: web.Application) -> dict[str, Any]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), app[sessionmaker_key]() as session:
            await session.execute(text("SELECT 1"))
    except Exception as err:
        return {"ok": False, "error": type(err).__name__}
    return {"ok": True}


async def check_redis(app: web.Application) -> dict[str, Any]:
    if not app[settings_key].uses_redis:
        return {"ok": True, "backend": "memory"}
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await app[redis_key].ping()
    except Exception as err:
        return {"ok": False, "error": type(err).__name__}
    return {"ok": True, "backend": "redis"}


async def check_ami(app: web.Application) -> dict[str, Any]:
    """This process's part: the leader reports its connection; a standby, who leads."""
    leading = app.get(ami_key)
    if leading is None:
        return {"ok": True, "configured": False}
    election = leading.election.status()
    status = leading.status()
    holder = await leading.election.holder()
    report: dict[str, Any] = {
        "configured": True,
        "leader": election.leader,
        "election": election.election,
        "identity": election.identity,
        "holder": holder,  # who holds the leader lock now, as Redis says
        "leader_since": election.since.isoformat() if election.since else None,
        "connected": status.connected,
    }
    if not election.leader:
        # A standby is healthy while some process leads; the leader's own /healthz tells
        # whether it reaches Asterisk.
        return {"ok": holder is not None, **report}
    return {
        "ok": status.connected,
        **report,
        "since": status.since.isoformat() if status.since else None,
        "last_error": status.last_error,
        "last_error_at": status.last_error_at.isoformat() if status.last_error_at else None,
        "facts_waiting": leading.metrics()["facts_waiting"],  # kept while the DB failed
    }


async def outbox_backlog(app: web.Application) -> dict[str, int]:
    """Rows not done yet, by state: the index on (state, next_attempt_at) keeps it cheap."""
    query = (
        select(OutboxRow.state, func.count())
        .where(OutboxRow.state.in_(BACKLOG_STATES))
        .group_by(OutboxRow.state)
    )
    async with asyncio.timeout(CHECK_TIMEOUT), app[sessionmaker_key]() as session:
        counts = {state: int(n) for state, n in (await session.execute(query)).all()}
    return {state: counts.get(state, 0) for state in BACKLOG_STATES}


async def check_outbox(app: web.Application) -> dict[str, Any]:
    """The delivery backlog; dead rows wait for an admin and do not make the server unhealthy."""
    try:
        backlog = await outbox_backlog(app)
    except Exception as err:
        return {"ok": False, "error": type(err).__name__}
    workers = app.get(outbox_key)
    return {"ok": True, **backlog, "workers_running": workers is not None}


@public
async def healthz(request: web.Request) -> web.Response:
    """Every check in the body; the status code says whether this server can serve.

    AMI is reported, and makes the status "degraded" while disconnected, but answers 200:
    visits, pages and reports work without Asterisk, and a load balancer must not take
    every web worker out because the PBX restarts. Calls made meanwhile are recovered by
    the snapshot after the reconnect, or from the CDRs (`calltracker calls import-cdr`).
    The outbox backlog is reported the same way. The database and Redis are required:
    503 when either fails.
    """
    app = request.app
    # Side by side: a hung dependency costs one CHECK_TIMEOUT, not one per check.
    database, redis, ami, outbox = await asyncio.gather(
        check_database(app), check_redis(app), check_ami(app), check_outbox(app)
    )
    required = {"database": database, "redis": redis}
    checks = {**required, "ami": ami, "outbox": outbox}
    return web.json_response(
        {
            "status": "ok" if all(c["ok"] for c in checks.values()) else "degraded",
            "checks": checks,
            "pid": os.getpid(),  # which worker answered: behind one port, any of them
        },
        status=200 if all(c["ok"] for c in required.values()) else 503,
    )
