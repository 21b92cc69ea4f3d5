"""AMI listener throughput: thousands of interleaved recorded calls over TCP, at full speed.

    python bench/ami.py [--calls 1000] [--concurrency 40]

The recorded traces (tests/telephony/fixtures) are cloned into distinct calls by rewriting
their Uniqueid/Linkedid values, interleaved as if `--concurrency` calls overlapped, and
streamed by the replaying AMI server (in a child process, on another core) into the real
AmiListener + CallTracker, pinned to one core. Prints events/s and calls/s digested, and
checks that every call ended exactly once with the status of the trace it was cloned from.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import multiprocessing
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.telephony

from calltracker.settings import AmiSettings, Secret
from calltracker.telephony.ami import AmiListener
from calltracker.telephony.calls import CallEnded, CallFact, CallTracker
from tests.telephony.ami_server import AmiReplayServer
from tests.telephony.traces import SCENARIOS, TraceBlock, load_trace

ID_RE = re.compile(rb"\b17953426\d\d\.\d+\b")
TRACKED = {"74951234567", "74951234568", "74951234569", "74951234570", "74951234571"}
STATUS = {
    "answered": ["answered"],
    "noanswer": ["missed"],
    "busy": ["busy"],
    "caller_hangup": ["missed"],
    "queue": ["answered"],
    "concurrent": ["answered", "answered"],
}


def call_blocks(name: str) -> list[TraceBlock]:
    """A trace's blocks from its first Newchannel on: the call(s) and nothing else."""
    stream = list(load_trace(name).stream)
    first = next(i for i, b in enumerate(stream) if b.event == "Newchannel")
    return [b for b in stream[first:] if b.raw.startswith(b"Event: ")]


def build_stream(calls: int, concurrency: int) -> tuple[list[TraceBlock], Counter[str]]:
    templates = [(name, call_blocks(name)) for name in SCENARIOS]
    mean_length = sum(b[-1].offset - b[0].offset for _, b in templates) / len(templates)
    gap = mean_length / concurrency
    expected: Counter[str] = Counter()

    def clone(k: int) -> Iterator[tuple[float, int, int, bytes]]:
        name, blocks = templates[k % len(templates)]
        expected.update(STATUS[name])
        ids: dict[bytes, bytes] = {}

        def fresh(m: re.Match[bytes]) -> bytes:
            return ids.setdefault(m.group(0), b"%d.%d" % (1_800_000_000 + k, len(ids)))

        start = k * gap - blocks[0].offset
        for i, block in enumerate(blocks):
            yield start + block.offset, k, i, ID_RE.sub(fresh, block.raw)

    # Headers stay empty: the server only needs them to answer CoreShowChannels after a
    # drop, and the bench never drops (the snapshot at login comes before any call).
    merged = heapq.merge(*(clone(k) for k in range(calls)))
    return [TraceBlock(raw, {}, at) for at, _, _, raw in merged], expected


def serve(conn: Connection, calls: int, concurrency: int) -> None:
    """Child process: build the stream, serve it, report the port and what to expect."""
    os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    blocks, expected = build_stream(calls, concurrency)

    async def main() -> None:
        server = AmiReplayServer(blocks)
        await server.start()
        conn.send((server.port, len(blocks), dict(expected)))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await server.close()

    asyncio.run(main())


async def listen(port: int, events: int, calls: int) -> tuple[float, float, Counter[str], dict]:
    ended: Counter[str] = Counter()
    linkedids: set[str] = set()
    total = 0

    async def sink(fact: CallFact) -> None:
        nonlocal total
        if isinstance(fact, CallEnded):
            assert fact.linkedid not in linkedids, f"{fact.linkedid} ended twice"
            linkedids.add(fact.linkedid)
            ended[fact.status] += 1
            total += 1

    settings = AmiSettings(host="127.0.0.1", port=port, secret=Secret("calltracker"))
    tracker = CallTracker(settings.inbound_context, TRACKED.__contains__)
    listener = AmiListener(settings, tracker, sink)
    cpu0 = time.process_time()
    async with listener:
        while not listener.connected:
            await asyncio.sleep(0.001)
        wall0 = time.perf_counter()
        # +1: the CoreShowChannelsComplete of the snapshot asked for at login.
        while listener.metrics()["events_processed"] < events + 1 or total < calls:
            await asyncio.sleep(0.005)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        metrics = listener.metrics()
        sizes = tracker.sizes()
    return wall, cpu, ended, {**metrics, **{f"tracker_{k}": v for k, v in sizes.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=40)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(child, args.calls, args.concurrency), daemon=True)
    server.start()
    started = time.perf_counter()
    port, events, expected = parent.recv()
    total = sum(expected.values())
    print(
        f"stream: {args.calls} trace clones = {total} calls, {events} events "
        f"(built in {time.perf_counter() - started:.1f} s)"
    )
    os.sched_setaffinity(0, {0})
    try:
        wall, cpu, ended, metrics = asyncio.run(listen(port, events, total))
    finally:
        parent.send("stop")
        server.join(10)
    calls = sum(ended.values())
    # CPU time is the fair "one core" figure: wall time also counts whatever else the
    # machine is running.
    print(
        f"listener, one core: {events / cpu:,.0f} events/s, {calls / cpu:,.0f} calls/s "
        f"per CPU-second ({cpu:.2f} s CPU)"
    )
    print(f"wall clock: {events / wall:,.0f} events/s, {calls / wall:,.0f} calls/s ({wall:.2f} s)")
    got = {str(status): n for status, n in ended.items()}
    oddities = {k: v for k, v in metrics.items() if k.startswith("oddity_")}
    print(f"calls ended, once each: {got} (expected {expected})")
    print(f"events dropped: {metrics['events_dropped']}; oddities: {oddities}")
    print(
        f"tracker after the run: open {metrics['tracker_open_calls']}, "
        f"pending {metrics['tracker_pending_linkedids']}, "
        f"ended ids remembered {metrics['tracker_ended_linkedids']}"
    )
    if got != expected or metrics["events_dropped"]:
        raise SystemExit("MISMATCH")


if __name__ == "__main__":
    main()
