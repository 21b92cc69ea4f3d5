"""Wire helpers and the trace fixtures they parse."""

from __future__ import annotations

from collections import Counter

import pytest
from panoramisk.message import Message

from calltracker.telephony.events import format_action, from_message, parse_block

from .ami_server import ChannelBook
from .conftest import trace
from .traces import SCENARIOS


def test_traces_are_raw_crlf_bytes_with_the_readme_counts() -> None:
    answered = trace("answered")
    assert answered.banner == b"Asterisk Call Manager/11.0.0\r\n"
    assert len(answered.blocks) == 121  # README: "answered (121 blocks)"
    counts = Counter(b.event for b in answered.blocks if b.event)
    assert (counts["VarSet"], counts["Newexten"], counts["Cdr"], counts["Hangup"]) == (37, 22, 3, 4)
    for block in answered.blocks:
        assert b"\n" not in block.raw.replace(b"\r\n", b"")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_trace_starts_with_login_and_ends_with_goodbye(scenario: str) -> None:
    data = trace(scenario)
    assert data.login_response.headers["Message"] == "Authentication accepted"
    assert data.blocks[-1].headers["Response"] == "Goodbye"
    assert data.stream[0].event == "FullyBooted"
    offsets = [b.offset for b in data.blocks]
    assert offsets == sorted(offsets)


def test_parse_block_keeps_empty_values_and_the_first_repeated_header() -> None:
    block = b"Event: VarSet\r\nAccountCode: \r\nVariable: A\r\nVariable: B\r\nBare:"
    assert parse_block(block) == {"Event": "VarSet", "AccountCode": "", "Variable": "A", "Bare": ""}


def test_format_action_round_trips_through_parse_block() -> None:
    wire = format_action({"Action": "CoreShowChannels", "ActionID": "x-1"})
    assert wire == b"Action: CoreShowChannels\r\nActionID: x-1\r\n\r\n"
    assert parse_block(wire[:-4]) == {"Action": "CoreShowChannels", "ActionID": "x-1"}


def test_from_message_turns_a_panoramisk_message_into_a_plain_dict() -> None:
    raw = trace("answered").blocks[4].raw.decode()
    message = Message.from_line(raw)
    assert message is not None
    event = from_message(message)
    assert type(event) is dict
    assert event == parse_block(raw)
    assert event["Linkedid"] == "1795342603.59"  # case as Asterisk sent it
    multi = Message({"Event": "X", "ChanVariable": ["A=1", "B=2"]})
    assert from_message(multi)["ChanVariable"] == "A=1"


def test_channel_book_lists_what_is_live_at_a_point_of_the_trace() -> None:
    data = trace("answered")
    book = ChannelBook()
    for block in data.blocks:
        book.apply(block.headers, block.offset)
        if block.event == "BridgeEnter" and block.headers["Uniqueid"] == "1795342603.60":
            break
    listed = {c["Uniqueid"]: c for c in book.snapshot(block.offset + 1)}
    assert sorted(listed) == ["1795342603.59", "1795342603.60", "1795342603.61", "1795342603.62"]
    a2, b1 = listed["1795342603.60"], listed["1795342603.61"]
    assert (a2["ChannelStateDesc"], a2["Application"], a2["Context"]) == (
        "Up",
        "Dial",
        "from-trunk",
    )
    assert a2["BridgeId"] == b1["BridgeId"] != ""
    assert b1["Application"] == "AppDial" and a2["Duration"] == "00:00:03"
