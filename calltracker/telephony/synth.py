"""AMI events of one made-up inbound call, shaped like the lab traces, for `call simulate`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from calltracker.telephony.calls import CDR_TIME_FORMAT


class Outcome(StrEnum):
    ANSWERED = "answered"
    NOANSWER = "noanswer"
    BUSY = "busy"


# What Dial() reports and what the CDR says for each outcome (answered/noanswer/busy traces).
_DIAL_STATUS = {Outcome.ANSWERED: "ANSWER", Outcome.NOANSWER: "NOANSWER", Outcome.BUSY: "BUSY"}
_DISPOSITION = {Outcome.ANSWERED: "ANSWERED", Outcome.NOANSWER: "NO ANSWER", Outcome.BUSY: "BUSY"}
# The operator side's hangup causes in those traces (busy: 17 on the phone's half).
_OPERATOR_CAUSES = {
    Outcome.ANSWERED: (("16", "Normal Clearing"), ("16", "Normal Clearing")),
    Outcome.NOANSWER: (("0", "Unknown"), ("0", "Unknown")),
    Outcome.BUSY: (("17", "User busy"), ("0", "Unknown")),
}
BUSY_AFTER_SECONDS = 0.5  # Busy() answers at once; the trace shows half a second
DIAL_TIMEOUT = 8  # the lab dialplan's Dial(...,8)


@dataclass(frozen=True)
class SimulatedCall:
    """The call to make up. Times are epoch seconds; `started_at` is the first event."""

    did: str  # as the trunk sends it: digits without "+" (74951234567)
    caller: str  # digits (79161234567)
    outcome: Outcome = Outcome.ANSWERED
    operator: str = "101"
    ring_seconds: float = 2.0  # until the operator answers, or gives up (noanswer)
    talk_seconds: float = 3.0
    context: str = "from-trunk"
    started_at: float = 0.0
    linkedid: str = ""  # "" picks a new one: "sim-<epoch>.<n>", never an Asterisk id


@dataclass(frozen=True)
class _Channel:
    name: str
    uniqueid: str
    context: str
    exten: str


def new_linkedid(at: float) -> str:
    return f"sim-{int(at)}.{secrets.randbelow(900_000) + 100_000}"


def events(call: SimulatedCall) -> list[dict[str, str]]:
    """Every event the listener reads for such a call, in order, with Timestamp headers.

    The channel topology is the lab's (fixtures README): A1/A2 the two halves of
    Local/<DID>@<context> (A2 stands for the trunk channel and runs Dial), B1/B2 the two
    halves of Local/<operator>@operators. No MIXMONITOR_FILENAME: there is no audio.
    """
    return list(_events(call))


def _events(call: SimulatedCall) -> Iterator[dict[str, str]]:
    t0 = call.started_at
    linkedid = call.linkedid or new_linkedid(t0)
    system, _, seq = linkedid.rpartition(".")
    n = int(seq)

    def uid(i: int) -> str:
        return f"{system}.{n + i}"

    a_tag, b_tag = secrets.token_hex(4), secrets.token_hex(4)
    a1 = _Channel(f"Local/{call.did}@{call.context}-{a_tag};1", uid(0), call.context, call.did)
    a2 = _Channel(f"Local/{call.did}@{call.context}-{a_tag};2", uid(1), call.context, call.did)
    op = call.operator
    b1 = _Channel(f"Local/{op}@operators-{b_tag};1", uid(2), "operators", call.did)
    b2 = _Channel(f"Local/{op}@operators-{b_tag};2", uid(3), "operators", op)
    caller = call.caller

    def chan(
        c: _Channel, state: str, cid: str, connected: str, prefix: str = ""
    ) -> list[tuple[str, str]]:
        code = _STATES[state]
        return [
            (f"{prefix}Channel", c.name),
            (f"{prefix}ChannelState", code),
            (f"{prefix}ChannelStateDesc", state),
            (f"{prefix}CallerIDNum", cid),
            (f"{prefix}CallerIDName", "Caller" if cid != "<unknown>" else "<unknown>"),
            (f"{prefix}ConnectedLineNum", connected),
            (f"{prefix}ConnectedLineName", "Caller" if connected != "<unknown>" else "<unknown>"),
            (f"{prefix}Language", "en"),
            (f"{prefix}AccountCode", ""),
            (f"{prefix}Context", c.context),
            (f"{prefix}Exten", c.exten),
            (f"{prefix}Priority", "1"),
            (f"{prefix}Uniqueid", c.uniqueid),
            (f"{prefix}Linkedid", linkedid),
        ]

    def event(name: str, at: float, *headers: tuple[str, str]) -> dict[str, str]:
        privilege = _PRIVILEGES.get(name, "call,all")
        return {"Event": name, "Privilege": privilege, "Timestamp": f"{at:.6f}", **dict(headers)}

    unknown = "<unknown>"
    yield event("Newchannel", t0, *chan(a1, "Down", unknown, unknown))
    yield event("Newchannel", t0, *chan(a2, "Ring", unknown, unknown))
    yield event("NewCallerid", t0, *chan(a1, "Down", caller, unknown))
    yield event("NewCallerid", t0, *chan(a2, "Ring", caller, caller))
    yield event(
        "Newexten",
        t0,
        *chan(a2, "Ring", caller, caller),
        ("Extension", call.did),
        ("Application", "Dial"),
        ("AppData", f"Local/{op}@operators,{DIAL_TIMEOUT}"),
    )
    yield event("Newchannel", t0, *chan(b1, "Down", unknown, unknown))
    yield event("Newchannel", t0, *chan(b2, "Ring", unknown, unknown))
    yield event("NewCallerid", t0, *chan(b1, "Down", call.did, caller))
    yield event("NewCallerid", t0, *chan(b2, "Ring", caller, call.did))
    yield event(
        "DialBegin",
        t0,
        *chan(a2, "Ring", caller, caller),
        *chan(b1, "Down", call.did, caller, prefix="Dest"),
        ("DialString", f"{op}@operators"),
    )

    if call.outcome is Outcome.BUSY:
        t_dial = t0 + BUSY_AFTER_SECONDS
    else:
        t_dial = t0 + max(call.ring_seconds, 0.0)
    answered = call.outcome is Outcome.ANSWERED
    b_state = "Up" if answered else "Ringing"
    if answered:
        yield event("Newstate", t_dial, *chan(b2, "Up", caller, call.did))
    yield event(
        "DialEnd",
        t_dial,
        *chan(a2, "Ring", caller, caller),
        *chan(b1, b_state, call.did, caller, prefix="Dest"),
        ("DialStatus", _DIAL_STATUS[call.outcome]),
    )
    if answered:
        yield event("Newstate", t_dial, *chan(a2, "Up", caller, caller))
    t_end = t_dial + (max(call.talk_seconds, 0.0) if answered else 0.0)
    a_state = "Up" if answered else "Ring"
    (b2_cause, b2_text), (b1_cause, b1_text) = _OPERATOR_CAUSES[call.outcome]
    yield event(
        "Hangup",
        t_end,
        *chan(b2, b_state, caller, call.did),
        ("Cause", b2_cause),
        ("Cause-txt", b2_text),
    )
    yield event(
        "Hangup",
        t_end,
        *chan(b1, b_state, call.did, caller),
        ("Cause", b1_cause),
        ("Cause-txt", b1_text),
    )
    yield event(
        "Hangup",
        t_end,
        *chan(a1, a_state, caller, caller),
        ("Cause", "16"),
        ("Cause-txt", "Normal Clearing"),
    )
    yield event(
        "Hangup",
        t_end,
        *chan(a2, a_state, caller, caller),
        ("Cause", "16"),
        ("Cause-txt", "Normal Clearing"),
    )

    def clock(t: float) -> str:
        return datetime.fromtimestamp(int(t), UTC).strftime(CDR_TIME_FORMAT)

    yield event(
        "Cdr",
        t_end,
        ("AccountCode", ""),
        ("Source", caller),
        ("Destination", call.did),
        ("DestinationContext", call.context),
        ("CallerID", f'"Caller" <{caller}>'),
        ("Channel", a2.name),
        ("DestinationChannel", b1.name),
        ("LastApplication", "Dial"),
        ("LastData", f"Local/{op}@operators,{DIAL_TIMEOUT}"),
        ("StartTime", clock(t0)),
        ("AnswerTime", clock(t_dial) if answered else ""),
        ("EndTime", clock(t_end)),
        ("Duration", str(int(t_end) - int(t0))),
        ("BillableSeconds", str(int(t_end) - int(t_dial)) if answered else "0"),
        ("Disposition", _DISPOSITION[call.outcome]),
        ("AMAFlags", "DOCUMENTATION"),
        ("UniqueID", a2.uniqueid),
        ("UserField", ""),
    )


_STATES = {"Down": "0", "Ring": "4", "Ringing": "5", "Up": "6"}
_PRIVILEGES = {"Newexten": "dialplan,all", "Cdr": "cdr,all"}
