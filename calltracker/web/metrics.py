"""GET /metrics in the Prometheus text format (admin token), the latency middleware, and upkeep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from calltracker.keys import (
    ami_key,
    catalog_key,
    metrics_key,
    pools_key,
)
from calltracker.metrics import PoolFigures, Scraped
from calltracker.web import health
from number_pool import PoolError

log = logging.getLogger(__name__)

# Each worker writes its AMI gauges this often: a scrape reaches any one worker, and
# reads the others' values from the files they last wrote.
REFRESH_SECONDS = 1.0
UNMATCHED = "unmatched"  # 404s: raw paths as labels would let anyone grow the series


def route_label(request: web.Request) -> str:
    """The route's pattern (/api/v1/visits/{visit_id}/ping), never the raw path."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        return UNMATCHED
    resource = match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as err:
        status = err.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away first (nginx's code), not a server error
        raise
    finally:
        request.app[metrics_key].request_done(
            request.method, route_label(request), status, time.perf_counter() - started
        )


def refresh_process_gauges(app: web.Application) -> None:
    """This process's AMI state into its gauges."""
    leading = app.get(ami_key)
    if leading is None:
        app[metrics_key].set_ami(leader=False, connected=False, open_calls=0, facts_waiting=0)
        return
    figures = leading.metrics()
    app[metrics_key].set_ami(
        leader=leading.election.is_leader,
        connected=bool(figures.get("connected", 0)),
        open_calls=figures.get("open_calls", 0),
        facts_waiting=figures.get("facts_waiting", 0),
    )


async def pool_figures(app: web.Application) -> list[PoolFigures]:
    now = time.time()
    out = []
    for site in app[catalog_key].current.sites_by_id.values():
        if site.pool is None:
            continue
        with contextlib.suppress(PoolError):
            out.append(PoolFigures(site.key, await app[pools_key].stats(site.pool.pool_id, now)))
    return out


async def gather(app: web.Application) -> Scraped:
    """What every worker would answer alike; each source fails on its own."""
    database = await health.check_database(app)
    redis = await health.check_redis(app)
    scraped = Scraped(dependencies={"database": database["ok"], "redis": redis["ok"]})
    try:
        async with asyncio.timeout(health.CHECK_TIMEOUT):
            scraped.pools = await pool_figures(app)
    except Exception as err:
        log.warning("event=metrics_pools_failed error=%s", type(err).__name__)
    if database["ok"]:
        try:
            scraped.outbox = await health.outbox_backlog(app)
        except Exception as err:
            log.warning("event=metrics_outbox_failed error=%s", type(err).__name__)
    leading = app.get(ami_key)
    if leading is not None and leading.election.status().election == "redis":
        scraped.ami_lock_held = await leading.election.holder() is not None
    return scraped


async def metrics(request: web.Request) -> web.Response:
    """Prometheus scrapes with `Authorization: Bearer <admin token>` (README, Production)."""
    refresh_process_gauges(request.app)
    scraped = await gather(request.app)
    body = request.app[metrics_key].exposition(scraped)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
