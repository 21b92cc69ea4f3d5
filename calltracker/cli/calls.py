"""`calltracker call ...` (alias `calls`): simulate a call, import Asterisk's CDR CSV."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from calltracker.db.models import Call
from calltracker.settings import Settings
from calltracker.telephony import offline, synth

OPERATORS = {"answered": "101", "noanswer": "102", "busy": "103"}  # as in the lab traces


def add_parser(sub: Any) -> None:
    """Register the `call` command group (also reachable as `calls`)."""
    group = sub.add_parser("call", aliases=["calls"], help="simulate a call, import CDRs")
    actions = group.add_subparsers(dest="action", required=True)

    p = actions.add_parser(
        "simulate",
        help="make a call to a tracked number and print how it was recorded",
        description="With AMI configured, Asterisk makes the call (Originate) and the running "
        "server records it; without, the events such a call produces are fed to the call "
        "tracker and recorder here, against the configured database.",
    )
    p.add_argument("--to", required=True, help="the tracked number dialled, e.g. +74951234567")
    p.add_argument("--from", dest="caller", required=True, help="the caller, e.g. +79161234567")
    p.add_argument("--answer-after", type=float, default=2.0, help="ring seconds (offline)")
    p.add_argument("--talk", type=float, default=3.0, help="talk seconds after the answer")
    p.add_argument(
        "--status", choices=["busy", "noanswer"], help="not answered (offline); default answered"
    )
    p.add_argument("--operator", help="the extension that rings (offline); default as the traces")
    p.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for the server to record it (AMI)"
    )
    p.set_defaults(func=cmd_simulate)

    p = actions.add_parser(
        "import-cdr",
        help="record calls from Asterisk's Master.csv that the listener missed",
        description="Reads cdr_csv's Master.csv (loguniqueid=yes, loguserfield=yes; optionally "
        "newcdrcolumns and our tracking_number, caller_number, recording fields, or a header "
        "line naming the columns). Calls already recorded are skipped, so it is safe to run "
        "again; each call is matched to whoever held the number when it started.",
    )
    p.add_argument("file", type=Path)
    p.add_argument(
        "--timezone",
        required=True,
        help="the PBX's time zone: start/answer/end in Master.csv are its local time "
        "(e.g. Europe/Moscow; UTC with usegmtime=yes)",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="list each imported call")
    p.set_defaults(func=cmd_import_cdr)


def describe(call: Call) -> list[str]:
    label = " / ".join(x for x in (call.source, call.medium, call.campaign) if x) or "-"
    return [
        f"call {call.id} linkedid={call.linkedid}",
        f"  {call.caller or '(hidden)'} -> {call.tracking_number}: {call.status}, "
        f"wait {call.wait_seconds} s, talk {call.talk_seconds} s, operator {call.operator or '-'}",
        f"  attribution {call.attribution}, visit {call.visit_id or '-'}",
        f"  source / medium / campaign: {label}; keyword: {call.keyword or '-'}",
        f"  unique {'yes' if call.unique else 'no'}, target {'yes' if call.target else 'no'}",
    ]


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    did = offline.dialled_digits(args.to)
    caller = offline.dialled_digits(args.caller)
    if settings.ami.enabled:
        if args.status or args.operator:
            print(
                "calltracker: with AMI the PBX decides who rings and whether they answer; "
                "--status and --operator apply only without AMI",
                file=sys.stderr,
            )
        print(f"asking Asterisk at {settings.ami.host}:{settings.ami.port} to call +{did} ...")
        found = asyncio.run(
            offline.simulate_via_ami(
                settings,
                did=did,
                caller=caller,
                talk_seconds=max(int(args.talk), 1),
                wait=args.wait,
            )
        )
        if found is None:
            print(
                f"calltracker: the call was not recorded within {args.wait:g} s; is "
                "`calltracker serve` running with AMI configured, and is the number tracked?",
                file=sys.stderr,
            )
            return 1
        for line in describe(found):
            print(line)
        return 0
    status = synth.Outcome(args.status or "answered")
    call = synth.SimulatedCall(
        did=did,
        caller=caller,
        outcome=status,
        operator=args.operator or OPERATORS[status],
        ring_seconds=args.answer_after,
        talk_seconds=args.talk,
        context=settings.ami.inbound_context,
        started_at=time.time(),
    )
    stored = asyncio.run(offline.simulate_offline(settings, call))
    print("AMI is not configured: the call's events were made up here and recorded")
    for line in describe(stored):
        print(line)
    return 0


def cmd_import_cdr(settings: Settings, args: argparse.Namespace) -> int:
    report = asyncio.run(offline.import_cdr(settings, args.file, args.timezone))
    if args.verbose:
        for line, call in report.imported:
            print(f"line {line}: " + "\n".join(describe(call)))
    for error in report.errors:
        print(f"{args.file}:{error.line}: {error.message}", file=sys.stderr)
    print(
        f"imported {len(report.imported)} calls, {len(report.already_recorded)} already "
        f"recorded, {report.other_lines} other lines (not inbound calls to tracked numbers), "
        f"{len(report.errors)} errors"
    )
    return 1 if report.errors else 0
