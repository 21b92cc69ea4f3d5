"""Calls recorded without the web server: the CLI's CDR import and simulated calls."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from sqlalchemy import select

from calltracker import phones
from calltracker.catalog.cache import Catalog, load_catalog
from calltracker.db.engine import SessionMaker, create_engine, create_sessionmaker
from calltracker.db.migrate import require_current
from calltracker.db.models import Call, LeaseRow
from calltracker.errors import Invalid
from calltracker.settings import Settings
from calltracker.telephony import cdr, synth
from calltracker.telephony.calls import CallTracker
from calltracker.telephony.matching import LeaseHistory, Matcher
from calltracker.telephony.originate import originate
from calltracker.telephony.recorder import RINGING, CallRecorder
from calltracker.telephony.recordings import RecordingStore
from number_pool import LeaseRecord
from number_pool.policy import oldest_first, overlaps
from number_pool.redis import RedisPool

log = logging.getLogger(__name__)


class JournalHistory:
    """Lease history read straight from the `lease` table (the embedded pool's journal).

    Read-only on purpose: an in-process pool of the CLI's own would write its view of the
    leases back and could end a lease the running server has just renewed.
    """

    def __init__(self, sessionmaker: SessionMaker) -> None:
        self._sessionmaker = sessionmaker

    async def history(self, number: str, since: float, until: float) -> Sequence[LeaseRecord]:
        async with self._sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(LeaseRow).where(
                        LeaseRow.number == number,
                        LeaseRow.started_at <= until,
                        LeaseRow.ended_at > since,
                    )
                )
            ).all()
        records = [
            LeaseRecord(
                r.pool_key,
                r.number,
                r.visitor_key,
                r.visit_id,
                r.started_at,
                r.last_seen_at,
                r.ended_at,
                r.shared,
            )
            for r in rows
        ]
        return sorted((r for r in records if overlaps(r, since, until)), key=oldest_first)


@dataclass
class LoadedCatalog:
    """The catalog as loaded once: a CLI run is short."""

    current: Catalog


@dataclass
class Telephony:
    sessionmaker: SessionMaker
    catalog: LoadedCatalog
    recorder: CallRecorder
    recordings: RecordingStore


@asynccontextmanager
async def open_telephony(settings: Settings) -> AsyncIterator[Telephony]:
    """A CallRecorder on the configured database, matching through the pool's history."""
    engine = create_engine(settings.database_url)
    redis: Redis | None = None
    try:
        await require_current(engine)
        sessionmaker = create_sessionmaker(engine)
        catalog = LoadedCatalog(await load_catalog(sessionmaker))
        history: LeaseHistory
        if settings.uses_redis:
            redis = Redis.from_url(settings.redis_url.reveal())
            # The server's pool keys (app.pool_ctx); only history() is used: read-only.
            history = RedisPool(redis, prefix=settings.redis_prefix + "pool:")
        else:
            history = JournalHistory(sessionmaker)
        matcher = Matcher(catalog, history, sessionmaker, settings.grace_seconds)
        recordings = RecordingStore(settings.recordings_dir, settings.asterisk_recordings_dir)
        recorder = CallRecorder(sessionmaker, catalog, matcher, recordings.convert)
        yield Telephony(sessionmaker, catalog, recorder, recordings)
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


# -- import-cdr -------------------------------------------------------------------------------


@dataclass
class ImportReport:
    imported: list[tuple[int, Call]] = field(default_factory=list)
    already_recorded: list[tuple[int, str]] = field(default_factory=list)  # (line, uniqueid)
    other_lines: int = 0  # other contexts, helper legs, untracked numbers
    errors: list[cdr.CdrError] = field(default_factory=list)


async def import_cdr(settings: Settings, path: Path, timezone: str) -> ImportReport:
    """Record the inbound calls of a CDR CSV that are not recorded yet; safe to repeat.

    A call already stored (by the listener, or an earlier import) is skipped; a line that
    cannot be read or stored is reported with its number and the others still go in.
    """
    tz = _zone(timezone)
    report = ImportReport()
    async with open_telephony(settings) as tel:
        records: list[cdr.CdrRecord] = []
        with path.open(newline="", encoding="utf-8", errors="replace") as lines:
            for item in cdr.read_cdrs(lines, tz):
                if isinstance(item, cdr.CdrError):
                    report.errors.append(item)
                else:
                    records.append(item)
        calls, report.other_lines = cdr.inbound_calls(
            records, settings.ami.inbound_context, tel.recorder.is_tracked
        )
        for rec in calls:
            fact = cdr.to_fact(rec)
            if fact is None:
                report.errors.append(
                    cdr.CdrError(rec.line, f"unknown disposition {rec.get('disposition')!r}")
                )
                continue
            try:
                stored = await tel.recorder.store(fact)
            except Exception as err:
                log.exception("event=cdr_import_failed line=%d uniqueid=%s", rec.line, rec.key)
                report.errors.append(cdr.CdrError(rec.line, f"not stored: {err!r}"))
                continue
            if stored is None:
                report.already_recorded.append((rec.line, rec.key))
            else:
                report.imported.append((rec.line, stored))
    report.errors.sort(key=lambda e: e.line)
    return report


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        raise Invalid(f"unknown time zone {name!r}; use a name like Europe/Moscow") from None


# -- call simulate ----------------------------------------------------------------------------


def dialled_digits(number: str, region: str = "RU") -> str:
    """A number as a trunk sends it: the E.164 digits without "+"."""
    e164 = phones.try_normalise(number, region)
    if e164 is None:
        raise Invalid(f"invalid phone number {number!r}")
    return e164.removeprefix("+")


async def simulate_offline(settings: Settings, call: synth.SimulatedCall) -> Call:
    """Feed a made-up call's AMI events through CallTracker and CallRecorder; the stored row."""
    async with open_telephony(settings) as tel:
        if not tel.recorder.is_tracked(call.did):
            raise Invalid(
                f"+{call.did} is not a tracked number: calls to it are not recorded "
                "(add it to a pool or as a static number)"
            )
        tracker = CallTracker(call.context, tel.recorder.is_tracked)
        linkedid = ""
        for event in synth.events(call):
            for fact in tracker.feed(event, float(event["Timestamp"])):
                linkedid = fact.linkedid
                await tel.recorder.handle(fact)
        async with tel.sessionmaker() as session:
            stored = await session.scalar(select(Call).where(Call.linkedid == linkedid))
    if stored is None:
        raise Invalid("the simulated call was not recorded")  # a tracker bug: say so
    return stored


async def simulate_via_ami(
    settings: Settings, *, did: str, caller: str, talk_seconds: int, wait: float
) -> Call | None:
    """Ask Asterisk to make the call, then wait until the server's listener has stored it.

    None if it was not stored (ended) within `wait` seconds.
    """
    sent = datetime.now(UTC)
    await originate(settings.ami, did=did, caller=caller, wait_seconds=talk_seconds)
    engine = create_engine(settings.database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        catalog = await load_catalog(sessionmaker)
        number = catalog.lookup_number(did)
        tracking = number.number if number is not None else "+" + did
        caller_e164 = phones.try_normalise(caller) or caller
        deadline = time.monotonic() + wait
        while True:
            async with sessionmaker() as session:
                found = await session.scalar(
                    select(Call)
                    .where(
                        Call.tracking_number == tracking,
                        Call.caller == caller_e164,
                        # Asterisk's clock may be a little behind ours.
                        Call.started_at >= sent - timedelta(seconds=5),
                        Call.status != RINGING,
                    )
                    .order_by(Call.started_at)
                    .limit(1)
                )
            if found is not None or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
