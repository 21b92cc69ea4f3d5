"""Turns call facts into call rows: attributed at ring, completed at hangup, once per Linkedid."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exc, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker import phones
from calltracker.db.engine import SessionMaker
from calltracker.db.models import Call
from calltracker.telephony.calls import (
    CallAnswered,
    CallEnded,
    CallFact,
    CallStarted,
    CallStatus,
)
from calltracker.telephony.matching import CatalogSource, Matcher, is_target, is_unique_caller

log = logging.getLogger(__name__)

RINGING = "ringing"
# A CDR and the AMI events of one call agree on its start to a few seconds; this much slack
# also covers a PBX clock that drifted.
CDR_MATCH_WINDOW = timedelta(minutes=10)
# Failures of the database itself (down, locked, unreachable) rather than of one fact:
# the AMI listener keeps the fact and retries it (ami.py) instead of dropping it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
)


@dataclass(frozen=True)
class CallChange:
    """What observers (operator console, outbox) hear after a fact was stored."""

    call: Call
    fact: CallFact
    session: AsyncSession  # the transaction the call row was written in; still open


CallObserver = Callable[[CallChange], Awaitable[None]]
# Converts the recording of an ended call into what we keep (recordings.py); returns its
# path relative to recordings_dir, or "".
RecordingConverter = Callable[[CallEnded], Awaitable[str]]


class CallRecorder:
    """Stores call facts: one row per call, found by Linkedid, or for a call recovered from a
    CDR also by the inbound channel's Uniqueid, so that a CDR never doubles a call.

    Writers: the AMI listener (every fact) and FastAGI (CallStarted, so that the dialplan
    learns the call's id while it rings), possibly in different processes.
    """

    def __init__(
        self,
        sessionmaker: SessionMaker,
        catalog: CatalogSource,
        matcher: Matcher,
        convert_recording: RecordingConverter | None = None,
        observers: Sequence[CallObserver] = (),
        after_commit: Sequence[CallObserver] = (),
    ) -> None:
        self._sessionmaker = sessionmaker
        self._catalog = catalog
        self._matcher = matcher
        self._convert = convert_recording
        self._observers = list(observers)  # run inside the call's transaction (outbox rows)
        self._after_commit = list(after_commit)  # run once it is committed (live pushes)

    def add_observer(self, observer: CallObserver, *, after_commit: bool = False) -> None:
        (self._after_commit if after_commit else self._observers).append(observer)

    def is_tracked(self, dialled: str) -> bool:
        return self._matcher.is_tracked(dialled)

    async def handle(self, fact: CallFact) -> None:
        """The AMI listener's sink."""
        await self.store(fact)

    async def store(self, fact: CallFact) -> Call | None:
        """Store one fact; the call row, or None when it was already recorded (from a CDR)."""
        if _from_cdr(fact):
            async with self._sessionmaker() as session:
                known = await self._find(session, fact)
            if known is not None and known.status != RINGING:
                log.info(
                    "event=cdr_call_already_recorded linkedid=%s call_id=%s",
                    fact.linkedid,
                    known.id,
                )
                return None
        recording = ""
        if isinstance(fact, CallEnded) and fact.recording and self._convert is not None:
            # Converting is slow; do it before the transaction so the row lock is brief.
            try:
                recording = await self._convert(fact)
            except Exception:
                log.exception("event=recording_failed linkedid=%s", fact.linkedid)
        try:
            change = await self._store_once(fact, recording)
        except exc.IntegrityError:
            # Two writers made the call's row at once (FastAGI and the AMI listener, maybe in
            # two workers): the other one's row is there now; this fact updates it.
            log.info("event=call_row_raced linkedid=%s", fact.linkedid)
            change = await self._store_once(fact, recording)
        if change is None:
            return None
        call = change.call
        for observer in self._after_commit:
            try:
                await observer(change)
            except Exception:  # a live push failing must not lose or redo the stored call
                log.exception("event=call_observer_failed linkedid=%s", fact.linkedid)
        return call

    async def _store_once(self, fact: CallFact, recording: str) -> CallChange | None:
        async with self._sessionmaker.begin() as session:
            call = await self._store(session, fact, recording)
            if call is None:
                return None
            change = CallChange(call, fact, session)
            for observer in self._observers:
                await observer(change)
        return change

    async def _find(self, session: AsyncSession, fact: CallFact) -> Call | None:
        call = await session.scalar(select(Call).where(Call.linkedid == fact.linkedid))
        if call is not None or not isinstance(fact, CallEnded) or not _from_cdr(fact):
            return call
        # A CDR names the inbound channel, not the Linkedid: with Local channels (and some
        # trunks) they differ, so look among the number's calls of that time for the channel.
        number = self._matcher.lookup(fact.did)
        rows = await session.scalars(
            select(Call).where(
                or_(
                    Call.linkedid == fact.uniqueid,
                    Call.tracking_number == (number.number if number else _plus(fact.did)),
                ),
                Call.started_at >= fact.started_at - CDR_MATCH_WINDOW,
                Call.started_at <= fact.started_at + CDR_MATCH_WINDOW,
            )
        )
        for row in rows:
            if row.linkedid == fact.uniqueid or fact.uniqueid in _uniqueids(row):
                return row
        return None

    async def _store(self, session: AsyncSession, fact: CallFact, recording: str) -> Call | None:
        call = await self._find(session, fact)
        if isinstance(fact, CallStarted):
            if call is None:
                call = await self._new_call(
                    session, fact.linkedid, fact.did, fact.caller, fact.started_at
                )
            # FastAGI may have made the row a moment after the channel's creation, which
            # the AMI listener's start gives: the earliest is the call's start.
            if fact.started_at < call.started_at:
                call.started_at = fact.started_at
            _add_uniqueid(call, fact.uniqueid)
            return call
        if call is None:
            started = fact.started_at if isinstance(fact, CallEnded) else fact.at
            call = await self._new_call(session, fact.linkedid, fact.did, fact.caller, started)
        if isinstance(fact, CallAnswered):
            call.answered_at = call.answered_at or fact.at
            call.operator = fact.extension or call.operator
        elif isinstance(fact, CallEnded):
            _add_uniqueid(call, fact.uniqueid)
            self._finish(call, fact, recording)
        return call

    async def _new_call(
        self, session: AsyncSession, linkedid: str, did: str, caller: str, started_at: datetime
    ) -> Call:
        attribution = await self._matcher.attribute(did, started_at.timestamp())
        number = self._matcher.lookup(did)
        site = (
            self._catalog.current.sites_by_id.get(attribution.site_id)
            if attribution.site_id is not None
            else None
        )
        region = site.country if site is not None else "RU"
        caller_e164 = phones.try_normalise(caller, region) if caller else None
        caller_value = caller_e164 or caller
        unique = await is_unique_caller(
            self._sessionmaker,
            site_id=attribution.site_id,
            caller=caller_value,
            started_at=started_at,
            window_days=site.unique_window_days if site is not None else 30,
            exclude_linkedid=linkedid,
        )
        call = Call(
            linkedid=linkedid,
            site_id=attribution.site_id,
            tracking_number=number.number if number is not None else _plus(did),
            caller=caller_value,
            started_at=started_at,
            status=RINGING,
            visit_id=attribution.decision.visit_id,
            source=attribution.source,
            medium=attribution.medium,
            campaign=attribution.campaign,
            keyword=attribution.keyword,
            attribution=attribution.decision.attribution,
            attribution_detail=attribution.decision.explanation(),
            unique=unique,
            target=False,
        )
        session.add(call)
        await session.flush()
        log.info(
            "event=call_started linkedid=%s did=%s attribution=%s visit_id=%s",
            linkedid,
            call.tracking_number,
            call.attribution,
            call.visit_id,
        )
        return call

    def _finish(self, call: Call, fact: CallEnded, recording: str) -> None:
        site = self._catalog.current.sites_by_id.get(call.site_id) if call.site_id else None
        call.answered_at = fact.answered_at or call.answered_at
        call.ended_at = fact.ended_at
        call.wait_seconds = round(fact.wait_seconds)
        call.talk_seconds = round(fact.talk_seconds)
        call.status = str(fact.status)
        # The operator is who answered; nobody for a busy or missed call.
        answered = fact.status is CallStatus.ANSWERED
        call.operator = (fact.operator or call.operator) if answered else ""
        if fact.operators_rung:
            call.attribution_detail = {
                **call.attribution_detail,
                "operators_rung": list(fact.operators_rung),
            }
        call.recording = recording
        min_talk = site.target_min_talk_seconds if site is not None else 30
        call.target = is_target(call.status, call.talk_seconds, min_talk)
        if fact.from_cdr:
            detail = dict(call.attribution_detail)
            detail["incomplete"] = "recovered from the CDR: times to the second, no ring events"
            call.attribution_detail = detail
        elif fact.reconstructed or fact.evicted:
            detail = dict(call.attribution_detail)
            detail["incomplete"] = "events were lost while the call was open; times are estimates"
            call.attribution_detail = detail
        log.info(
            "event=call_ended linkedid=%s status=%s talk=%s target=%s",
            call.linkedid,
            call.status,
            call.talk_seconds,
            call.target,
        )


def _from_cdr(fact: CallFact) -> bool:
    return isinstance(fact, CallEnded) and fact.from_cdr


def _uniqueids(call: Call) -> list[str]:
    found = call.attribution_detail.get("uniqueids", [])
    return [str(u) for u in found] if isinstance(found, list) else []


def _add_uniqueid(call: Call, uniqueid: str) -> None:
    """Keep the call's inbound channel ids: CDRs (import-cdr, Cdr events) name the call by them."""
    known = _uniqueids(call)
    if uniqueid and uniqueid not in known:
        # A new dict: the JSON column notices reassignment, not mutation in place.
        call.attribution_detail = {**call.attribution_detail, "uniqueids": [*known, uniqueid]}


def _plus(did: str) -> str:
    digits = "".join(ch for ch in did if ch.isdigit())
    return "+" + digits if digits else did
