"""Load the recorded Asterisk 22 AMI traces in fixtures/ as raw blocks with their offsets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from calltracker.telephony.events import END, parse_block

FIXTURES = Path(__file__).parent / "fixtures"
SCENARIOS = ("answered", "noanswer", "busy", "caller_hangup", "queue", "concurrent")


@dataclass(frozen=True)
class TraceBlock:
    raw: bytes  # exactly as received, without the blank line that ends it
    headers: dict[str, str]
    offset: float  # seconds since connect, from the companion timeline

    @property
    def event(self) -> str:
        return self.headers.get("Event", "")


@dataclass(frozen=True)
class Trace:
    name: str
    banner: bytes  # "Asterisk Call Manager/11.0.0\r\n"
    blocks: tuple[TraceBlock, ...]
    epoch: float  # wall-clock time of offset 0 on the lab machine

    @property
    def login_response(self) -> TraceBlock:
        return self.blocks[0]

    @property
    def stream(self) -> tuple[TraceBlock, ...]:
        """What Asterisk sent after the Login response, less the Goodbye to our Logoff."""
        body = self.blocks[1:]
        if body and body[-1].headers.get("Response") == "Goodbye":
            body = body[:-1]
        return body

    def events(self) -> Iterator[tuple[float, dict[str, str]]]:
        """(receive time as epoch seconds, headers) for every block, as the lab saw them."""
        for block in self.blocks:
            yield self.epoch + block.offset, block.headers


def load_trace(name: str) -> Trace:
    data = (FIXTURES / f"{name}.ami.txt").read_bytes()
    banner, sep, body = data.partition(b"\r\n")
    assert sep and banner.startswith(b"Asterisk Call Manager/"), "trace must start with the banner"
    raw_blocks = body.split(END)
    assert raw_blocks.pop() == b"", "trace must end with a complete block"
    offsets = _offsets(FIXTURES / f"{name}.timeline.txt")
    assert len(offsets) == len(raw_blocks), f"{name}: timeline and trace disagree"
    blocks = tuple(
        TraceBlock(raw, parse_block(raw), offset)
        for raw, offset in zip(raw_blocks, offsets, strict=True)
    )
    return Trace(name, banner + b"\r\n", blocks, _epoch(blocks))


def _offsets(path: Path) -> list[float]:
    offsets = []
    for line in path.read_text().splitlines():
        stamp, sep, what = line.partition("<<<")
        if sep and not what.strip().startswith(("BANNER", "EOF")):
            offsets.append(float(stamp))
    return offsets


def _epoch(blocks: tuple[TraceBlock, ...]) -> float:
    # SuccessfulAuth's EventTV is the only wall-clock time in a trace without timestamps.
    for block in blocks:
        if "EventTV" in block.headers:
            when = datetime.strptime(block.headers["EventTV"], "%Y-%m-%dT%H:%M:%S.%f%z")
            return when.timestamp() - block.offset
    raise AssertionError("no EventTV in trace")
