"""Asterisk's CDR CSV (Master.csv) read back into calls, for calls the listener never saw."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from calltracker.telephony.calls import (
    BUSINESS_APPS,
    CDR_TIME_FORMAT,
    CallEnded,
    call_from_cdr,
    clean_number,
)

# cdr_csv's columns with loguniqueid=yes and loguserfield=yes, in its order.
MASTER_COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
)
NEW_COLUMNS = ("peeraccount", "linkedid", "sequence")  # cdr_csv newcdrcolumns=yes
# Our dialplan's CDR variables (asterisk_conf/extensions.conf), when a cdr_custom template
# appends them.
CUSTOM_COLUMNS = ("tracking_number", "caller_number", "recording")
# Header names people use for the custom fields (cdr_manager's, or CDR() variable names).
_ALIASES = {
    "trackingnumber": "tracking_number",
    "callernumber": "caller_number",
    "recordingfile": "recording",
    "ctrecording": "recording",
}
# The originating, dialled and helper legs are never the inbound call itself.
_OUTGOING_APPS = frozenset({"AppDial", "AppDial2", "AppQueue"})
_LOCAL_FIRST_HALF = re.compile(r"^Local/.+;1$")
_UNIQUEID = re.compile(r"^(?:[\w.-]+-)?\d+\.\d+$")
_RANK = {"ANSWERED": 3, "BUSY": 2, "NO ANSWER": 1}


@dataclass(frozen=True)
class CdrError:
    line: int
    message: str


@dataclass(frozen=True)
class CdrRecord:
    """One CDR line, times in UTC."""

    line: int
    fields: dict[str, str]
    start: datetime
    duration: int
    billsec: int

    def get(self, name: str) -> str:
        return self.fields.get(name, "").strip()

    @property
    def key(self) -> str:
        """What names the call: its inbound channel's uniqueid (the Linkedid with a trunk)."""
        return self.get("uniqueid")

    @property
    def did(self) -> str:
        return self.get("tracking_number") or self.get("dst")


def read_cdrs(lines: Iterable[str], timezone: ZoneInfo) -> Iterator[CdrRecord | CdrError]:
    """Parse Master.csv lines (or a CSV with a header naming these columns).

    Headerless rows: the 18 cdr_csv columns, then optionally newcdrcolumns' three and/or our
    three custom ones. start/answer/end are the PBX's local time in `timezone`.
    """
    reader = csv.reader(lines)
    names: tuple[str, ...] | None = None
    for row in reader:
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if names is None and row[0].strip().lower() == "accountcode":
            names = tuple(_column_name(cell) for cell in row)
            continue
        columns = names or _columns_for(row)
        if isinstance(columns, str):
            yield CdrError(line, columns)
            continue
        if len(row) != len(columns):
            yield CdrError(
                line, f"expected {len(columns)} columns as in the header, got {len(row)}"
            )
            continue
        yield _record(line, dict(zip(columns, row, strict=True)), timezone)


def _column_name(cell: str) -> str:
    name = cell.strip().lower()
    return _ALIASES.get(re.sub(r"[^a-z0-9]", "", name), name)


def _columns_for(row: list[str]) -> tuple[str, ...] | str:
    n = len(row)
    if n == 18:
        return MASTER_COLUMNS
    if n == 21:
        # newcdrcolumns or our custom ones: a linkedid and a sequence number tell them apart.
        if _UNIQUEID.match(row[19].strip()) and row[20].strip().isdigit():
            return MASTER_COLUMNS + NEW_COLUMNS
        return MASTER_COLUMNS + CUSTOM_COLUMNS
    if n == 24:
        return MASTER_COLUMNS + NEW_COLUMNS + CUSTOM_COLUMNS
    return (
        f"expected 18 columns (Master.csv with loguniqueid=yes and loguserfield=yes), "
        f"or 21/24 with newcdrcolumns or our custom fields; got {n}"
    )


def _record(line: int, fields: dict[str, str], timezone: ZoneInfo) -> CdrRecord | CdrError:
    raw = fields.get("start", "").strip()
    try:
        local = datetime.strptime(raw, CDR_TIME_FORMAT)
    except ValueError:
        return CdrError(line, f"start {raw!r} is not a time like 2026-11-22 10:16:43")
    try:
        duration = int(fields.get("duration", "").strip() or 0)
        billsec = int(fields.get("billsec", "").strip() or 0)
    except ValueError:
        return CdrError(line, "duration and billsec must be whole seconds")
    if not fields.get("uniqueid", "").strip():
        # Without it a call's CDRs cannot be told apart nor matched to what AMI recorded.
        return CdrError(line, "no uniqueid: set loguniqueid=yes in cdr.conf's [csv] section")
    # fold=0: in the repeated hour of a DST change the earlier reading wins.
    start = local.replace(tzinfo=timezone).astimezone(UTC)
    return CdrRecord(line, fields, start, duration, billsec)


def inbound_calls(
    records: Iterable[CdrRecord], context: str, is_tracked: Callable[[str], bool]
) -> tuple[list[CdrRecord], int]:
    """One record per inbound call to a tracked number, in file order; and how many lines
    were something else (other contexts, helper legs, numbers we do not track).

    A call's inbound channel may have several CDRs (Dial, then the dialplan after it): the
    one that rang operators wins, the answered one if it dialled twice.
    """
    chosen: dict[str, CdrRecord] = {}
    others = 0
    for rec in records:
        if (
            rec.get("dcontext") != context
            or rec.get("lastapp") in _OUTGOING_APPS
            or _LOCAL_FIRST_HALF.match(rec.get("channel"))
            or not is_tracked(rec.did)
        ):
            others += 1
            continue
        best = chosen.get(rec.key)
        if best is None or _preference(rec) > _preference(best):
            if best is not None:
                others += 1
            chosen[rec.key] = rec
        else:
            others += 1
    return sorted(chosen.values(), key=lambda r: r.line), others


def _preference(rec: CdrRecord) -> tuple[int, int]:
    return (rec.get("lastapp") in BUSINESS_APPS, _RANK.get(rec.get("disposition").upper(), 0))


def to_fact(rec: CdrRecord) -> CallEnded | None:
    """The call the record describes; None for a disposition we do not know."""
    key = rec.key
    return call_from_cdr(
        linkedid=rec.get("linkedid") or key,
        uniqueid=key,
        did=rec.did,
        caller=clean_number(rec.get("caller_number")) or clean_number(rec.get("src")),
        disposition=rec.get("disposition"),
        dest_channel=rec.get("dstchannel"),
        recording=rec.get("recording"),
        started_at=rec.start,
        duration=rec.duration,
        billsec=rec.billsec,
        rang_operator=rec.get("lastapp") in BUSINESS_APPS,
    )
