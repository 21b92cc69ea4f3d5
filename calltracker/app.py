"""The application factory: the one place that wires resources, routes and middlewares.

Every long-lived resource has one cleanup context here, registered in dependency order;
aiohttp starts them in that order and stops them in reverse, each only if it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web
from redis.asyncio import Redis

from calltracker.accounts.throttle import LoginThrottle
from calltracker.accounts.tokens import TokenVerifier
from calltracker.adspend.service import SyncRunner, SyncSettings
from calltracker.catalog.cache import CatalogCache
from calltracker.catalog.service import CatalogService
from calltracker.clock import utcnow
from calltracker.db.engine import create_engine, create_sessionmaker, is_sqlite
from calltracker.db.lease_journal import SqlLeaseJournal
from calltracker.db.models import Call
from calltracker.deals.sync import DealSync, DealSyncSettings
from calltracker.integrations.outbox.enqueue import enqueue_for_call
from calltracker.integrations.outbox.settings import OutboxSettings
from calltracker.integrations.outbox.worker import OutboxWorkers
from calltracker.keys import (
    adspend_key,
    adspend_settings_key,
    agi_key,
    ami_key,
    card_maker_key,
    catalog_key,
    catalog_service_key,
    deal_sync_key,
    deal_sync_settings_key,
    engine_key,
    http_key,
    login_throttle_key,
    metrics_key,
    operator_hub_key,
    outbox_key,
    outbox_settings_key,
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
from calltracker.operator.cards import CardMaker
from calltracker.operator.hub import OperatorHub
from calltracker.periodic import running_every
from calltracker.reports import visit_rollup
from calltracker.settings import Settings, describe
from calltracker.telephony import recording_links
from calltracker.telephony.agi import AgiServer, CallerLookup
from calltracker.telephony.ami import AmiListener
from calltracker.telephony.calls import CallEnded, CallTracker
from calltracker.telephony.leader import (
    LEADER_KEY,
    LeadingListener,
    RedisLock,
    process_identity,
)
from calltracker.telephony.matching import Matcher
from calltracker.telephony.recorder import TRANSIENT_ERRORS, CallChange, CallRecorder
from calltracker.telephony.recordings import RecordingStore
from calltracker.tracking.ratelimit import RateLimiter
from calltracker.tracking.visits import VisitService
from calltracker.tracking.writer import VisitWriter
from calltracker.web.auth import auth_middleware
from calltracker.web.errors import error_middleware
from calltracker.web.metrics import metrics_middleware, refresh_process_gauges
from calltracker.web.routes import setup_routes
from number_pool.memory import MemoryPool
from number_pool.redis import RedisPool

log = logging.getLogger(__name__)

USER_AGENT = "calltracker/0.1"
# Each worker writes its AMI gauges this often: a scrape reaches any one worker, and
# reads the others' values from the files they last wrote.
METRICS_REFRESH_SECONDS = 1.0
ORPHAN_CHECK_SECONDS = 1.0


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
    app[catalog_service_key] = CatalogService(app[sessionmaker_key], refresh=catalog.refresh)
    yield
    await catalog.close()
    await pools.close()


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


async def http_ctx(app: web.Application) -> AsyncIterator[None]:
    """The one outgoing HTTP session every adapter shares (connection pooling, one close)."""
    # Adapters pass their own per-request timeouts; this total is only a backstop.
    session = aiohttp.ClientSession(
        headers={"User-Agent": USER_AGENT}, timeout=aiohttp.ClientTimeout(total=300)
    )
    app[http_key] = session
    yield
    await session.close()


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    """The delivery loops (integrations/outbox/), after the database and the HTTP session."""
    settings = app.get(outbox_settings_key) or OutboxSettings()
    if settings.workers > 1 and is_sqlite(app[engine_key]):
        # SQLite has one writer; more loops would only queue on its lock.
        log.warning("event=outbox_workers_capped requested=%s sqlite=1", settings.workers)
        settings = replace(settings, workers=1)
    days = settings.recording_link_days
    ttl = None if days is None else timedelta(days=days)

    def link(call: Call) -> str:
        return recording_links.call_recording_url(app[settings_key], call, ttl=ttl, now=utcnow())

    workers = OutboxWorkers(app[sessionmaker_key], app[http_key], settings, recording_link=link)
    app[outbox_key] = workers
    workers.start()
    log.info("event=outbox_started workers=%s", settings.workers)
    yield
    await workers.stop()


async def deals_ctx(app: web.Application) -> AsyncIterator[None]:
    """Deals back from the CRMs (deals/sync.py): the records their webhooks named, and the
    polling backstop. After the outbox, whose adapters it shares: one rate limiter and one
    set of OAuth tokens per CRM, however many loops talk to it."""
    workers = app[outbox_key]
    sync = DealSync(
        app[sessionmaker_key],
        workers.adapters,
        app.get(deal_sync_settings_key) or DealSyncSettings(),
        on_won=workers.wake,  # a won deal queued its reports to the ad platforms
    )
    app[deal_sync_key] = sync

    async def look() -> None:
        await sync.run_once()

    # Nothing to read at start-up that cannot wait one interval: the app comes up first.
    interval = sync.settings.interval
    async with running_every(interval, look, "deal-sync", first_after=interval):
        yield


async def adspend_ctx(app: web.Application) -> AsyncIterator[None]:
    """Pull ad spend from the platforms (adspend/): every tick, the due accounts this process
    can claim; with several workers each account is pulled by one of them at a time (its
    lease in the database), so ticks in every worker are safe."""
    settings = app.get(adspend_settings_key) or SyncSettings()
    runner = SyncRunner(app[sessionmaker_key], app[http_key], settings)
    app[adspend_key] = runner

    async def tick() -> None:
        await runner.run_due()

    async with running_every(settings.tick_seconds, tick, "adspend-sync"):
        yield


async def telephony_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    matcher = Matcher(
        app[catalog_key], app[pools_key], app[sessionmaker_key], settings.grace_seconds
    )
    recordings = RecordingStore(settings.recordings_dir, settings.asterisk_recordings_dir)
    recorder = CallRecorder(
        app[sessionmaker_key], app[catalog_key], matcher, convert_recording=recordings.convert
    )
    # Outbox rows are written inside each call's transaction; the workers wake after commit,
    # so they look now rather than at their next poll.
    recorder.add_observer(enqueue_for_call)
    recorder.add_observer(functools.partial(_wake_outbox, app), after_commit=True)
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


async def _wake_outbox(app: web.Application, change: CallChange) -> None:
    workers = app.get(outbox_key)
    if workers is not None:
        workers.wake()


async def agi_ctx(app: web.Application) -> AsyncIterator[None]:
    """The FastAGI server, when CALLTRACKER_AGI_PORT is not off; a port in use is logged,
    not fatal: the dialplan routes calls unchanged when AGI() cannot connect."""
    settings = app[settings_key]
    if settings.agi_port < 0:
        log.info("event=agi_off")
        yield
        return
    matcher = Matcher(
        app[catalog_key], app[pools_key], app[sessionmaker_key], settings.grace_seconds
    )
    # The recorder, so that FastAGI can make the call's row when it is first to see the call;
    # only with AMI on, since only the listener ever ends a call it starts.
    recorder = app.get(recorder_key)
    lookup = CallerLookup(
        app[sessionmaker_key],
        app[catalog_key],
        matcher,
        start_call=recorder.store if recorder is not None and settings.ami.enabled else None,
    )
    server = AgiServer(lookup, settings.agi_host, settings.agi_port)
    try:
        await server.start()
    except OSError as err:
        log.error(
            "event=agi_listen_failed host=%s port=%s error=%s",
            settings.agi_host,
            settings.agi_port,
            err,
        )
        yield
        return
    app[agi_key] = server
    log.info("event=agi_listening host=%s port=%s", settings.agi_host, server.port)
    try:
        yield
    finally:
        await server.close()


async def operator_ctx(app: web.Application) -> AsyncIterator[None]:
    """The consoles' hub, fed by the call recorder; with Redis it also hears the other
    processes. After the telephony context, whose recorder feeds it."""
    settings = app[settings_key]
    hub = OperatorHub(
        redis=app[redis_key] if settings.uses_redis else None,
        prefix=settings.redis_prefix + "operator:",
    )
    maker = CardMaker(app[sessionmaker_key], app[catalog_key], hub)
    recorder = app.get(recorder_key)
    if recorder is not None:  # registered before any await, so no call fact slips past
        recorder.add_observer(maker, after_commit=True)
    app[operator_hub_key] = hub
    app[card_maker_key] = maker
    await hub.start()
    leads = asyncio.create_task(maker.run_lead_refresh(), name="operator-lead-refresh")
    yield
    leads.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leads
    await hub.close()


async def close_consoles(app: web.Application) -> None:
    # Open websockets would hold the server's graceful shutdown for its whole timeout.
    hub = app.get(operator_hub_key)
    if hub is not None:
        hub.disconnect_all()


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Count stored calls; keep this worker's gauges fresh for scrapes another worker answers."""
    metrics = app[metrics_key]

    async def count_call(change: CallChange) -> None:
        if isinstance(change.fact, CallEnded):
            metrics.calls.labels(change.call.status).inc()

    app[recorder_key].add_observer(count_call, after_commit=True)

    async def refresh() -> None:
        refresh_process_gauges(app)

    async with running_every(METRICS_REFRESH_SECONDS, refresh, "metrics-refresh"):
        yield
    # Gone, not frozen at the last value: a worker stopping leaves no leader behind.
    metrics.set_ami(leader=False, connected=False, open_calls=0, facts_waiting=0)


async def rollup_ctx(app: web.Application) -> AsyncIterator[None]:
    """Keep every site's finished days rolled up (reports/visit_rollup.py): at start, older
    days first, and then every so often, in the background; reports are right, only slower,
    until it is done."""
    sessionmaker = app[sessionmaker_key]

    async def roll_up() -> None:
        rolled = await visit_rollup.roll_up_all(sessionmaker, datetime.now(UTC))
        if rolled:
            log.info("event=visit_days_rolled_up days=%d", rolled)

    async with running_every(visit_rollup.INTERVAL_SECONDS, roll_up, "visit-rollup"):
        yield


def orphan_watch_ctx(parent: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """For a worker process: stop when the parent dies (SIGKILL leaves no one to stop us,
    nor to restart us)."""

    async def watch_ctx(_app: web.Application) -> AsyncIterator[None]:
        async def watch() -> None:
            while os.getppid() == parent:
                await asyncio.sleep(ORPHAN_CHECK_SECONDS)
            log.error("event=worker_orphaned parent=%d action=stop", parent)
            os.kill(os.getpid(), signal.SIGTERM)

        task = asyncio.create_task(watch(), name="orphan-watch")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return watch_ctx


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
    app.cleanup_ctx.extend(
        [
            db_ctx,
            redis_ctx,
            pool_ctx,
            visits_ctx,
            # Outgoing HTTP, then the outbox loops and the ad spend sync that use it.
            http_ctx,
            outbox_ctx,
            deals_ctx,  # deals back from the CRMs, through the outbox's adapters
            adspend_ctx,
            # Calls: the AMI listener starts after what it feeds and stops before it.
            telephony_ctx,
            # FastAGI caller-ID tags, and the operators' live cards fed by the recorder.
            agi_ctx,
            operator_ctx,
            metrics_ctx,  # counts stored calls; per-worker gauges
            rollup_ctx,  # finished days' visit counts for long reports
        ]
    )
    app.on_shutdown.append(close_consoles)
    setup_routes(app)
    # Pages: Jinja escapes every value, so visitor-sent UTM tags and referrers show as text.
    aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("calltracker.web", "templates"), autoescape=True
    )
    log.info("event=app_created %s", " ".join(f"{k}={v}" for k, v in describe(settings).items()))
    return app
