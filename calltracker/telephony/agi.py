"""FastAGI: tells the dialplan where an inbound caller came from, within a hard deadline."""

# The dialplan runs AGI(agi://HOST:4573/incoming) before it rings the operators. The channel
# waits for us, so every session has one deadline (DEADLINE_SECONDS from the connect): a
# lookup that is not back in time is abandoned, nothing is sent, and the socket is closed,
# which ends AGI() and lets the call go on unchanged. The lookup itself is never cancelled
# (cancelling a query mid-flight can leave a pooled connection in a bad state); it finishes
# in the background and its answer is dropped. At most MAX_PENDING_LOOKUPS may be left
# running like that, so a hung database cannot pile them up: past that, sessions answer
# nothing at once.
#
# What is set on a call attributed to a source (the dialplan reads unset variables as ""):
#   CALLTRACKER_CALL_ID   the Call row's id: found by the call's Linkedid, or made here if
#                         the AMI listener has not stored the call yet (it usually has not:
#                         the dialplan reaches AGI() milliseconds after the channel exists)
#   CALLTRACKER_SOURCE / _MEDIUM / _CAMPAIGN / _KEYWORD
#   CALLERID(name)        the site's callerid_template + the caller's name (or number)
# A call that matches nothing (untracked number, default number, nobody held the number)
# gets no labels and no prefix, only CALLTRACKER_CALL_ID.

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import string
import time
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from calltracker.db.engine import SessionMaker
from calltracker.db.models import Call
from calltracker.telephony.calls import CallStarted
from calltracker.telephony.matching import CatalogSource, Matcher

# CallRecorder.store: the call's row, found by Linkedid or made (ami.py's recorder).
StartCall = Callable[[CallStarted], Awaitable[Call | None]]

log = logging.getLogger(__name__)
_REPLY = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -])(?P<rest>.*)$")

SCRIPT = "incoming"
DEADLINE_SECONDS = 1.0  # the whole session: connect, headers, lookup, commands, close
SEND_RESERVE_SECONDS = 0.15  # of the deadline, kept for sending the answer
MAX_PENDING_LOOKUPS = 32
MAX_HEADER_LINES = 100  # Asterisk sends ~25 agi_* lines (plus agi_arg_N)
VALUE_MAX = 80  # a channel variable's value
PREFIX_MAX = 32  # the caller-ID tag; phones show 16-24 characters of the name
NAME_MAX = 64
DEFAULT_TEMPLATE = "[{source}/{medium}] "
TEMPLATE_FIELDS = frozenset({"source", "medium", "campaign", "keyword"})
# Caller-ID values Asterisk uses for "none".
_NO_NAME = frozenset({"", "unknown", "<unknown>", "anonymous"})


class AgiProtocolError(Exception):
    """The peer did not speak AGI as Asterisk does."""


@dataclass(frozen=True)
class AgiRequest:
    """The agi_* header block Asterisk sends first."""

    headers: Mapping[str, str]

    @property
    def script(self) -> str:
        script = self.headers.get("agi_network_script", "")
        if not script:  # older Asterisk: only agi_request (agi://host:port/script?args)
            script = self.headers.get("agi_request", "").split("://", 1)[-1].partition("/")[2]
        return script.split("?", 1)[0].strip("/")

    @property
    def dialled(self) -> tuple[str, ...]:
        """Where the DID may be: EXTEN in [from-trunk], else the dialled number."""
        return tuple(
            v
            for v in (self.headers.get("agi_extension", ""), self.headers.get("agi_dnid", ""))
            if v
        )

    @property
    def caller(self) -> str:
        return _known(self.headers.get("agi_callerid", ""))

    @property
    def caller_name(self) -> str:
        return _known(self.headers.get("agi_calleridname", ""))

    @property
    def uniqueid(self) -> str:
        return self.headers.get("agi_uniqueid", "")


@dataclass(frozen=True)
class CallerTag:
    """What the dialplan is told about one call."""

    call_id: int | None
    source: str = ""
    medium: str = ""
    campaign: str = ""
    keyword: str = ""
    template: str = DEFAULT_TEMPLATE

    @property
    def attributed(self) -> bool:
        return bool(self.source)


def _known(value: str) -> str:
    return "" if value.strip().lower() in _NO_NAME else value.strip()


def agi_text(value: str, limit: int = VALUE_MAX) -> str:
    """A value safe inside an AGI argument and on a phone's display.

    Quotes and backslashes would end or escape the quoted argument, and a newline would end
    the command and start another (UTM tags come from visitors), so they go, as does every
    other control or format character.
    """
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in value
        if ch not in '"\\' and (ch.isspace() or not unicodedata.category(ch).startswith("C"))
    )
    return " ".join(kept.split())[:limit]


def caller_tag_prefix(tag: CallerTag) -> str:
    """The site's template filled with the call's labels: "[yandex/cpc] ", or "" if none."""
    if not tag.attributed:
        return ""
    values = {
        "source": agi_text(tag.source, PREFIX_MAX),
        "medium": agi_text(tag.medium, PREFIX_MAX),
        "campaign": agi_text(tag.campaign, PREFIX_MAX),
        "keyword": agi_text(tag.keyword, PREFIX_MAX),
    }
    template = tag.template if _valid_template(tag.template) else DEFAULT_TEMPLATE
    rendered = template.format_map(values)
    # agi_text folds whitespace; keep the one space the template puts before the name.
    prefix = agi_text(rendered, PREFIX_MAX)
    return prefix + " " if prefix and rendered[-1:].isspace() else prefix


def _valid_template(template: str) -> bool:
    """Only {source} {medium} {campaign} {keyword}: no attributes, indexes or conversions."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return False
    return all(
        field is None or (field in TEMPLATE_FIELDS and not spec and conv is None)
        for _, field, spec, conv in parts
    )


def tagged_name(prefix: str, name: str, number: str) -> str:
    """The new CALLERID(name): the prefix before the caller's name, or number if nameless."""
    base = agi_text(name or number, NAME_MAX)
    if not prefix or base.startswith(prefix.strip()):  # already tagged (AGI ran twice)
        return base
    return (prefix + base).strip()[:NAME_MAX]


def commands_for(tag: CallerTag, request: AgiRequest) -> list[str]:
    """The AGI commands that tell the dialplan about the call, in the order sent."""
    commands = []
    if tag.call_id is not None:
        commands.append(_set("CALLTRACKER_CALL_ID", str(tag.call_id)))
    if tag.attributed:
        for name, value in (
            ("CALLTRACKER_SOURCE", tag.source),
            ("CALLTRACKER_MEDIUM", tag.medium),
            ("CALLTRACKER_CAMPAIGN", tag.campaign),
            ("CALLTRACKER_KEYWORD", tag.keyword),
        ):
            commands.append(_set(name, agi_text(value)))
        prefix = caller_tag_prefix(tag)
        if prefix:
            name = tagged_name(prefix, request.caller_name, request.caller)
            commands.append(_set("CALLERID(name)", name))
    return commands


def _set(variable: str, value: str) -> str:
    return f'SET VARIABLE {variable} "{value}"'


class CallerLookup:
    """Finds what to tell the dialplan: the call's row, made now through `start_call` if
    the AMI listener has not stored it yet; without `start_call`, the stored call or else
    the same attribution the recorder will make (Matcher)."""

    def __init__(
        self,
        sessionmaker: SessionMaker,
        catalog: CatalogSource,
        matcher: Matcher,
        start_call: StartCall | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._catalog = catalog
        self._matcher = matcher
        self._start_call = start_call

    def tracked(self, request: AgiRequest) -> str:
        """The tracked number the call is to, as dialled; "" when none is."""
        return next((d for d in request.dialled if self._matcher.is_tracked(d)), "")

    async def __call__(
        self, did: str, linkedid: str, at: float, request: AgiRequest | None = None
    ) -> CallerTag:
        call = None
        if linkedid and self._start_call is not None:
            # The same row the listener's CallStarted finds or makes (one per Linkedid),
            # so the dialplan gets the call's id however far behind the listener is.
            call = await self._start_call(
                CallStarted(
                    linkedid,
                    did,
                    request.caller if request is not None else "",
                    datetime.fromtimestamp(at, UTC),
                    request.headers.get("agi_channel", "") if request is not None else "",
                    request.uniqueid if request is not None else "",
                )
            )
        if call is None:
            call = await self._stored(linkedid)
        if call is not None:  # what the recorder stored is the call's attribution of record
            return CallerTag(
                call.id,
                call.source,
                call.medium,
                call.campaign,
                call.keyword,
                self._template(call.site_id),
            )
        attribution = await self._matcher.attribute(did, at)
        # The listener may have stored the call meanwhile: then its id is known too.
        call = await self._stored(linkedid)
        return CallerTag(
            call.id if call is not None else None,
            attribution.source,
            attribution.medium,
            attribution.campaign,
            attribution.keyword,
            self._template(attribution.site_id),
        )

    async def _stored(self, linkedid: str) -> Call | None:
        if not linkedid:
            return None
        async with self._sessionmaker() as session:
            found: Call | None = await session.scalar(select(Call).where(Call.linkedid == linkedid))
            return found

    def _template(self, site_id: int | None) -> str:
        site = self._catalog.current.sites_by_id.get(site_id) if site_id is not None else None
        return site.callerid_template if site is not None else DEFAULT_TEMPLATE


class AgiServer:
    """A FastAGI server for the `incoming` script; `port` is the one bound (0 picks one)."""

    def __init__(
        self,
        lookup: CallerLookup,
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        deadline: float = DEADLINE_SECONDS,
        reserve: float = SEND_RESERVE_SECONDS,
        max_pending: int = MAX_PENDING_LOOKUPS,
    ) -> None:
        self._lookup = lookup
        self._host = host
        self._port = port
        self._deadline = deadline
        self._reserve = min(reserve, deadline / 2)
        self._max_pending = max_pending
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._pending: set[asyncio.Task[CallerTag]] = set()
        self.counts: dict[str, int] = {}

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def pending_lookups(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        # SO_REUSEPORT, as for HTTP (web/server.py): every worker of `serve --workers N` listens
        # on the one AGI port and the kernel spreads the calls among them.
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, reuse_port=self._port != 0
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in [*self._sessions, *self._pending]:
            task.cancel()
        await asyncio.gather(*self._sessions, *self._pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline
        outcome = "error"
        try:
            outcome = await self._session(reader, writer, deadline)
        except TimeoutError:
            outcome = "deadline"
            log.warning("event=agi_deadline seconds=%s", self._deadline)
        except (ConnectionError, asyncio.IncompleteReadError, AgiProtocolError) as err:
            outcome = "protocol"
            log.info("event=agi_dropped error=%s", type(err).__name__)
        except Exception:  # a bug here must cost one call its tag, never the server
            log.exception("event=agi_failed")
        finally:
            self._count(outcome)
            writer.close()  # AGI() returns at once; the dialplan goes on
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 0.1)
            self._sessions.discard(task)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float
    ) -> str:
        async with asyncio.timeout_at(deadline):
            request = await read_request(reader)
            if request.script != SCRIPT:
                log.warning("event=agi_unknown_script script=%r", request.script[:64])
                return "unknown_script"
            did = self._lookup.tracked(request)
            if not did:
                return "untracked"
            reply, hungup = await command(reader, writer, "GET VARIABLE CHANNEL(linkedid)")
            if hungup:
                return "hangup"
        linkedid = reply.value or ""  # "" before Asterisk 12: then no call row to tie to
        started = time.time()
        tag = await self._resolve(did, linkedid, started, deadline - self._reserve, request)
        if tag is None:
            return "slow"
        commands = commands_for(tag, request)
        async with asyncio.timeout_at(deadline):
            for line in commands:
                reply, hungup = await command(reader, writer, line)
                if hungup or reply.code != 200:
                    log.info("event=agi_refused code=%s linkedid=%s", reply.code, linkedid)
                    return "hangup" if hungup else "refused"
        log.info(
            "event=agi_tagged linkedid=%s did=%s source=%r medium=%r call_id=%s ms=%.0f",
            linkedid,
            did,
            tag.source,
            tag.medium,
            tag.call_id,
            (time.time() - started) * 1000,
        )
        return "tagged" if tag.attributed else "unattributed"

    async def _resolve(
        self, did: str, linkedid: str, at: float, until: float, request: AgiRequest
    ) -> CallerTag | None:
        if len(self._pending) >= self._max_pending:
            log.warning("event=agi_overloaded pending=%s", len(self._pending))
            return None
        task = asyncio.create_task(
            self._lookup(did, linkedid, at, request), name=f"agi-lookup-{linkedid}"
        )
        self._pending.add(task)
        task.add_done_callback(self._lookup_done)
        loop = asyncio.get_running_loop()
        done, _ = await asyncio.wait({task}, timeout=max(until - loop.time(), 0))
        if not done:
            # Not cancelled: it finishes in the background and _lookup_done drops it.
            log.warning("event=agi_slow_lookup linkedid=%s did=%s", linkedid, did)
            return None
        return task.result() if task.exception() is None else None

    def _lookup_done(self, task: asyncio.Task[CallerTag]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event=agi_lookup_failed error=%r", task.exception())


@dataclass(frozen=True)
class Reply:
    code: int
    result: str
    value: str | None  # the "(...)" part: GET VARIABLE's value; None when absent


async def read_request(reader: asyncio.StreamReader) -> AgiRequest:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = (await reader.readline()).decode("utf-8", "replace")
        if not line.endswith("\n"):
            raise AgiProtocolError("connection closed in the header block")
        line = line.rstrip("\r\n")
        if not line:
            return AgiRequest(headers)
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_"):
            raise AgiProtocolError(f"not an agi_ header: {line[:40]!r}")
        headers[key.strip()] = value.strip()
    raise AgiProtocolError("header block too long")


async def command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str
) -> tuple[Reply, bool]:
    """Send one command; its reply, and whether Asterisk said HANGUP (the caller left)."""
    writer.write(line.encode() + b"\n")
    await writer.drain()
    hungup = False
    in_usage = False
    while True:
        raw = await reader.readline()
        if not raw.endswith(b"\n"):
            raise AgiProtocolError("connection closed while waiting for a reply")
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if text == "HANGUP":  # sent once, before the reply, when the channel hangs up
            hungup = True
            continue
        found = _REPLY.match(text)
        if found is not None and found["sep"] == " ":
            return _reply(int(found["code"]), found["rest"]), hungup
        if found is not None:  # "520-Invalid command syntax..." opens a usage text
            in_usage = True
        elif not in_usage:
            raise AgiProtocolError(f"unexpected reply {text[:40]!r}")


def _reply(code: int, rest: str) -> Reply:
    result = ""
    value: str | None = None
    if rest.startswith("result="):
        result, _, tail = rest[len("result=") :].partition(" ")
        if tail.startswith("(") and ")" in tail:
            value = tail[1 : tail.rindex(")")]
    return Reply(code, result, value)
