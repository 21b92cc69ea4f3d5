"""Call state machine: AMI events in, call facts out; pure, keyed by the call's Linkedid."""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeAlias

from calltracker.telephony.events import AmiEvent


class CallStatus(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"
    BUSY = "busy"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A tracked number was dialled. `channel`/`uniqueid`: the first inbound channel."""

    linkedid: str
    did: str
    caller: str  # "" when hidden or unknown
    started_at: datetime
    channel: str
    uniqueid: str
    reconstructed: bool = False  # rebuilt from CoreShowChannels: started_at is estimated


@dataclass(frozen=True, slots=True)
class OperatorRinging:
    """An operator's phone started ringing (one per operator leg; ring-all gives several)."""

    linkedid: str
    extension: str
    at: datetime
    did: str
    caller: str


@dataclass(frozen=True, slots=True)
class CallAnswered:
    linkedid: str
    extension: str
    at: datetime
    did: str
    caller: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """Everything the Call record needs; emitted exactly once per tracked Linkedid."""

    linkedid: str
    did: str
    caller: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime  # when the last channel of the call hung up
    wait_seconds: float  # until answer, or until the end when unanswered
    talk_seconds: float
    status: CallStatus
    dial_status: str  # raw DialStatus of the last operator leg ("" if Dial never ended)
    operator: str  # who answered; "" when nobody did (operators_rung says who rang)
    recording: str  # MIXMONITOR_FILENAME as Asterisk wrote it, "" if none
    uniqueid: str  # the inbound channel that ran Dial/Queue (names the MixMonitor file)
    operators_rung: tuple[str, ...] = ()
    reconstructed: bool = False  # events were lost while it was open: times are estimates
    evicted: bool = False  # closed after hours without events: ended_at is the last event
    # Known only from its CDR (a Cdr event or import-cdr): Linkedid may be the inbound
    # channel's Uniqueid, so the recorder also looks the call up by `uniqueid`.
    from_cdr: bool = False


CallFact: TypeAlias = CallStarted | OperatorRinging | CallAnswered | CallEnded

_UNKNOWN_NUMBERS = frozenset(
    {"", "<unknown>", "unknown", "anonymous", "restricted", "private", "unavailable"}
)
# Events that arrive in the first milliseconds of a call, before a Local channel has its
# caller id. CallStarted waits for the caller or for the first event outside this set.
_EARLY = frozenset({"Newchannel", "Newexten", "VarSet", "NewCallerid", "NewConnectedLine"})
# The dialled (outgoing) leg runs one of these "applications"; the ;2 half of a Local
# channel runs dialplan instead, so this picks one leg per operator in a snapshot.
_OUTGOING_APPS = frozenset({"AppDial", "AppDial2", "AppQueue"})
_MISSED_DIAL = frozenset({"NOANSWER", "CANCEL"})
_CDR_STATUS = {
    "ANSWERED": CallStatus.ANSWERED,
    "NO ANSWER": CallStatus.MISSED,
    "BUSY": CallStatus.BUSY,
    "FAILED": CallStatus.FAILED,
    "CONGESTION": CallStatus.FAILED,
}
_CDR_RANK = {CallStatus.ANSWERED: 3, CallStatus.BUSY: 2, CallStatus.MISSED: 1}
# The CDR of the inbound channel that rang operators; its other CDRs (the dialplan after
# Dial, Local helper halves) say nothing about the call.
BUSINESS_APPS = frozenset({"Dial", "Queue"})
CDR_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_LOCAL_RE = re.compile(r"^Local/([^@/;]+)@")
_CHANNEL_RE = re.compile(r"^[^/]+/(.+?)-[0-9a-fA-F]+(?:;\d)?$")


def clean_number(value: str | None) -> str:
    """A caller id as sent, or "" when Asterisk has none (<unknown>, anonymous...)."""
    if value is None:
        return ""
    value = value.strip()
    return "" if value.lower() in _UNKNOWN_NUMBERS else value


def operator_extension(dest_channel: str, dial_string: str = "", dest_exten: str = "") -> str:
    """The operator behind a dialled leg.

    DestExten is the last resort: for Dial() Asterisk copies the caller's EXTEN (the DID)
    into the dialled Local channel, so it is wrong exactly when it looks plausible.
    """
    m = _LOCAL_RE.match(dest_channel)
    if m:
        return m.group(1)
    if "@" in dial_string:  # PJSIP/89161234567@trunk: the number, not the endpoint
        number = dial_string.split("@", 1)[0].rsplit("/", 1)[-1]
        if number:
            return number
    m = _CHANNEL_RE.match(dest_channel)
    if m:
        return m.group(1)
    return dest_exten


def call_from_cdr(
    *,
    linkedid: str,
    uniqueid: str,
    did: str,
    caller: str,
    disposition: str,
    dest_channel: str,
    recording: str,
    started_at: datetime,
    duration: float,
    billsec: float,
    rang_operator: bool = True,
) -> CallEnded | None:
    """A call as its business CDR tells it, for calls whose events we never saw.

    `rang_operator` False: the CDR is not of a Dial/Queue (the caller hung up in an IVR),
    so nobody answered whatever its disposition. None for dispositions we do not know.
    """
    status = _CDR_STATUS.get(disposition.strip().upper())
    if status is None:
        return None
    if not rang_operator:
        status = CallStatus.MISSED
    duration = max(duration, 0.0)
    talk = min(max(billsec, 0.0), duration) if status is CallStatus.ANSWERED else 0.0
    ended_at = started_at + timedelta(seconds=duration)
    return CallEnded(
        linkedid=linkedid,
        did=did,
        caller=caller,
        started_at=started_at,
        answered_at=ended_at - timedelta(seconds=talk) if status is CallStatus.ANSWERED else None,
        ended_at=ended_at,
        wait_seconds=duration - talk,
        talk_seconds=talk,
        status=status,
        dial_status="",
        operator=operator_extension(dest_channel)
        if dest_channel and status is CallStatus.ANSWERED
        else "",
        recording=recording,
        uniqueid=uniqueid,
        reconstructed=True,
        from_cdr=True,
    )


def parse_duration(value: str) -> float:
    """CoreShowChannel Duration ("HH:MM:SS", or plain seconds) in seconds."""
    total = 0.0
    for part in value.strip().split(":"):
        total = total * 60 + float(part or 0)
    return total


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


@dataclass(slots=True)
class _Dial:
    extension: str
    top_level: bool  # dialled by an inbound channel, not by an operator's own dialplan
    status: str = ""


@dataclass(slots=True)
class _Call:
    linkedid: str
    did: str
    started_at: float
    channel: str
    uniqueid: str
    last_event_at: float
    caller: str = ""
    alive: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    inbound: set[str] = field(default_factory=set)
    dials: dict[str, _Dial] = field(default_factory=dict)
    dial_results: list[str] = field(default_factory=list)
    dial_uniqueid: str = ""
    answered_at: float | None = None
    operator: str = ""
    operators_rung: list[str] = field(default_factory=list)
    recording: str = ""
    cdr_status: CallStatus | None = None
    cdr_billsec: float | None = None
    cdr_operator: str = ""  # the answered business CDR's DestinationChannel
    cdr_caller: str = ""
    cdr_recording: str = ""
    started_emitted: bool = False
    answer_emitted: bool = False
    reconstructed: bool = False  # events may be missing: durations are estimates
    rebuilt: bool = False  # first seen in a snapshot: started_at is an estimate


@dataclass(slots=True)
class _Pending:
    """A Linkedid that entered the inbound context on a number we do not track (yet)."""

    first_at: float
    last_at: float
    channel: str
    uniqueid: str
    alive: set[str] = field(default_factory=set)
    inbound: set[str] = field(default_factory=set)
    checked_exten: str = ""


class CallTracker:
    """Follows tracked inbound calls through AMI events and emits their facts.

    Feed every AMI event, in order, to `feed` with the time it was received; it returns
    the facts it caused. Calls are keyed by Linkedid. Pure: no I/O, no clock; the
    caller passes times in (epoch seconds).

    :param inbound_context: the dialplan context where trunk calls arrive (from-trunk).
    :param is_tracked: does this Exten (digits as Asterisk sent them) belong to a tracked
        number? Called for inbound channels only; must be fast and must not block.
    :param stale_after: a call with no event for this long is closed as evicted.
    """

    def __init__(
        self,
        inbound_context: str,
        is_tracked: Callable[[str], bool],
        *,
        stale_after: float = 4 * 3600.0,
        pending_limit: int = 10_000,
        ended_memory: int = 20_000,
        ended_ttl: float = 3600.0,
    ) -> None:
        self._context = inbound_context
        self._is_tracked = is_tracked
        self._stale_after = stale_after
        self._pending_limit = pending_limit
        self._ended_memory = ended_memory
        self._ended_ttl = ended_ttl
        self._calls: dict[str, _Call] = {}
        self._owner: dict[str, str] = {}  # Uniqueid -> Linkedid of open calls (Cdr lookup)
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        # Recently closed calls: Cdrs arrive after the last Hangup (busy trace), and a
        # snapshot taken before a close may be processed after it; neither may reopen.
        self._ended_uniqueids: OrderedDict[str, float] = OrderedDict()
        self._ended_linkedids: OrderedDict[str, float] = OrderedDict()
        self._snapshot: dict[str, list[AmiEvent]] = {}
        self._gap_since: float | None = None
        # Asterisk clock minus ours, learnt from Timestamp headers, so that times we
        # make up (receive times, snapshot "now") share the clock of the event times.
        self._skew = 0.0
        self.oddities: Counter[str] = Counter()

    @property
    def open_calls(self) -> int:
        return len(self._calls)

    @property
    def pending_linkedids(self) -> int:
        return len(self._pending)

    def sizes(self) -> dict[str, int]:
        """How much the tracker holds, by kind: every one of these is bounded."""
        return {
            "open_calls": len(self._calls),
            "open_channels": len(self._owner),
            "pending_linkedids": len(self._pending),
            "ended_uniqueids": len(self._ended_uniqueids),
            "ended_linkedids": len(self._ended_linkedids),
            "snapshot_channels": sum(len(v) for v in self._snapshot.values()),
        }

    # -- input ---------------------------------------------------------------------

    def feed(self, event: AmiEvent, received_at: float) -> list[CallFact]:
        """Apply one AMI event; `received_at` is used when it has no Timestamp header."""
        name = event.get("Event")
        if not name:
            return []  # action responses; OriginateResponse is an Event, and has no Linkedid
        at = self._event_time(event, received_at)
        linkedid = event.get("Linkedid")
        if linkedid is None:
            # Originate's own DialBegin/DialEnd carry only Dest* headers: skipped here.
            if name == "Cdr":
                return self._on_cdr(event, at)
            if name == "CoreShowChannelsComplete":
                channels = self._snapshot.pop(event.get("ActionID", ""), [])
                self._snapshot.clear()  # older, interrupted snapshots are useless now
                if event.get("ListItems", str(len(channels))) != str(len(channels)):
                    # A channel missing from the list would read as hung up: keep the
                    # gap open for the next snapshot rather than close live calls.
                    self.oddities["snapshot_incomplete"] += 1
                    return []
                return self._reconcile(channels, at, self._gap_since)
            return []
        if name == "CoreShowChannel":
            self._snapshot.setdefault(event.get("ActionID", ""), []).append(event)
            return []
        call = self._calls.get(linkedid)
        if call is None:
            return self._on_unknown(name, linkedid, event, at)
        return self._on_call_event(call, name, event, at)

    def mark_gap(self, since: float) -> None:
        """Events may have been lost from `since` (receive clock): disconnect, overflow.

        The next reconciliation uses it as the end time of calls that vanished meanwhile.
        Calls open now, or started before that reconciliation, end `reconstructed`.
        """
        since += self._skew
        if self._gap_since is None or since < self._gap_since:
            self._gap_since = since
        for call in self._calls.values():
            call.reconstructed = True

    def reconcile(
        self, channels: Sequence[AmiEvent], now: float, *, lost_since: float | None = None
    ) -> list[CallFact]:
        """Align open calls with a CoreShowChannels snapshot taken at `now` (receive clock).

        Channels we hold that the snapshot lacks hung up unseen; tracked calls we do not
        hold are rebuilt. `lost_since` (default: the last `mark_gap`) estimates when
        vanished calls ended.
        """
        gap = self._gap_since if lost_since is None else lost_since + self._skew
        return self._reconcile(channels, now + self._skew, gap)

    def evict_stale(self, now: float) -> list[CallFact]:
        """Close calls silent for `stale_after`, forget old untracked and ended ids."""
        now += self._skew
        facts: list[CallFact] = []
        limit = now - self._stale_after
        for call in [c for c in self._calls.values() if c.last_event_at < limit]:
            self.oddities["call_evicted"] += 1
            facts += self._close(call, call.last_event_at, evicted=True)
        for linkedid in [k for k, p in self._pending.items() if p.last_at < limit]:
            del self._pending[linkedid]
        self._prune_ended(now)
        return facts

    # -- events of unknown linkedids ---------------------------------------------------

    def _on_unknown(self, name: str, linkedid: str, ev: AmiEvent, at: float) -> list[CallFact]:
        pending = self._pending.get(linkedid)
        uniqueid = ev.get("Uniqueid", "")
        if name == "Newchannel":
            if ev.get("Context") != self._context:
                if pending is not None:  # an operator leg of an untracked call
                    pending.alive.add(uniqueid)
                    pending.last_at = at
                return []
            if linkedid in self._ended_linkedids:
                return []
            if self._tracked(ev.get("Exten", "")):
                return self._start(linkedid, ev, at, pending)
            if pending is None:
                pending = _Pending(at, at, ev.get("Channel", ""), uniqueid)
                self._pending[linkedid] = pending
                if len(self._pending) > self._pending_limit:
                    self._pending.popitem(last=False)
                    self.oddities["pending_forgotten"] += 1
            pending.alive.add(uniqueid)
            pending.inbound.add(uniqueid)
            pending.checked_exten = ev.get("Exten", "")
            pending.last_at = at
            return []
        if pending is None:
            return []
        pending.last_at = at
        if name == "Hangup":
            pending.alive.discard(uniqueid)
            if not pending.alive:
                del self._pending[linkedid]
            return []
        if name == "Newexten" and ev.get("Context") == self._context:
            # The trunk may deliver calls on a login or "s" and the dialplan then jumps to
            # the DID (Goto from a To header): the call starts when the DID shows up.
            exten = ev.get("Exten", "")
            if exten != pending.checked_exten:
                pending.checked_exten = exten
                if self._tracked(exten):
                    facts = self._start(linkedid, ev, pending.first_at, pending)
                    return facts + self._on_call_event(self._calls[linkedid], name, ev, at)
        return []

    def _start(
        self, linkedid: str, ev: AmiEvent, started_at: float, pending: _Pending | None
    ) -> list[CallFact]:
        uniqueid = ev.get("Uniqueid", "")
        call = _Call(
            linkedid=linkedid,
            did=ev.get("Exten", ""),
            started_at=started_at,
            channel=pending.channel if pending else ev.get("Channel", ""),
            uniqueid=pending.uniqueid if pending else uniqueid,
            last_event_at=started_at,
            reconstructed=self._gap_since is not None,
        )
        if pending is not None:
            del self._pending[linkedid]
            call.alive |= pending.alive
            call.inbound |= pending.inbound
        call.alive.add(uniqueid)
        call.inbound.add(uniqueid)
        for uid in call.alive:
            self._owner[uid] = linkedid
        call.caller = clean_number(ev.get("CallerIDNum"))
        self._calls[linkedid] = call
        return self._maybe_started(call, "Newchannel")

    # -- events of open calls ------------------------------------------------------------

    def _on_call_event(self, call: _Call, name: str, ev: AmiEvent, at: float) -> list[CallFact]:
        if at > call.last_event_at:
            call.last_event_at = at
        uniqueid = ev.get("Uniqueid", "")
        if name == "Hangup":
            call.alive.discard(uniqueid)
            call.gone.add(uniqueid)
            self._owner[uniqueid] = call.linkedid
            if call.alive:
                return self._maybe_started(call, name)
            return self._close(call, at)
        if uniqueid and uniqueid not in call.alive and uniqueid not in call.gone:
            call.alive.add(uniqueid)
            self._owner[uniqueid] = call.linkedid
            if ev.get("Context") == self._context:
                call.inbound.add(uniqueid)
        if not call.caller and uniqueid in call.inbound:
            # Only inbound channels: the dialled leg's CallerIDNum is the DID.
            call.caller = clean_number(ev.get("CallerIDNum"))

        facts: list[CallFact] = []
        if name == "DialBegin":
            if "Channel" in ev:  # Originate's own dial has none
                facts = self._on_dial_begin(call, ev, at)
        elif name == "DialEnd":
            if "Channel" in ev:
                facts = self._on_dial_end(call, ev, at)
        elif name == "AgentConnect":
            ext = operator_extension(
                ev.get("DestChannel", ""), ev.get("Interface", ""), ev.get("DestExten", "")
            )
            facts = self._answer(call, ext, at)
        elif name == "Newstate":
            facts = self._on_newstate(call, ev, at)
        elif name == "VarSet":
            if ev.get("Variable") == "MIXMONITOR_FILENAME" and not call.recording:
                call.recording = ev.get("Value", "")
        if not call.started_emitted:
            return self._maybe_started(call, name) + facts
        return facts

    def _on_dial_begin(self, call: _Call, ev: AmiEvent, at: float) -> list[CallFact]:
        ext = operator_extension(
            ev.get("DestChannel", ""), ev.get("DialString", ""), ev.get("DestExten", "")
        )
        top_level = ev.get("Uniqueid", "") in call.inbound
        if top_level and not call.dial_uniqueid:
            call.dial_uniqueid = ev.get("Uniqueid", "")
        # A Local leg that dials the phone itself (Local/101 -> PJSIP/101) rings the same
        # operator once, not twice.
        ringing = any(d.extension == ext and not d.status for d in call.dials.values())
        call.dials[ev.get("DestUniqueid", "")] = _Dial(ext, top_level)
        if not ext or ringing:
            return []
        if ext not in call.operators_rung:
            call.operators_rung.append(ext)
        return [self._ringing(call, ext, at)]

    def _on_dial_end(self, call: _Call, ev: AmiEvent, at: float) -> list[CallFact]:
        dest = ev.get("DestUniqueid", "")
        dial = call.dials.get(dest)
        if dial is None:  # its DialBegin was lost (reconnect)
            ext = operator_extension(
                ev.get("DestChannel", ""), ev.get("DialString", ""), ev.get("DestExten", "")
            )
            dial = call.dials[dest] = _Dial(ext, ev.get("Uniqueid", "") in call.inbound)
        status = ev.get("DialStatus", "")
        dial.status = status or "UNKNOWN"
        has_top_level = any(d.top_level for d in call.dials.values())
        if dial.top_level or not has_top_level:
            call.dial_results.append(status)
            if status == "ANSWER":
                return self._answer(call, dial.extension, at)
        return []

    def _on_newstate(self, call: _Call, ev: AmiEvent, at: float) -> list[CallFact]:
        if ev.get("ChannelStateDesc") != "Up" or ev.get("Uniqueid", "") not in call.inbound:
            return []
        # An inbound channel also goes Up when the dialplan answers for an IVR; only
        # while an operator leg rings does Up mean the operator picked up.
        ringing = [d for d in call.dials.values() if d.top_level and not d.status]
        if not ringing:
            return []
        return self._answer(call, ringing[0].extension if len(ringing) == 1 else "", at)

    def _answer(self, call: _Call, ext: str, at: float) -> list[CallFact]:
        if call.answered_at is None:
            call.answered_at = at
        if ext and not call.operator:
            call.operator = ext
        if call.answer_emitted or not call.operator:
            return []
        call.answer_emitted = True
        return [
            *self._maybe_started(call, "DialEnd"),
            CallAnswered(
                call.linkedid, call.operator, _dt(call.answered_at), call.did, call.caller
            ),
        ]

    def _ringing(self, call: _Call, ext: str, at: float) -> OperatorRinging:
        return OperatorRinging(call.linkedid, ext, _dt(at), call.did, call.caller)

    def _maybe_started(self, call: _Call, name: str) -> list[CallFact]:
        if call.started_emitted or (not call.caller and name in _EARLY):
            return []
        call.started_emitted = True
        return [
            CallStarted(
                call.linkedid,
                call.did,
                call.caller,
                _dt(call.started_at),
                call.channel,
                call.uniqueid,
                call.rebuilt,
            )
        ]

    # -- Cdr -------------------------------------------------------------------------------

    def _on_cdr(self, ev: AmiEvent, at: float) -> list[CallFact]:
        # Cdr has no Linkedid; its UniqueID is the channel's Uniqueid.
        uniqueid = ev.get("UniqueID") or ev.get("Uniqueid") or ""
        linkedid = self._owner.get(uniqueid)
        if linkedid is None:
            if uniqueid in self._ended_uniqueids:
                return []  # arrived after the last Hangup: normal, the call is closed
            if (
                ev.get("DestinationContext") == self._context
                and ev.get("LastApplication") in BUSINESS_APPS
                and self._tracked(ev.get("Destination", ""))
            ):
                # A tracked call we never saw (events lost, or a number that became tracked
                # mid-call): its business CDR is all we have, and enough for a call row.
                self.oddities["cdr_unknown_call"] += 1
                return self._call_from_cdr_event(ev, uniqueid, at)
            return []
        call = self._calls[linkedid]
        if uniqueid not in call.inbound:
            return []
        if not call.cdr_caller:
            call.cdr_caller = clean_number(ev.get("CallerNumber")) or clean_number(ev.get("Source"))
        if not call.cdr_recording:
            call.cdr_recording = ev.get("RecordingFile", "")
        # The business CDR is the trunk channel's Dial/Queue one; the same channel gets
        # another ("Hangup", NO ANSWER) for the dialplan that runs after Dial().
        if ev.get("LastApplication") not in ("Dial", "Queue"):
            return []
        status = _CDR_STATUS.get(ev.get("Disposition", ""))
        if status is None:
            return []
        if status is CallStatus.ANSWERED and ev.get("DestinationChannel"):
            call.cdr_operator = operator_extension(ev.get("DestinationChannel", ""))
        if call.cdr_status is None or _CDR_RANK.get(status, 0) > _CDR_RANK.get(call.cdr_status, 0):
            call.cdr_status = status
            try:
                call.cdr_billsec = float(ev.get("BillableSeconds", ""))
            except ValueError:
                call.cdr_billsec = None
        return []

    def _call_from_cdr_event(self, ev: AmiEvent, uniqueid: str, at: float) -> list[CallFact]:
        duration = _seconds(ev.get("Duration", ""))
        fact = call_from_cdr(
            # Cdr has no Linkedid unless cdr_manager maps it; with a SIP trunk the inbound
            # channel's Uniqueid is the Linkedid anyway.
            linkedid=ev.get("Linkedid") or uniqueid,
            uniqueid=uniqueid,
            did=ev.get("Destination", ""),
            caller=clean_number(ev.get("CallerNumber")) or clean_number(ev.get("Source")),
            disposition=ev.get("Disposition", ""),
            dest_channel=ev.get("DestinationChannel", ""),
            recording=ev.get("RecordingFile", ""),
            started_at=_dt(_cdr_start(ev, at, duration)),
            duration=duration,
            billsec=_seconds(ev.get("BillableSeconds", "")),
        )
        if fact is None:
            return []
        self._ended_uniqueids[uniqueid] = at
        self._ended_linkedids[fact.linkedid] = at
        self._pending.pop(fact.linkedid, None)
        self._prune_ended(None)
        return [fact]

    # -- closing -------------------------------------------------------------------------

    def _close(self, call: _Call, ended_at: float, *, evicted: bool = False) -> list[CallFact]:
        facts = self._maybe_started(call, "Hangup")
        del self._calls[call.linkedid]
        for uid in call.alive | call.gone:
            self._owner.pop(uid, None)
            self._ended_uniqueids[uid] = ended_at
        self._ended_linkedids[call.linkedid] = ended_at
        self._prune_ended(None)

        status, dial_status = self._outcome(call)
        answered_at = call.answered_at
        if status is CallStatus.ANSWERED and answered_at is None:
            answered_at = ended_at - (call.cdr_billsec or 0.0)
        if status is not CallStatus.ANSWERED:
            answered_at = None
        ended_at = max(ended_at, call.started_at)
        if answered_at is not None:
            answered_at = min(max(answered_at, call.started_at), ended_at)
            wait, talk = answered_at - call.started_at, ended_at - answered_at
        else:
            wait, talk = ended_at - call.started_at, 0.0
        # Only who answered: crediting a missed call to the last phone rung would blame one
        # operator of a ring-all group at random (and count busy calls as theirs).
        operator = ""
        if status is CallStatus.ANSWERED:
            # The answer's events may be lost (a reconnect): then the answered CDR names
            # the operator, or the only one who rang.
            only = call.operators_rung[0] if len(call.operators_rung) == 1 else ""
            operator = call.operator or call.cdr_operator or only
        facts.append(
            CallEnded(
                linkedid=call.linkedid,
                did=call.did,
                caller=call.caller or call.cdr_caller,
                started_at=_dt(call.started_at),
                answered_at=None if answered_at is None else _dt(answered_at),
                ended_at=_dt(ended_at),
                wait_seconds=round(wait, 3),
                talk_seconds=round(talk, 3),
                status=status,
                dial_status=dial_status,
                operator=operator,
                recording=call.recording or call.cdr_recording,
                uniqueid=call.dial_uniqueid or call.uniqueid,
                operators_rung=tuple(call.operators_rung),
                reconstructed=call.reconstructed,
                evicted=evicted,
            )
        )
        return facts

    def _outcome(self, call: _Call) -> tuple[CallStatus, str]:
        results = [s for s in call.dial_results if s]
        dial_status = results[-1] if results else ""
        if call.answered_at is not None:
            return CallStatus.ANSWERED, dial_status
        if results:
            if any(s in _MISSED_DIAL for s in results):
                return CallStatus.MISSED, dial_status
            if "BUSY" in results:
                return CallStatus.BUSY, dial_status
            return CallStatus.FAILED, dial_status  # CHANUNAVAIL, CONGESTION, ...
        if call.cdr_status is not None:
            return call.cdr_status, dial_status
        # Nobody answered and Dial never returned: the caller gave up (IVR, queue, or
        # while ringing with the DialEnd lost).
        return CallStatus.MISSED, dial_status

    def _prune_ended(self, now: float | None) -> None:
        for memory in (self._ended_uniqueids, self._ended_linkedids):
            while len(memory) > self._ended_memory:
                memory.popitem(last=False)
            if now is not None:
                while memory and next(iter(memory.values())) < now - self._ended_ttl:
                    memory.popitem(last=False)

    # -- reconciliation ------------------------------------------------------------------

    def _reconcile(
        self, channels: Sequence[AmiEvent], now: float, gap: float | None
    ) -> list[CallFact]:
        self._gap_since = None
        groups: dict[str, list[AmiEvent]] = {}
        for chan in channels:
            groups.setdefault(chan.get("Linkedid", ""), []).append(chan)
        facts: list[CallFact] = []
        for linkedid, call in list(self._calls.items()):
            facts += self._reconcile_call(call, groups.pop(linkedid, []), now, gap)
        for linkedid in [k for k in self._pending if k not in groups]:
            del self._pending[linkedid]
        for linkedid, chans in groups.items():
            if linkedid and linkedid not in self._ended_linkedids:
                facts += self._rebuild(linkedid, chans, now)
        return facts

    def _reconcile_call(
        self, call: _Call, listed: list[AmiEvent], now: float, gap: float | None
    ) -> list[CallFact]:
        listed_ids = {c.get("Uniqueid", "") for c in listed}
        vanished = call.alive - listed_ids
        new = [c for c in listed if c.get("Uniqueid", "") not in call.alive | call.gone]
        if vanished or new:
            call.reconstructed = True
        if vanished and gap is None:
            self.oddities["channel_vanished"] += 1
        call.alive -= vanished
        call.gone |= vanished
        facts = self._maybe_started(call, "CoreShowChannel")
        facts += self._adopt(call, new, now)
        if not call.caller:
            for chan in listed:
                if chan.get("Uniqueid", "") in call.inbound:
                    call.caller = clean_number(chan.get("CallerIDNum"))
                    break
        if call.answered_at is None:
            facts += self._answer_from_snapshot(call, listed, now)
        if not call.alive:
            ended_at = call.last_event_at if gap is None else max(call.last_event_at, gap)
            facts += self._close(call, ended_at)
        return facts

    def _rebuild(self, linkedid: str, chans: list[AmiEvent], now: float) -> list[CallFact]:
        inbound = [c for c in chans if c.get("Context") == self._context]
        tracked = [c for c in inbound if self._tracked(c.get("Exten", ""))]
        if not tracked:
            return []
        first = max(
            tracked,
            key=lambda c: (_duration(c), c.get("Uniqueid") == linkedid),
        )
        started_at = now - max(_duration(c) for c in chans)
        call = _Call(
            linkedid=linkedid,
            did=first.get("Exten", ""),
            started_at=started_at,
            channel=first.get("Channel", ""),
            uniqueid=first.get("Uniqueid", ""),
            last_event_at=now,
            reconstructed=True,
            rebuilt=True,
        )
        self._calls[linkedid] = call
        self._pending.pop(linkedid, None)
        for chan in inbound:
            call.inbound.add(chan.get("Uniqueid", ""))
            if not call.caller:
                call.caller = clean_number(chan.get("CallerIDNum"))
            if chan.get("Application") in ("Dial", "Queue") and not call.dial_uniqueid:
                call.dial_uniqueid = chan.get("Uniqueid", "")
        facts = self._maybe_started(call, "CoreShowChannel")
        facts += self._adopt(call, chans, now)
        facts += self._answer_from_snapshot(call, chans, now)
        return facts

    def _adopt(self, call: _Call, chans: list[AmiEvent], now: float) -> list[CallFact]:
        """Add channels first seen in a snapshot; a new operator leg means ringing."""
        facts: list[CallFact] = []
        for chan in chans:
            uid = chan.get("Uniqueid", "")
            call.alive.add(uid)
            self._owner[uid] = call.linkedid
            if chan.get("Context") == self._context:
                call.inbound.add(uid)
            elif chan.get("Application") in _OUTGOING_APPS:
                ext = operator_extension(chan.get("Channel", ""))
                if ext and ext not in call.operators_rung:
                    call.operators_rung.append(ext)
                    call.dials.setdefault(uid, _Dial(ext, top_level=True))
                    facts.append(self._ringing(call, ext, now - _duration(chan)))
        return facts

    def _answer_from_snapshot(
        self, call: _Call, chans: list[AmiEvent], now: float
    ) -> list[CallFact]:
        """An inbound channel that is Up and shares a bridge with an operator leg."""
        bridges = {
            c.get("BridgeId", ""): c
            for c in chans
            if c.get("Uniqueid", "") not in call.inbound and c.get("BridgeId")
        }
        for chan in chans:
            peer = bridges.get(chan.get("BridgeId", ""))
            if (
                peer is not None
                and chan.get("Uniqueid", "") in call.inbound
                and chan.get("ChannelStateDesc") == "Up"
            ):
                # It was not answered at our last event, and the operator leg is at most
                # as old as the dial: the later of the two bounds the answer time.
                at = max(call.last_event_at, now - _duration(peer))
                call.dial_results.append("ANSWER")
                return self._answer(call, operator_extension(peer.get("Channel", "")), at)
        return []

    def _tracked(self, exten: str) -> bool:
        if not exten:
            return False
        try:
            return bool(self._is_tracked(exten))
        except Exception:
            # A broken lookup must not stop the listener; the call is then untracked.
            self.oddities["is_tracked_error"] += 1
            return False

    def _event_time(self, ev: AmiEvent, received_at: float) -> float:
        stamp = ev.get("Timestamp")
        if stamp:
            try:
                at = float(stamp)
            except ValueError:
                self.oddities["bad_timestamp"] += 1
            else:
                self._skew = at - received_at
                return at
        return received_at + self._skew


def _seconds(value: str) -> float:
    try:
        return max(float(value), 0.0)
    except ValueError:
        return 0.0


def _cdr_start(ev: AmiEvent, at: float, duration: float) -> float:
    """When the call started, on our clock: StartTime is the PBX's local time without a zone.

    A Cdr is sent as the call ends, so EndTime read against the event's own time gives the
    PBX's UTC offset (to the quarter hour every zone uses). Without parsable times: the
    event's time less the Duration.
    """
    try:
        start = datetime.strptime(ev.get("StartTime", ""), CDR_TIME_FORMAT)
        end = datetime.strptime(ev.get("EndTime", ""), CDR_TIME_FORMAT)
    except ValueError:
        return at - duration
    offset = round((at - end.replace(tzinfo=UTC).timestamp()) / 900) * 900
    return start.replace(tzinfo=UTC).timestamp() + offset


def _duration(chan: AmiEvent) -> float:
    try:
        return parse_duration(chan.get("Duration", "") or "0")
    except ValueError:
        return 0.0
