"""The application factory: the one place that wires resources, routes and middlewares."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web
from redis.asyncio import Redis

from calltracker.accounts.throttle import LoginThrottle
from calltracker.accounts.tokens import TokenVerifier
from calltracker.catalog.cache import CatalogCache
from calltracker.db.engine import create_engine, create_sessionmaker
from calltracker.db.lease_journal import SqlLeaseJournal
from calltracker.http_session import http_ctx
from calltracker.integrations.outbox.lifecycle import outbox_ctx, outbox_observer, outbox_wakeup
from calltracker.keys import (
    ami_key,
    catalog_key,
    engine_key,
    login_throttle_key,
    metrics_key,
    pools_key,
    recorder_key,
    redis_key,
    sessionmaker_key,
    settings_key,
    token_verifier_key,
    visit_limiter_key,
    visits_key,
)
from calltracker.metrics import Metrics, multiprocess_dir
from calltracker.reports.visit_rollup import rollup_ctx
from calltracker.settings import Settings, describe
from calltracker.telephony.agi import agi_ctx
from calltracker.telephony.ami import AmiListener
from calltracker.telephony.calls import CallTracker
from calltracker.telephony.leader import (
    LEADER_KEY,
    LeadingListener,
    RedisLock,
    process_identity,
)
from calltracker.telephony.matching import Matcher
from calltracker.telephony.recorder import TRANSIENT_ERRORS, CallRecorder
from calltracker.telephony.recordings import RecordingStore
from calltracker.tracking.ratelimit import RateLimiter
from calltracker.tracking.visits import VisitService
from calltracker.tracking.writer import VisitWriter
from calltracker.web.auth import auth_middleware
from calltracker.web.errors import error_middleware
from calltracker.web.metrics import metrics_ctx, metrics_middleware
from calltracker.web.operator import setup_operator
from calltracker.web.routes import setup_routes
from number_pool.memory import MemoryPool
from number_pool.redis import RedisPool

log = logging.getLogger(__name__)


async def db_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[settings_key].database_url)
    app[engine_key] = engine
    app[sessionmaker_key] = create_sessionmaker(engine)
    app[token_verifier_key] = TokenVerifier(app[sessionmaker_key])
    yield
    await engine.dispose()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    if not settings.uses_redis:
        yield
        return
    client: Redis = Redis.from_url(settings.redis_url.reveal())
    app[redis_key] = client
    yield
    await client.aclose()


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    catalog: CatalogCache
    if app[settings_key].uses_redis:
        prefix = app[settings_key].redis_prefix + "pool:"
        pools: MemoryPool | RedisPool = RedisPool(app[redis_key], prefix=prefix)
        catalog = CatalogCache(app[sessionmaker_key], pools)
        await catalog.refresh()
    else:
        pools = MemoryPool(journal=SqlLeaseJournal(app[sessionmaker_key]))
        catalog = CatalogCache(app[sessionmaker_key], pools)
        await catalog.refresh()  # configures the pools, which restore() needs first
        await pools.restore(time.time())
    await pools.start()
    catalog.start()
    app[pools_key] = pools
    app[catalog_key] = catalog
    yield
    await catalog.close()
    await pools.close()


async def telephony_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    matcher = Matcher(
        app[catalog_key], app[pools_key], app[sessionmaker_key], settings.grace_seconds
    )
    recordings = RecordingStore(settings.recordings_dir, settings.asterisk_recordings_dir)
    recorder = CallRecorder(
        app[sessionmaker_key], app[catalog_key], matcher, convert_recording=recordings.convert
    )
    # Outbox rows are written inside each call's transaction; the workers wake after commit.
    recorder.add_observer(outbox_observer(app))
    recorder.add_observer(outbox_wakeup(app), after_commit=True)
    app[recorder_key] = recorder
    if not settings.ami.enabled:
        log.info("event=ami_off reason=CALLTRACKER_AMI_HOST is not set")
        yield
        return

    def new_listener() -> AmiListener:
        # Asterisk being down is not fatal: the listener keeps retrying while visits are served.
        # A hung database is not either: each fact gets sink_timeout_seconds, then waits in the
        # listener's retry list (ami.py) while events go on being tracked. A new tracker for
        # each term as leader: calls in progress come from the snapshot after login.
        return AmiListener(
            settings.ami,
            CallTracker(settings.ami.inbound_context, recorder.is_tracked),
            recorder.handle,
            sink_timeout=settings.ami.sink_timeout_seconds,
            retry_on=TRANSIENT_ERRORS,
        )

    # One listener among all processes: the holder of a Redis lock (telephony/leader.py);
    # without Redis this process is the only one.
    ttl = settings.leader_ttl_seconds
    lock = None
    if settings.uses_redis:
        key = settings.redis_prefix + LEADER_KEY
        lock = RedisLock(app[redis_key], key, process_identity(), ttl)
    async with LeadingListener(new_listener, lock, ttl=ttl) as leading:
        app[ami_key] = leading
        yield


async def visits_ctx(app: web.Application) -> AsyncIterator[None]:
    writer = VisitWriter(app[engine_key])
    writer.start()
    app[visits_key] = VisitService(
        app[catalog_key],
        app[pools_key],
        writer,
        app[sessionmaker_key],
        on_visit=app[metrics_key].visit_started,
    )
    yield
    await writer.close()


def create_app(settings: Settings) -> web.Application:
    # The visit API caps its own bodies at settings.max_body_bytes; this larger cap is for
    # admin uploads such as CSV imports.
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware, auth_middleware],
        client_max_size=10 * 1024 * 1024,
    )
    app[settings_key] = settings
    app[metrics_key] = Metrics(multiprocess_dir())
    app[visit_limiter_key] = RateLimiter(settings.visit_rate_per_minute)
    app[login_throttle_key] = LoginThrottle(settings.login_max_failures)
    app.cleanup_ctx.extend([db_ctx, redis_ctx, pool_ctx, visits_ctx])
    # Outgoing HTTP, then the outbox loops that use it (calltracker/integrations/outbox/).
    app.cleanup_ctx.extend([http_ctx, outbox_ctx])
    # Calls last: the AMI listener starts after what it feeds and stops before it.
    app.cleanup_ctx.append(telephony_ctx)
    # FastAGI caller-ID tags, and the operators' live cards fed by the recorder's observer.
    app.cleanup_ctx.append(agi_ctx)
    setup_operator(app)
    app.cleanup_ctx.append(metrics_ctx)  # counts stored calls; per-worker gauges (web/metrics.py)
    app.cleanup_ctx.append(rollup_ctx)  # finished days' visit counts for long reports
    setup_routes(app)
    # Pages: Jinja escapes every value, so visitor-sent UTM tags and referrers show as text.
    aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("calltracker.web", "templates"), autoescape=True
    )
    log.info("event=app_created %s", " ".join(f"{k}={v}" for k, v in describe(settings).items()))
    return app
