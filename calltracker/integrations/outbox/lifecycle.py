"""Wiring into the app: the outbox_ctx cleanup context and the recorder's observers."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

from aiohttp import web

from calltracker.db.engine import is_sqlite
from calltracker.db.models import Call, utcnow
from calltracker.integrations.outbox.enqueue import enqueue_for_call
from calltracker.integrations.outbox.settings import OutboxSettings
from calltracker.integrations.outbox.worker import OutboxWorkers
from calltracker.keys import (
    engine_key,
    http_key,
    outbox_key,
    outbox_settings_key,
    sessionmaker_key,
    settings_key,
)
from calltracker.settings import Settings
from calltracker.telephony import recording_links
from calltracker.telephony.recorder import CallChange, CallObserver

log = logging.getLogger(__name__)


def _link(settings: Settings, ttl: timedelta, call: Call) -> str:
    return recording_links.call_recording_url(settings, call, ttl=ttl, now=utcnow())


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the delivery loops after the database and the HTTP session; stop them first."""
    settings = app.get(outbox_settings_key) or OutboxSettings()
    if settings.workers > 1 and is_sqlite(app[engine_key]):
        # SQLite has one writer; more loops would only queue on its lock.
        log.warning("event=outbox_workers_capped requested=%s sqlite=1", settings.workers)
        settings = replace(settings, workers=1)
    ttl = timedelta(days=settings.recording_link_days)
    workers = OutboxWorkers(
        app[sessionmaker_key],
        app[http_key],
        settings,
        recording_link=functools.partial(_link, app[settings_key], ttl),
    )
    app[outbox_key] = workers
    workers.start()
    log.info("event=outbox_started workers=%s", settings.workers)
    yield
    await workers.stop()


def outbox_observer(app: web.Application) -> CallObserver:
    """For CallRecorder(observers=...): writes outbox rows inside the call's transaction."""
    return enqueue_for_call


def outbox_wakeup(app: web.Application) -> CallObserver:
    """For CallRecorder(after_commit=...): the workers look now, not at their next poll."""

    async def wake(change: CallChange) -> None:
        workers = app.get(outbox_key)
        if workers is not None:
            workers.wake()

    return wake
