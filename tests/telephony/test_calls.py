"""The call state machine, fed recorded Asterisk traces and hand-written events (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from calltracker.telephony.calls import (
    CallAnswered,
    CallEnded,
    CallFact,
    CallStarted,
    CallStatus,
    CallTracker,
    OperatorRinging,
    clean_number,
    operator_extension,
    parse_duration,
)

from .ami_server import ChannelBook
from .conftest import (
    ANSWERED,
    EXPECTED,
    MISSED,
    assert_matches,
    ended_of,
    feed_all,
    new_tracker,
    trace,
)
from .traces import SCENARIOS

# -- the recorded scenarios -----------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_recorded_call_ends_once_with_the_readme_figures(scenario: str) -> None:
    tracker = new_tracker()
    facts = feed_all(tracker, trace(scenario).events())
    ended = sorted(ended_of(facts), key=lambda e: e.linkedid)
    assert len(ended) == len(EXPECTED[scenario])
    for got, want in zip(ended, EXPECTED[scenario], strict=True):
        assert_matches(got, want)
        assert not got.reconstructed and not got.evicted
    assert tracker.sizes()["open_calls"] == 0
    assert not tracker.oddities


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_facts_of_a_call_come_in_lifecycle_order(scenario: str) -> None:
    facts = feed_all(new_tracker(), trace(scenario).events())
    for want in EXPECTED[scenario]:
        kinds = [type(f) for f in facts if f.linkedid == want.linkedid]
        assert kinds[0] is CallStarted and kinds[-1] is CallEnded
        assert kinds.count(CallStarted) == 1 and kinds.count(CallEnded) == 1
        if want.status is CallStatus.ANSWERED:
            assert kinds == [CallStarted, OperatorRinging, CallAnswered, CallEnded]
        else:
            assert kinds == [CallStarted, OperatorRinging, CallEnded]


def test_call_started_waits_for_the_local_channels_caller_id() -> None:
    facts = feed_all(new_tracker(), trace("answered").events())
    started = facts[0]
    assert isinstance(started, CallStarted)
    assert started.caller == "79161234567"
    assert started.did == "74951234567"
    # Started at A1's Newchannel, whose time agrees with the Cdr's StartTime 10:16:43.
    assert started.started_at.replace(microsecond=0) == datetime(
        2026, 11, 22, 10, 16, 43, tzinfo=UTC
    )
    assert (started.channel, started.uniqueid) == (
        "Local/74951234567@from-trunk-00000010;1",
        "1795342603.59",
    )


def test_ring_and_answer_name_the_operator_and_carry_the_call() -> None:
    facts = feed_all(new_tracker(), trace("queue").events())
    ringing = [f for f in facts if isinstance(f, OperatorRinging)]
    answered = [f for f in facts if isinstance(f, CallAnswered)]
    assert [(r.extension, r.did, r.caller) for r in ringing] == [
        ("101", "74951234570", "79161234567")
    ]
    assert [a.extension for a in answered] == ["101"]
    assert (answered[0].at - ringing[0].at).total_seconds() == pytest.approx(2.0, abs=0.05)


def test_untracked_call_in_the_same_stream_is_ignored_and_forgotten() -> None:
    tracker = CallTracker("from-trunk", lambda exten: exten == "74951234567")
    facts = feed_all(tracker, trace("concurrent").events())
    assert {f.linkedid for f in facts} == {"1795342642.96"}
    assert_matches(ended_of(facts)[0], EXPECTED["concurrent"][0])
    assert tracker.sizes()["pending_linkedids"] == 0
    assert not tracker.oddities


def test_untracked_call_is_held_only_while_its_channels_live() -> None:
    tracker = CallTracker("from-trunk", lambda exten: False)
    held = []
    for at, event in trace("answered").events():
        tracker.feed(event, at)
        held.append(tracker.sizes()["pending_linkedids"])
    assert max(held) == 1 and held[-1] == 0
    assert tracker.sizes()["open_calls"] == 0


def test_originate_own_dial_end_does_not_decide_the_outcome() -> None:
    # In busy, Originate's DialEnd (no Channel header) says NOANSWER after the real BUSY.
    events = list(trace("busy").events())
    originate_ends = [e for _, e in events if e.get("Event") == "DialEnd" and "Channel" not in e]
    assert [e["DialStatus"] for e in originate_ends] == ["NOANSWER"]
    (ended,) = ended_of(feed_all(new_tracker(), events))
    assert (ended.status, ended.dial_status) == (CallStatus.BUSY, "BUSY")


def test_operator_legs_caller_id_is_never_taken_for_the_caller() -> None:
    # Strip every trace of the caller from the trunk side (A1/A2): what is left are the
    # operator legs, whose B1 shows CallerIDNum = the DID.
    trunk = {"1795342603.59", "1795342603.60"}
    events = []
    for at, event in trace("answered").events():
        if event.get("Event") in ("NewCallerid", "Cdr"):
            continue
        if event.get("Uniqueid") in trunk:
            event = {**event, "CallerIDNum": "<unknown>"}
        events.append((at, event))
    facts = feed_all(new_tracker(), events)
    assert {f.caller for f in facts if isinstance(f, CallStarted | CallEnded)} == {""}


def test_timestamp_header_wins_over_the_receive_time() -> None:
    data = trace("answered")
    events = [
        (0.0, {**event, "Timestamp": f"{at:.6f}"} if "Event" in event else event)
        for at, event in data.events()
    ]
    (ended,) = ended_of(feed_all(new_tracker(), events))
    assert_matches(ended, EXPECTED["answered"][0])
    assert ended.started_at.timestamp() == pytest.approx(data.epoch + 0.503, abs=0.002)


def test_business_cdr_decides_a_call_whose_dial_end_was_lost() -> None:
    lost = {"DialEnd", "Newstate"}
    events = [(at, e) for at, e in trace("answered").events() if e.get("Event") not in lost]
    (ended,) = ended_of(feed_all(new_tracker(), events))
    assert ended.status is CallStatus.ANSWERED
    assert ended.talk_seconds == 3.0  # the Cdr's BillableSeconds
    assert ended.operator == "101"


def test_cdr_after_the_last_hangup_is_normal_and_adds_no_call() -> None:
    tracker = new_tracker()
    facts = feed_all(tracker, trace("busy").events())  # its Cdrs all follow the Hangups
    assert not tracker.oddities
    assert len(ended_of(facts)) == 1


def test_the_business_cdr_of_an_unseen_call_makes_the_call_once() -> None:
    tracker = new_tracker()
    cdrs = [(at, e) for at, e in trace("noanswer").events() if e.get("Event") == "Cdr"]
    # A1's helper CDR, A2's post-Dial CDR and the operator's say nothing of their own.
    assert len([e for _, e in cdrs if e["DestinationContext"] == "from-trunk"]) == 3
    (ended,) = ended_of(feed_all(tracker, cdrs))
    assert tracker.oddities["cdr_unknown_call"] == 1
    assert (ended.linkedid, ended.uniqueid, ended.did) == (
        "1795342612.67",
        "1795342612.67",
        "74951234568",
    )
    assert (ended.caller, ended.status, ended.operator) == ("79161234567", MISSED, "")
    assert (ended.wait_seconds, ended.talk_seconds, ended.answered_at) == (8.0, 0.0, None)
    assert ended.recording == "/tmp/asterisk-rec/1795342612.67.wav"
    assert ended.from_cdr and ended.reconstructed
    # StartTime is the lab's local time (UTC); the offset comes from EndTime vs receipt.
    assert ended.started_at == datetime(2026, 11, 22, 10, 16, 52, tzinfo=UTC)


def test_a_cdr_in_another_time_zone_still_gives_the_start_on_our_clock() -> None:
    tracker = new_tracker()
    events = []
    for at, e in trace("answered").events():
        if e.get("Event") == "Cdr":
            e = dict(e)  # the same PBX with its clock on Moscow time (UTC+3)
            for key in ("StartTime", "AnswerTime", "EndTime"):
                e[key] = e[key].replace("10:16:", "13:16:")
            events.append((at, e))
    (ended,) = ended_of(feed_all(tracker, events))
    assert ended.started_at == datetime(2026, 11, 22, 10, 16, 43, tzinfo=UTC)
    assert (ended.status, ended.wait_seconds, ended.talk_seconds) == (ANSWERED, 2.0, 3.0)
    assert ended.operator == "101"


def test_a_lookup_that_raises_leaves_the_call_untracked_and_counted() -> None:
    def broken(exten: str) -> bool:
        raise LookupError(exten)

    tracker = CallTracker("from-trunk", broken)
    assert feed_all(tracker, trace("answered").events()) == []
    assert tracker.oddities["is_tracked_error"] >= 1


# -- hand-written events: production shapes the lab could not record -----------------


@dataclass
class Chan:
    """One channel, to write its AMI events tersely."""

    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    caller: str = "<unknown>"
    state: str = "Ring"

    def ev(self, event: str, **extra: str) -> dict[str, str]:
        return {
            "Event": event,
            "Channel": self.name,
            "ChannelStateDesc": self.state,
            "CallerIDNum": self.caller,
            "Context": self.context,
            "Exten": self.exten,
            "Uniqueid": self.uniqueid,
            "Linkedid": self.linkedid,
            **extra,
        }

    def dial(self, event: str, dest: Chan, **extra: str) -> dict[str, str]:
        return {
            **self.ev(event),
            "DestChannel": dest.name,
            "DestUniqueid": dest.uniqueid,
            "DestLinkedid": dest.linkedid,
            "DestExten": self.exten,  # Dial() copies the caller's EXTEN: a trap
            **extra,
        }

    def up(self) -> dict[str, str]:
        self.state = "Up"
        return self.ev("Newstate")


def feed_timed(
    tracker: CallTracker, events: list[dict[str, str]], step: float = 1.0
) -> list[CallFact]:
    return feed_all(tracker, ((1000.0 + i * step, e) for i, e in enumerate(events)))


def pjsip_call(did: str = "74951234567") -> tuple[Chan, Chan, Chan]:
    trunk = Chan("PJSIP/zadarma-00000001", "1.1", "1.1", "from-trunk", did, "+79161234567")
    op101 = Chan("PJSIP/101-00000002", "1.2", "1.1", "operators", "101", did)
    op102 = Chan("PJSIP/102-00000003", "1.3", "1.1", "operators", "102", did)
    return trunk, op101, op102


def test_pjsip_call_starts_at_newchannel_and_names_the_endpoint() -> None:
    trunk, op, _ = pjsip_call()
    facts = feed_timed(
        new_tracker(),
        [
            trunk.ev("Newchannel"),
            op.ev("Newchannel"),
            trunk.dial("DialBegin", op, DialString="101"),
            op.up(),
            trunk.dial("DialEnd", op, DialStatus="ANSWER"),
            trunk.up(),
            op.ev("Hangup"),
            trunk.ev("Hangup"),
        ],
    )
    assert isinstance(facts[0], CallStarted) and facts[0].caller == "+79161234567"
    (ended,) = ended_of(facts)
    assert (ended.status, ended.operator, ended.uniqueid) == (CallStatus.ANSWERED, "101", "1.1")
    assert (ended.wait_seconds, ended.talk_seconds) == (4.0, 3.0)


def test_ring_all_rings_each_operator_and_the_one_who_answers_gets_the_call() -> None:
    trunk, op101, op102 = pjsip_call()
    facts = feed_timed(
        new_tracker(),
        [
            trunk.ev("Newchannel"),
            trunk.ev("QueueCallerJoin", Queue="support"),
            trunk.dial("DialBegin", op101, DialString="PJSIP/101"),
            trunk.dial("DialBegin", op102, DialString="PJSIP/102"),
            trunk.dial("DialEnd", op102, DialStatus="ANSWER"),
            trunk.dial("DialEnd", op101, DialStatus="CANCEL"),
            trunk.dial("AgentConnect", op102, Interface="PJSIP/102", HoldTime="3"),
            op101.ev("Hangup"),
            op102.ev("Hangup"),
            trunk.ev("Hangup"),
        ],
    )
    assert [f.extension for f in facts if isinstance(f, OperatorRinging)] == ["101", "102"]
    assert [f.extension for f in facts if isinstance(f, CallAnswered)] == ["102"]
    (ended,) = ended_of(facts)
    assert (ended.status, ended.operator, ended.operators_rung) == (
        CallStatus.ANSWERED,
        "102",
        ("101", "102"),
    )
    assert ended.dial_status == "CANCEL"  # the last leg to end, kept raw
    assert ended.wait_seconds == 4.0


def test_ring_all_with_nobody_answering_is_missed_by_nobody_in_particular() -> None:
    trunk, op101, op102 = pjsip_call()
    (ended,) = ended_of(
        feed_timed(
            new_tracker(),
            [
                trunk.ev("Newchannel"),
                trunk.dial("DialBegin", op101),
                trunk.dial("DialBegin", op102),
                trunk.dial("DialEnd", op101, DialStatus="BUSY"),
                trunk.dial("DialEnd", op102, DialStatus="NOANSWER"),
                trunk.ev("Hangup"),
            ],
        )
    )
    assert (ended.status, ended.operator, ended.answered_at) == (CallStatus.MISSED, "", None)
    assert ended.operators_rung == ("101", "102")


@pytest.mark.parametrize(
    ("dial_status", "status"),
    [
        ("ANSWER", CallStatus.ANSWERED),
        ("NOANSWER", CallStatus.MISSED),
        ("CANCEL", CallStatus.MISSED),
        ("BUSY", CallStatus.BUSY),
        ("CHANUNAVAIL", CallStatus.FAILED),
        ("CONGESTION", CallStatus.FAILED),
    ],
)
def test_dial_status_maps_to_call_status(dial_status: str, status: CallStatus) -> None:
    trunk, op, _ = pjsip_call()
    (ended,) = ended_of(
        feed_timed(
            new_tracker(),
            [
                trunk.ev("Newchannel"),
                trunk.dial("DialBegin", op),
                trunk.dial("DialEnd", op, DialStatus=dial_status),
                trunk.ev("Hangup"),
            ],
        )
    )
    assert (ended.status, ended.dial_status) == (status, dial_status)


def test_ivr_answer_before_dial_is_not_an_operator_answer() -> None:
    trunk, op, _ = pjsip_call()
    (ended,) = ended_of(
        feed_timed(
            new_tracker(),
            [
                trunk.ev("Newchannel"),
                trunk.up(),  # Answer() + Playback(greeting)
                trunk.dial("DialBegin", op),
                trunk.dial("DialEnd", op, DialStatus="NOANSWER"),
                trunk.ev("Hangup"),
            ],
        )
    )
    assert (ended.status, ended.answered_at, ended.talk_seconds) == (CallStatus.MISSED, None, 0.0)
    assert ended.wait_seconds == 4.0


def test_up_while_an_operator_rings_is_an_answer_even_without_dial_end() -> None:
    trunk, op, _ = pjsip_call()
    facts = feed_timed(
        new_tracker(),
        [trunk.ev("Newchannel"), trunk.dial("DialBegin", op), trunk.up(), trunk.ev("Hangup")],
    )
    assert [f.extension for f in facts if isinstance(f, CallAnswered)] == ["101"]
    (ended,) = ended_of(facts)
    assert (ended.status, ended.wait_seconds, ended.talk_seconds) == (
        CallStatus.ANSWERED,
        2.0,
        1.0,
    )


def test_local_leg_that_dials_the_phone_rings_the_operator_once() -> None:
    trunk = Chan("PJSIP/trunk-00000001", "2.1", "2.1", "from-trunk", "74951234567", "79161234567")
    local1 = Chan("Local/101@operators-00000001;1", "2.2", "2.1", "operators", "101")
    local2 = Chan("Local/101@operators-00000001;2", "2.3", "2.1", "operators", "101")
    phone = Chan("PJSIP/101-00000002", "2.4", "2.1", "operators", "101")
    facts = feed_timed(
        new_tracker(),
        [
            trunk.ev("Newchannel"),
            trunk.dial("DialBegin", local1, DialString="101@operators"),
            local2.dial("DialBegin", phone, DialString="101"),
            local2.dial("DialEnd", phone, DialStatus="ANSWER"),
            trunk.dial("DialEnd", local1, DialStatus="ANSWER"),
            *(c.ev("Hangup") for c in (phone, local2, local1, trunk)),
        ],
    )
    assert [f.extension for f in facts if isinstance(f, OperatorRinging)] == ["101"]
    (ended,) = ended_of(facts)
    assert (ended.operator, ended.operators_rung) == ("101", ("101",))


def test_forward_from_the_operators_dialplan_keeps_the_operator() -> None:
    trunk = Chan("PJSIP/trunk-00000001", "3.1", "3.1", "from-trunk", "74951234567", "79161234567")
    local1 = Chan("Local/101@operators-00000001;1", "3.2", "3.1", "operators", "101")
    local2 = Chan("Local/101@operators-00000001;2", "3.3", "3.1", "operators", "101")
    mobile = Chan("PJSIP/trunk-00000002", "3.4", "3.1", "operators", "101")
    facts = feed_timed(
        new_tracker(),
        [
            trunk.ev("Newchannel"),
            trunk.dial("DialBegin", local1, DialString="101@operators"),
            local2.dial("DialBegin", mobile, DialString="89031112233@trunk"),
            local2.dial("DialEnd", mobile, DialStatus="ANSWER"),
            trunk.dial("DialEnd", local1, DialStatus="ANSWER"),
            *(c.ev("Hangup") for c in (mobile, local2, local1, trunk)),
        ],
    )
    assert [f.extension for f in facts if isinstance(f, OperatorRinging)] == ["101", "89031112233"]
    assert [f.extension for f in facts if isinstance(f, CallAnswered)] == ["101"]
    assert ended_of(facts)[0].operator == "101"


def test_call_starts_when_the_dialplan_jumps_to_a_tracked_did() -> None:
    # Trunks that deliver every call on the account login ("s", "12345") and put the DID
    # in the To header: the dialplan Goto()s to the DID.
    trunk = Chan("PJSIP/mango-00000001", "4.1", "4.1", "from-trunk", "s", "79161234567")
    before = trunk.ev("Newchannel")
    trunk.exten = "74951234567"
    facts = feed_timed(
        new_tracker(),
        [before, {**before, "Event": "Newexten"}, trunk.ev("Newexten"), trunk.ev("Hangup")],
    )
    started, ended = facts
    assert isinstance(started, CallStarted) and isinstance(ended, CallEnded)
    assert (started.did, started.started_at.timestamp()) == ("74951234567", 1000.0)
    assert ended.wait_seconds == 3.0


def test_hidden_caller_still_starts_the_call_at_its_first_real_event() -> None:
    trunk, op, _ = pjsip_call()
    trunk.caller = "anonymous"
    facts = feed_timed(new_tracker(), [trunk.ev("Newchannel"), trunk.dial("DialBegin", op)])
    assert [type(f) for f in facts] == [CallStarted, OperatorRinging]
    assert facts[0].caller == ""


def test_recording_comes_from_mixmonitor_filename() -> None:
    trunk, _, _ = pjsip_call()
    events = [
        trunk.ev("Newchannel"),
        trunk.ev("VarSet", Variable="CT_RECORDING", Value="/var/spool/x.wav"),
        trunk.ev("VarSet", Variable="MIXMONITOR_FILENAME", Value="/rec/1.1.wav"),
        trunk.ev("Hangup"),
    ]
    (ended,) = ended_of(feed_timed(new_tracker(), events))
    assert ended.recording == "/rec/1.1.wav"


# -- memory -----------------------------------------------------------------------------


def test_stuck_call_is_evicted_after_hours_with_what_is_known() -> None:
    tracker = new_tracker()
    events = list(trace("answered").events())
    answer = next(i for i, (_, e) in enumerate(events) if e.get("DialStatus") == "ANSWER")
    feed_all(tracker, events[: answer + 1])
    last = events[answer][0]
    assert tracker.evict_stale(last + 3600) == []
    facts = tracker.evict_stale(last + 5 * 3600)
    (ended,) = ended_of(facts)
    assert ended.evicted and ended.status is CallStatus.ANSWERED
    assert ended.ended_at.timestamp() == pytest.approx(last)
    assert tracker.sizes()["open_calls"] == tracker.sizes()["open_channels"] == 0
    assert tracker.oddities["call_evicted"] == 1


def test_untracked_linkedids_are_capped() -> None:
    tracker = CallTracker("from-trunk", lambda exten: False, pending_limit=10)
    for i in range(50):
        chan = Chan(f"PJSIP/t-{i:08x}", f"9.{i}", f"9.{i}", "from-trunk", "74990000000")
        tracker.feed(chan.ev("Newchannel"), 1000.0 + i)
    assert tracker.sizes()["pending_linkedids"] == 10
    assert tracker.oddities["pending_forgotten"] == 40


def test_memory_of_ended_calls_is_bounded() -> None:
    tracker = new_tracker(ended_memory=100)
    for i in range(500):
        trunk = Chan(f"PJSIP/t-{i:08x}", f"5.{i}", f"5.{i}", "from-trunk", "74951234567", "7916")
        feed_timed(tracker, [trunk.ev("Newchannel"), trunk.ev("Hangup")])
    sizes = tracker.sizes()
    assert sizes["ended_uniqueids"] == sizes["ended_linkedids"] == 100
    assert sizes["open_calls"] == sizes["open_channels"] == 0


# -- reconciliation from CoreShowChannels -------------------------------------------------


def snapshot_at(scenario: str, index: int) -> tuple[list[dict[str, str]], float]:
    """What CoreShowChannels would list after the trace's first `index` blocks."""
    data = trace(scenario)
    book = ChannelBook()
    for block in data.blocks[:index]:
        book.apply(block.headers, block.offset)
    now = data.blocks[index].offset
    return book.snapshot(now), data.epoch + now


def index_after(scenario: str, event: str, **match: str) -> int:
    blocks = trace(scenario).blocks
    return 1 + next(
        i
        for i, b in enumerate(blocks)
        if b.event == event and all(b.headers.get(k) == v for k, v in match.items())
    )


def test_call_in_progress_is_rebuilt_from_a_snapshot_and_ends_once() -> None:
    cut = index_after("answered", "BridgeEnter", Uniqueid="1795342603.60")
    channels, now = snapshot_at("answered", cut)
    assert len(channels) == 4
    tracker = new_tracker()
    facts = tracker.reconcile(channels, now)
    assert [type(f) for f in facts] == [CallStarted, OperatorRinging, CallAnswered]
    started = facts[0]
    assert isinstance(started, CallStarted) and started.reconstructed
    assert (started.did, started.caller, started.linkedid) == (
        "74951234567",
        "79161234567",
        "1795342603.59",
    )
    rest = list(trace("answered").events())[cut:]
    (ended,) = ended_of(feed_all(tracker, rest))
    assert ended.reconstructed and ended.status is CallStatus.ANSWERED
    assert (ended.operator, ended.uniqueid) == ("101", "1795342603.60")
    # MIXMONITOR_FILENAME was set before we looked: the Cdr's RecordingFile mapping tells.
    assert ended.recording == "/tmp/asterisk-rec/1795342603.60.wav"
    assert 2.0 <= ended.talk_seconds <= 6.0  # answer time is estimated within the ring


def test_call_that_vanished_while_we_were_away_ends_at_the_disconnect() -> None:
    tracker = new_tracker()
    events = list(trace("noanswer").events())
    ringing = index_after("noanswer", "DialState", Uniqueid="1795342612.67")
    feed_all(tracker, events[:ringing])
    disconnected_at = events[ringing][0] + 1.0
    tracker.mark_gap(disconnected_at)
    (ended,) = ended_of(tracker.reconcile([], disconnected_at + 60))
    assert ended.reconstructed and ended.status is CallStatus.MISSED
    assert ended.ended_at.timestamp() == pytest.approx(disconnected_at)
    assert tracker.sizes()["open_calls"] == 0


def test_snapshot_taken_before_a_call_closed_does_not_reopen_it() -> None:
    tracker = new_tracker()
    channels, now = snapshot_at("answered", index_after("answered", "DialBegin"))
    feed_all(tracker, trace("answered").events())
    assert tracker.reconcile(channels, now + 10) == []
    assert tracker.sizes()["open_calls"] == 0


def test_snapshot_missing_items_is_not_used() -> None:
    tracker = new_tracker()
    events = list(trace("answered").events())
    ringing = index_after("answered", "DialState", Uniqueid="1795342603.60")
    feed_all(tracker, events[:ringing])
    channels, now = snapshot_at("answered", ringing)
    listed = [{**c, "Event": "CoreShowChannel", "ActionID": "s1"} for c in channels[:2]]
    complete = {"Event": "CoreShowChannelsComplete", "ActionID": "s1", "ListItems": "4"}
    assert feed_all(tracker, [(now, e) for e in [*listed, complete]]) == []
    assert tracker.oddities["snapshot_incomplete"] == 1
    assert tracker.sizes()["open_calls"] == 1


def test_snapshot_through_feed_reconciles_with_the_gap() -> None:
    tracker = new_tracker()
    events = list(trace("answered").events())
    ringing = index_after("answered", "DialState", Uniqueid="1795342603.60")
    feed_all(tracker, events[:ringing])
    tracker.mark_gap(events[ringing][0])
    complete = {"Event": "CoreShowChannelsComplete", "ActionID": "s1", "ListItems": "0"}
    (ended,) = ended_of(tracker.feed(complete, events[ringing][0] + 5))
    assert ended.reconstructed
    assert ended.ended_at.timestamp() == pytest.approx(events[ringing][0])


def test_snapshot_ignores_untracked_calls() -> None:
    channels, now = snapshot_at("answered", index_after("answered", "DialBegin"))
    tracker = CallTracker("from-trunk", lambda exten: False)
    assert tracker.reconcile(channels, now) == []
    assert tracker.sizes()["open_calls"] == 0


# -- small pure helpers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("dest_channel", "dial_string", "dest_exten", "extension"),
    [
        ("Local/101@operators-00000011;1", "101@operators", "74951234567", "101"),
        ("Local/101@operators-00000019;1", "Local/101@operators/n", "101", "101"),
        ("PJSIP/101-0000002a", "101", "74951234567", "101"),
        ("SIP/102-00000001", "", "", "102"),
        ("PJSIP/trunk-0000000b", "89161234567@trunk", "", "89161234567"),
        ("", "", "103", "103"),
    ],
)
def test_operator_extension(
    dest_channel: str, dial_string: str, dest_exten: str, extension: str
) -> None:
    assert operator_extension(dest_channel, dial_string, dest_exten) == extension


@pytest.mark.parametrize(
    ("raw", "number"),
    [("<unknown>", ""), ("anonymous", ""), ("", ""), (None, ""), (" 79161234567 ", "79161234567")],
)
def test_clean_number(raw: str | None, number: str) -> None:
    assert clean_number(raw) == number


@pytest.mark.parametrize(("raw", "seconds"), [("00:01:05", 65), ("01:00:00", 3600), ("7", 7)])
def test_parse_duration(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == seconds
