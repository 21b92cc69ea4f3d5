"""A TCP server speaking enough AMI to replay recorded Asterisk traces to a real client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from calltracker.telephony.calls import CDR_TIME_FORMAT
from calltracker.telephony.events import END, format_action, parse_block

from .traces import Trace, TraceBlock

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
FULLY_BOOTED = (
    b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 94\r\nLastReload: 94\r\n"
    b"Status: Fully Booted\r\n"
)
# The channel headers Asterisk 22 puts in CoreShowChannel (ast_manager_build_channel_state).
SNAPSHOT_FIELDS = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)


@dataclass
class _Channel:
    created: float
    fields: dict[str, str]
    bridge: str = ""
    application: str = ""
    data: str = ""


@dataclass
class ChannelBook:
    """The live channels as Asterisk would list them, from the events seen so far."""

    channels: dict[str, _Channel] = field(default_factory=dict)

    def apply(self, headers: dict[str, str], offset: float) -> None:
        event, uid = headers.get("Event"), headers.get("Uniqueid")
        if not event or not uid or "Channel" not in headers:
            return
        if event == "Hangup":
            self.channels.pop(uid, None)
            return
        chan = self.channels.get(uid)
        if chan is None:
            if event != "Newchannel":
                return
            chan = self.channels[uid] = _Channel(offset, {})
        chan.fields.update({k: headers[k] for k in SNAPSHOT_FIELDS if k in headers})
        if event == "Newexten":
            chan.application = headers.get("Application", "")
            chan.data = headers.get("AppData", "")
        elif event == "BridgeEnter":
            chan.bridge = headers.get("BridgeUniqueid", "")
        elif event == "BridgeLeave":
            chan.bridge = ""

    def snapshot(self, now: float) -> list[dict[str, str]]:
        listed = []
        for chan in self.channels.values():
            seconds = max(int(now - chan.created), 0)
            duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            listed.append(
                {
                    **chan.fields,
                    "BridgeId": chan.bridge,
                    "Application": chan.application,
                    "ApplicationData": chan.data,
                    "Duration": duration,
                }
            )
        return listed


class AmiReplayServer:
    """Replays `blocks` (what Asterisk sent after the Login response) to AMI clients.

    It sends the banner, answers Login with the trace's own response (with the client's
    ActionID, which panoramisk matches responses on), then streams the blocks at full
    speed or at the recorded pace. It can cut the connection mid-stream and lose what
    "happens" while the client is away, and answers CoreShowChannels with the channels
    live at that point of the trace, as Asterisk would after a reconnect.

    The stream position is shared by all connections: a client that reconnects after a
    drop carries on where the previous connection stopped, as with a live Asterisk.

    :param epoch: wall-clock time of offset 0, for the Timestamp headers.
    :param speed: None streams at full speed; 1.0 at the recorded pace; 4.0 four times faster.
    :param timestamps: add `Timestamp:` to events, as `timestampevents=yes` does.
    :param drop_after: close the connection once this many blocks have been sent.
    :param lost_on_drop: blocks that "happen" while the client is away: never sent, but
        live channels in later CoreShowChannels reflect them.
    :param stream_after_snapshot: after a login, hold the stream until the client's
        CoreShowChannels is answered (a legal ordering that makes tests deterministic).
    :param rewrite: text to replace in every block, e.g. {"74951234567": "74957770001"}
        to replay a trace as a call to another DID (or from another caller).
    :param hold: stream nothing until `release()`, or until a client sends Originate (as a
        real Asterisk would only then start the call); lets a test set up the app first.

    A client that logs in with `Events: off` (an action-only client such as `calltracker
    call simulate`) gets responses but never the stream, as with Asterisk.
    """

    def __init__(
        self,
        blocks: Sequence[TraceBlock],
        *,
        login_response: bytes = b"Response: Success\r\nActionID: x\r\nMessage: Authentication accepted",
        banner: bytes = BANNER,
        username: str = "calltracker",
        secret: str = "calltracker",
        epoch: float = 1_795_342_600.0,
        speed: float | None = None,
        timestamps: bool = True,
        drop_after: int | None = None,
        lost_on_drop: int = 0,
        stream_after_snapshot: bool = False,
        answer_pings: bool = True,
        rewrite: Mapping[str, str] | None = None,
        hold: bool = False,
    ) -> None:
        self.blocks = rewrite_blocks(blocks, rewrite) if rewrite else list(blocks)
        self.login_response = login_response
        self.banner = banner
        self.username = username
        self.secret = secret
        self.epoch = epoch
        self._recorded_epoch = epoch  # the clock the trace's Cdr time strings are on
        self.speed = speed
        self.timestamps = timestamps
        self.drop_after = drop_after
        self.lost_on_drop = lost_on_drop
        self.stream_after_snapshot = stream_after_snapshot
        self.answer_pings = answer_pings
        self.cursor = 0
        self.connections = 0
        self.logins = 0
        self.actions: list[dict[str, str]] = []
        self.finished = asyncio.Event()
        self.book = ChannelBook()
        self._rendered = [self._render(b) for b in self.blocks]
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._dropped = False
        self._go = asyncio.Event()
        if not hold:
            self._go.set()

    def release(self, epoch: float | None = None) -> None:
        """Start a held stream; `epoch` moves the trace's clock (e.g. to now, so that the
        call starts after the visits a test made)."""
        if epoch is not None:
            self.epoch = epoch
            self._rendered = [self._render(b) for b in self.blocks]
        self._go.set()

    @classmethod
    def from_trace(cls, trace: Trace, **options: Any) -> AmiReplayServer:
        options.setdefault("epoch", trace.epoch)
        return cls(
            trace.stream,
            login_response=trace.login_response.raw,
            banner=trace.banner,
            **options,
        )

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        # Closing the sockets ends each connection's handler (its read sees EOF);
        # cancelling a handler instead makes asyncio.start_server log an error.
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> AmiReplayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def actions_named(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.actions if a.get("Action", "").lower() == name.lower()]

    # -- per connection ------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        streamer: asyncio.Task[None] | None = None
        events_off = False
        try:
            writer.write(self.banner)
            while True:
                action = parse_block(await reader.readuntil(END))
                self.actions.append(action)
                name = action.get("Action", "").lower()
                reply_id = [("ActionID", action["ActionID"])] if "ActionID" in action else []
                if name == "login":
                    if (action.get("Username"), action.get("Secret")) != (
                        self.username,
                        self.secret,
                    ):
                        writer.write(
                            format_action(
                                [("Response", "Error"), *reply_id]
                                + [("Message", "Authentication failed")]
                            )
                        )
                        break
                    self.logins += 1
                    events_off = action.get("Events", "on").lower() == "off"
                    writer.write(self._login_reply(action.get("ActionID")))
                    if self.logins > 1 and not events_off:
                        writer.write(self._stamp(FULLY_BOOTED) + END)
                    if not self.stream_after_snapshot and not events_off:
                        streamer = self._start_stream(writer)
                elif name == "ping":
                    if self.answer_pings:
                        writer.write(
                            format_action(
                                [("Response", "Success"), *reply_id, ("Ping", "Pong")]
                                + [("Timestamp", f"{self._now():.6f}")]
                            )
                        )
                elif name == "coreshowchannels":
                    writer.write(self._snapshot_reply(action.get("ActionID", "")))
                    if streamer is None and not events_off:
                        streamer = self._start_stream(writer)
                elif name == "originate":
                    writer.write(
                        format_action(
                            [("Response", "Success"), *reply_id]
                            + [("Message", "Originate successfully queued")]
                        )
                    )
                    if not self._go.is_set():
                        self.release(epoch=time.time())
                elif name == "logoff":
                    writer.write(
                        format_action(
                            [("Response", "Goodbye"), *reply_id]
                            + [("Message", "Thanks for all the fish.")]
                        )
                    )
                    break
                else:
                    writer.write(
                        format_action(
                            [("Response", "Error"), *reply_id]
                            + [("Message", "Invalid/unknown command")]
                        )
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if streamer is not None:
                streamer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await streamer
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)

    def _start_stream(self, writer: asyncio.StreamWriter) -> asyncio.Task[None]:
        task = asyncio.create_task(self._stream(writer), name="ami-replay-stream")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        await self._go.wait()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        start = self.blocks[self.cursor].offset if self.cursor < len(self.blocks) else 0.0
        while self.cursor < len(self.blocks):
            stop = len(self.blocks)
            if self.drop_after is not None and not self._dropped:
                stop = min(stop, self.drop_after)
            if self.speed is None:
                writer.write(b"".join(self._rendered[self.cursor : stop]))
                self._advance(stop)
            else:
                block = self.blocks[self.cursor]
                await asyncio.sleep(max(t0 + (block.offset - start) / self.speed - loop.time(), 0))
                writer.write(self._rendered[self.cursor])
                self._advance(self.cursor + 1)
            await writer.drain()
            if self.cursor == self.drop_after and not self._dropped:
                self._dropped = True
                lost = min(self.cursor + self.lost_on_drop, len(self.blocks))
                self._advance(lost)
                writer.close()  # graceful: what was written is delivered, then EOF
                return
        self.finished.set()

    def _advance(self, stop: int) -> None:
        for block in self.blocks[self.cursor : stop]:
            self.book.apply(block.headers, block.offset)
        self.cursor = stop

    # -- rendering -----------------------------------------------------------------------

    def _now(self) -> float:
        """The trace's clock at the current position (virtual when not paced)."""
        if not self.blocks:
            return self.epoch
        index = min(self.cursor, len(self.blocks) - 1)
        return self.epoch + self.blocks[index].offset

    def _render(self, block: TraceBlock) -> bytes:
        raw = block.raw
        shift = round(self.epoch - self._recorded_epoch)
        if shift and block.event == "Cdr":
            # The PBX's clock moved with the replay: its CDR times move too (lab zone: UTC).
            raw = _shift_cdr_times(raw, shift)
        if self.timestamps and raw.startswith(b"Event: "):
            raw = _insert_timestamp(raw, self.epoch + block.offset)
        return raw + END

    def _stamp(self, raw: bytes) -> bytes:
        return _insert_timestamp(raw, self._now()) if self.timestamps else raw

    def _login_reply(self, action_id: str | None) -> bytes:
        lines = []
        for line in self.login_response.split(b"\r\n"):
            if line.startswith(b"ActionID: "):
                if action_id is None:
                    continue
                line = b"ActionID: " + action_id.encode()
            lines.append(line)
        return b"\r\n".join(lines) + END

    def _snapshot_reply(self, action_id: str) -> bytes:
        now = self.blocks[min(self.cursor, len(self.blocks) - 1)].offset if self.blocks else 0
        channels = self.book.snapshot(now)
        out = [
            format_action(
                [
                    ("Response", "Success"),
                    ("ActionID", action_id),
                    ("EventList", "start"),
                    ("Message", "Channels will follow"),
                ]
            )
        ]
        for chan in channels:
            out.append(
                format_action(
                    [("Event", "CoreShowChannel"), ("ActionID", action_id), *chan.items()]
                )
            )
        out.append(
            format_action(
                [
                    ("Event", "CoreShowChannelsComplete"),
                    ("ActionID", action_id),
                    ("EventList", "Complete"),
                    ("ListItems", str(len(channels))),
                ]
            )
        )
        return b"".join(out)


def _insert_timestamp(raw: bytes, when: float) -> bytes:
    # Asterisk writes Timestamp right after Privilege (manager.c, timestampevents=yes).
    stamp = b"Timestamp: %.6f" % when
    head, sep, rest = raw.partition(b"\r\nPrivilege: ")
    if not sep:
        event_line, _, tail = raw.partition(b"\r\n")
        return event_line + b"\r\n" + stamp + (b"\r\n" + tail if tail else b"")
    privilege, _, tail = rest.partition(b"\r\n")
    return head + sep + privilege + b"\r\n" + stamp + (b"\r\n" + tail if tail else b"")


def _shift_cdr_times(raw: bytes, seconds: int) -> bytes:
    lines = raw.split(b"\r\n")
    for i, line in enumerate(lines):
        key, sep, value = line.partition(b": ")
        if sep and key in (b"StartTime", b"AnswerTime", b"EndTime") and value:
            when = datetime.strptime(value.decode(), CDR_TIME_FORMAT).replace(tzinfo=UTC)
            shifted = when + timedelta(seconds=seconds)
            lines[i] = key + sep + shifted.strftime(CDR_TIME_FORMAT).encode()
    return b"\r\n".join(lines)


def rewrite_blocks(blocks: Iterable[TraceBlock], rewrite: Mapping[str, str]) -> list[TraceBlock]:
    """The blocks with each key of `rewrite` replaced by its value, headers parsed anew."""
    out = []
    for block in blocks:
        raw = block.raw
        for old, new in rewrite.items():
            raw = raw.replace(old.encode(), new.encode())
        out.append(TraceBlock(raw, parse_block(raw), block.offset))
    return out


def concat_blocks(traces: Iterable[Trace]) -> list[TraceBlock]:
    """Several traces' streams one after another, offsets made continuous."""
    out: list[TraceBlock] = []
    shift = 0.0
    for trace in traces:
        stream = trace.stream
        for block in stream:
            out.append(TraceBlock(block.raw, block.headers, block.offset + shift))
        if stream:
            shift += stream[-1].offset + 0.5
    return out
