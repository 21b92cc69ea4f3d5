"""AMI listener: a panoramisk connection kept alive, feeding calls.py through one ordered queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from types import TracebackType
from typing import Any, Final

from panoramisk import Manager

from calltracker.settings import AmiSettings
from calltracker.telephony.calls import CallEnded, CallFact, CallTracker
from calltracker.telephony.events import format_action, from_message

log = logging.getLogger(__name__)

FactSink = Callable[[CallFact], Awaitable[None]]

# The event classes calls.py reads: call (Newchannel, Dial*, Hangup...), dialplan
# (Newexten, VarSet), cdr, agent (queues) and system (FullyBooted, Shutdown). Leaving
# out the rest (RTCP reports, security...) saves parsing on a busy PBX.
LOGIN_EVENTS: Final = "call,dialplan,cdr,agent,system"
SNAPSHOT_ACTION_PREFIX: Final = "calltracker-snapshot-"
# A session this long resets the reconnect backoff; shorter ones count as failures.
STABLE_SESSION_SECONDS: Final = 10.0
# Facts kept for a later try while the sink fails (database down); beyond this the oldest
# are lost (logged; `calltracker calls import-cdr` recovers their calls from the CDRs).
RETRY_LIMIT: Final = 10_000
_STOP: Final = object()


class _Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # timed out or failed transiently: kept and tried again later
    DROPPED = "dropped"  # failed in a way another try would repeat (a bug): logged, counted


@dataclass(frozen=True, slots=True)
class AmiStatus:
    """The connection as /healthz shows it."""

    connected: bool
    since: datetime | None  # when `connected` last changed; None before the first try
    last_error: str  # "" until something failed; kept after a reconnect, for the record
    last_error_at: datetime | None
    connects: int  # successful logins so far


class _SecretFilter(logging.Filter):
    """panoramisk can log a failed write of the Login action verbatim; hide the secret."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secret:
            message = record.getMessage()
            if self._secret in message:
                record.msg = message.replace(self._secret, "***")
                record.args = None
        return True


class _Manager(Manager):  # type: ignore[misc]  # panoramisk is untyped
    """A panoramisk Manager whose reconnects and pings are driven by AmiListener.

    panoramisk retries forever on a fixed int delay and pings without ever checking the
    answer; the listener needs backoff, state for health checks and a dead-peer check.
    """

    pinger: asyncio.TimerHandle | None
    protocol: Any

    def __init__(self, on_lost: Callable[[_Manager, object], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # the listener awaits the connect task and handles the error
        super().connection_made(f)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connected = False
        if self.pinger is not None:
            self.pinger.cancel()
            self.pinger = None
        # panoramisk passes the Shutdown event itself here when Asterisk stops.
        self._on_lost(self, exc)

    def ping(self) -> None:
        pass  # replaced by AmiListener._watch, which waits for the Pong

    def send_untracked(self, action: Mapping[str, str]) -> None:
        """Write an action without registering its ActionID with panoramisk.

        Its list events (CoreShowChannel...) then reach the event callback in stream
        order, among the live events, instead of being collected into a future.
        """
        self.protocol.transport.write(format_action(action))

    def pause_reading(self, paused: bool) -> None:
        transport = getattr(self.protocol, "transport", None)
        if transport is not None and not transport.is_closing():
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()


class AmiListener:
    """Listens to Asterisk over AMI and turns its events into call facts.

    One sync panoramisk callback puts each event, stamped with its receive time, into a
    bounded queue; one consumer task feeds them in order to the CallTracker and awaits
    `on_fact` for every fact. Asterisk down at start-up is not fatal: the listener keeps
    retrying with capped exponential backoff while the web server serves.

    Overflow: at 3/4 of `settings.queue_size` the socket stops being read (TCP
    backpressure; Asterisk buffers, then drops us after its writetimeout, and we
    reconnect). A single read can still overfill the queue: those events are dropped,
    counted in `events_dropped`, logged, and once the queue drains a CoreShowChannels
    snapshot repairs the calls they belonged to (as after a reconnect).

    After every login a CoreShowChannels snapshot is requested, so that calls that
    changed or started while we were away are reconciled.

    A slow sink: with `sink_timeout`, `on_fact` gets that long per fact. A fact that times
    out, or fails with one of `retry_on` (the database is down), is kept in a retry list,
    and every later fact queues behind it, so that one call's facts stay in order; events
    go on being read and tracked meanwhile. The list is retried after 1 s, doubling to
    30 s, and again at close. A timed-out attempt is cancelled and retried only once it
    has finished; if it did succeed after all, the fact counts as delivered, not redone
    (and should a cancelled attempt have committed, the retry finds the call's row by
    Linkedid and changes nothing: the recorder is idempotent per fact).
    Beyond `retry_limit` the oldest kept fact is lost (logged, `facts_lost`). Any other
    error drops the fact (`sink_error`), as a retry would fail the same way.
    """

    def __init__(
        self,
        settings: AmiSettings,
        tracker: CallTracker,
        on_fact: FactSink,
        *,
        reconnect_min_seconds: float = 0.5,
        connect_timeout: float = 10.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 10.0,
        sweep_interval: float = 60.0,
        drain_timeout: float = 5.0,
        sink_timeout: float | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        retry_limit: int = RETRY_LIMIT,
        retry_min_seconds: float = 1.0,
        retry_max_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.enabled:
            raise ValueError("AMI is not configured (CALLTRACKER_AMI_HOST is empty)")
        self._settings = settings
        self._tracker = tracker
        self._on_fact = on_fact
        self._max_delay = max(settings.reconnect_max_seconds, 0.01)
        self._min_delay = min(reconnect_min_seconds, self._max_delay)
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._sweep_interval = sweep_interval
        self._drain_timeout = drain_timeout
        self._clock = clock
        size = settings.queue_size
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=size)
        self._high_water = max(1, size * 3 // 4)
        self._low_water = size // 4
        self._paused = False
        self._manager: _Manager | None = None
        self._lost = asyncio.Event()
        self._lost_error: object = None
        self._supervisor: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._closed = False
        self._resync_pending = False
        self._snapshots = 0
        self._log_filter = _SecretFilter(settings.secret.reveal())
        self._panoramisk_log = logging.getLogger(f"{__name__}.panoramisk")
        self._panoramisk_log.addFilter(self._log_filter)
        self._connected = False
        self._since: float | None = None
        self._last_error = ""
        self._last_error_at: float | None = None
        self._connects = 0
        self._received = 0
        self._processed = 0
        self._dropped = 0
        self._pauses = 0
        self._emitted = 0
        self._oddities: Counter[str] = Counter()
        self._sink_timeout = sink_timeout
        self._retry_on = retry_on
        self._retry_limit = max(retry_limit, 1)
        self._retry_min = retry_min_seconds
        self._retry_max = max(retry_max_seconds, retry_min_seconds)
        self._retry_delay = retry_min_seconds
        self._next_retry = 0.0
        self._retry: deque[CallFact] = deque()
        # A timed-out delivery of the first kept fact, still being cancelled.
        self._abandoned: tuple[asyncio.Future[None], CallFact] | None = None
        self._sink_timeouts = 0
        self._facts_lost = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting and consuming in the background; returns at once."""
        if self._supervisor is not None:
            raise RuntimeError("AmiListener already started")
        self._consumer = asyncio.create_task(self._consume(), name="ami-consumer")
        self._supervisor = asyncio.create_task(self._supervise(), name="ami-connection")

    async def close(self) -> None:
        """Disconnect, let the consumer handle what was received, then stop it."""
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._drop_manager()
        self._set_connected(False)
        self._panoramisk_log.removeFilter(self._log_filter)
        if self._consumer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._drain_timeout):
                    await self._queue.put(_STOP)
            done, _ = await asyncio.wait({self._consumer}, timeout=self._drain_timeout)
            if not done:
                log.warning("event=ami_consumer_stopped_early queued=%d", self._queue.qsize())
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        # Let the transport finish closing inside the loop that owns it.
        await asyncio.sleep(0)

    async def __aenter__(self) -> AmiListener:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- state for health and metrics ----------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def status(self) -> AmiStatus:
        return AmiStatus(
            connected=self._connected,
            since=_dt(self._since),
            last_error=self._last_error,
            last_error_at=_dt(self._last_error_at),
            connects=self._connects,
        )

    @property
    def oddities(self) -> Counter[str]:
        """Things that should not happen, by kind: for metrics and for bug reports."""
        return self._oddities + self._tracker.oddities

    def metrics(self) -> dict[str, int]:
        """Counters for /metrics; events_received == processed + dropped + queue_depth."""
        values = {
            "connected": int(self._connected),
            "connects": self._connects,
            "events_received": self._received,
            "events_processed": self._processed,
            "events_dropped": self._dropped,
            "queue_depth": self._queue.qsize(),
            "backpressure_pauses": self._pauses,
            "facts_emitted": self._emitted,
            "facts_waiting": len(self._retry),
            "facts_lost": self._facts_lost,
            "sink_timeouts": self._sink_timeouts,
            "open_calls": self._tracker.open_calls,
        }
        values.update({f"oddity_{kind}": n for kind, n in sorted(self.oddities.items())})
        return values

    # -- connection ----------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self._min_delay
        attempt = 0
        while not self._closed:
            attempt += 1
            connected_for = await self._session()
            if connected_for is not None and connected_for >= STABLE_SESSION_SECONDS:
                delay, attempt = self._min_delay, 0
            elif attempt > 1:
                # Failures, and sessions that die at once (a flapping PBX, an ACL that
                # drops us after login), back off alike.
                delay = min(delay * 2, self._max_delay)
            # Jitter spreads the reconnects of several listeners after an Asterisk restart.
            pause = delay * random.uniform(0.75, 1.0)
            log.info("event=ami_reconnect_scheduled in_seconds=%.2f attempt=%d", pause, attempt)
            await asyncio.sleep(pause)

    async def _session(self) -> float | None:
        """One connection, from connect to loss: how long it was logged in, if at all."""
        s = self._settings
        self._drop_manager()
        self._lost.clear()
        self._lost_error = None
        manager = _Manager(
            self._connection_lost,
            host=s.host,
            port=s.port,
            username=s.username,
            secret=s.secret.reveal(),
            events=LOGIN_EVENTS,
            encoding="utf8",
            loop=asyncio.get_running_loop(),
            log=self._panoramisk_log,
        )
        manager.register_event("*", self._on_event)
        self._manager = manager
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow our own
            # cancellation when the connect fails in the same loop turn, and close()
            # would then wait forever.
            async with asyncio.timeout(self._connect_timeout):
                await manager.connect()
        except (OSError, TimeoutError) as err:
            self._fail(f"connect failed: {_describe(err)}")
            return None
        error = await self._login(manager)
        if error:
            self._fail(error)
            self._drop_manager()
            return None
        self._paused = False
        self._connects += 1
        self._set_connected(True)
        log.info(
            "event=ami_connected host=%s port=%s username=%s connects=%d",
            s.host,
            s.port,
            s.username,
            self._connects,
        )
        self._request_snapshot()
        logged_in_at = self._clock()
        reason = await self._watch(manager)
        self._set_connected(False)
        # Whatever Asterisk sent while we were away is lost; the next snapshot repairs it.
        self._tracker.mark_gap(self._clock())
        self._fail(reason)
        self._drop_manager()
        return self._clock() - logged_in_at

    async def _login(self, manager: _Manager) -> str:
        login = manager.authenticated_future
        if login is None:
            return "login was not sent"
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {login, lost}, timeout=self._connect_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
        if login not in done:
            return "connection lost during login" if lost in done else "login timed out"
        response = login.result()
        if not response.success:
            return f"login rejected: {response.get('Message', '')}".rstrip(": ")
        return ""

    async def _watch(self, manager: _Manager) -> str:
        """Wait until the connection is lost, pinging to catch a silently dead peer."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ping_interval):
                    await self._lost.wait()
            if self._lost.is_set():
                return f"connection lost: {_describe(self._lost_error)}"
            if self._paused:
                continue  # a Pong cannot be read while we hold the socket back
            pong = manager.send_action({"Action": "Ping"})
            lost = asyncio.ensure_future(self._lost.wait())
            try:
                done, _ = await asyncio.wait({pong, lost}, timeout=self._ping_timeout)
            finally:
                lost.cancel()
            if not done:
                return f"no answer to Ping within {self._ping_timeout:g} s"

    def _connection_lost(self, manager: _Manager, exc: object) -> None:
        if manager is not self._manager:
            return  # a connection we already dropped
        self._lost_error = exc
        self._lost.set()

    def _drop_manager(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def _request_snapshot(self) -> None:
        if self._manager is None or not self._connected:
            self._resync_pending = True  # sent after the next login instead
            return
        self._snapshots += 1
        self._resync_pending = False
        self._manager.send_untracked(
            {
                "Action": "CoreShowChannels",
                "ActionID": f"{SNAPSHOT_ACTION_PREFIX}{self._snapshots}",
            }
        )

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected or self._since is None:
            self._connected = connected
            self._since = self._clock()

    def _fail(self, error: str) -> None:
        self._last_error = error
        self._last_error_at = self._clock()
        if self._since is None:
            self._since = self._last_error_at
        s = self._settings
        log.warning("event=ami_disconnected host=%s port=%s error=%r", s.host, s.port, error)

    # -- events --------------------------------------------------------------------------

    def _on_event(self, _manager: Manager, message: Any) -> None:
        """panoramisk callback: sync on purpose, so that no stray task is ever spawned."""
        self._received += 1
        try:
            self._queue.put_nowait((self._clock(), message))
        except asyncio.QueueFull:
            self._dropped += 1
            if not self._resync_pending:
                self._resync_pending = True
                self._tracker.mark_gap(self._clock())
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.error(
                    "event=ami_queue_full dropped=%d queue_size=%d ami_event=%s action=resync",
                    self._dropped,
                    self._queue.maxsize,
                    message.get("Event", ""),
                )
            return
        if not self._paused and self._queue.qsize() >= self._high_water:
            self._set_paused(True)

    def _set_paused(self, paused: bool) -> None:
        self._paused = paused
        self._pauses += paused
        if self._manager is not None:
            self._manager.pause_reading(paused)
        # Debug: under a sustained burst this toggles often; `backpressure_pauses` counts it.
        log.debug("event=ami_backpressure paused=%s queue_depth=%d", paused, self._queue.qsize())

    async def _consume(self) -> None:
        queue = self._queue
        next_sweep = self._clock() + self._sweep_interval
        while True:
            if self._retry_due():
                await self._retry_kept()
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                if self._resync_pending and self._connected:
                    self._request_snapshot()
                item = None
                wake = next_sweep
                if self._retry:
                    # Not before the retry is due; a little later if an attempt is still
                    # being cancelled, rather than spin.
                    wake = min(wake, max(self._next_retry, self._clock() + 0.05))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(wake - self._clock(), 0.0)):
                        item = await queue.get()
            if item is _STOP:
                await self._retry_at_close()
                return
            if self._paused and queue.qsize() <= self._low_water:
                self._set_paused(False)
            if item is not None:
                await self._handle(*item)
            if self._clock() >= next_sweep:
                next_sweep = self._clock() + self._sweep_interval
                for fact in self._tracker.evict_stale(self._clock()):
                    await self._emit(fact)

    async def _handle(self, received_at: float, message: Any) -> None:
        self._processed += 1
        try:
            event = from_message(message)
        except Exception:
            self._oddities["unparseable"] += 1
            log.exception("event=ami_event_unparseable")
            return
        try:
            facts = self._tracker.feed(event, received_at)
        except Exception:
            # One bad event must not stop the listener; a later snapshot repairs its call.
            self._oddities["tracker_error"] += 1
            log.exception(
                "event=ami_event_failed ami_event=%s linkedid=%s",
                event.get("Event", ""),
                event.get("Linkedid", ""),
            )
            return
        for fact in facts:
            await self._emit(fact)

    async def _emit(self, fact: CallFact) -> None:
        if self._retry:
            self._keep(fact)  # behind the facts already waiting, so that calls stay in order
            return
        if await self._deliver(fact) is _Outcome.RETRY:
            self._keep(fact)
            self._schedule_retry()

    async def _deliver(self, fact: CallFact) -> _Outcome:
        """One try of the sink, for at most `sink_timeout` seconds."""
        attempt = asyncio.ensure_future(self._on_fact(fact))
        try:
            await asyncio.wait({attempt}, timeout=self._sink_timeout)
        except asyncio.CancelledError:
            attempt.cancel()
            raise
        if not attempt.done():
            # Cancel without waiting: a hung database may take as long to roll back.
            attempt.cancel()
            attempt.add_done_callback(_consume_result)
            self._abandoned = (attempt, fact)
            self._sink_timeouts += 1
            log.error(
                "event=ami_fact_sink_timeout fact=%s linkedid=%s timeout=%s waiting=%d",
                type(fact).__name__,
                fact.linkedid,
                self._sink_timeout,
                len(self._retry),
            )
            return _Outcome.RETRY
        err = None if attempt.cancelled() else attempt.exception()
        if attempt.cancelled() or isinstance(err, self._retry_on):
            log.warning(
                "event=ami_fact_sink_unavailable fact=%s linkedid=%s error=%r waiting=%d",
                type(fact).__name__,
                fact.linkedid,
                err,
                len(self._retry),
            )
            return _Outcome.RETRY
        if err is not None:
            self._oddities["sink_error"] += 1
            log.error(
                "event=ami_fact_sink_failed fact=%s linkedid=%s",
                type(fact).__name__,
                fact.linkedid,
                exc_info=err,
            )
            return _Outcome.DROPPED
        self._delivered(fact)
        return _Outcome.DELIVERED

    def _delivered(self, fact: CallFact) -> None:
        self._emitted += 1
        if isinstance(fact, CallEnded):
            log.info(
                "event=ami_call_ended linkedid=%s did=%s status=%s operator=%s wait=%.1f talk=%.1f",
                fact.linkedid,
                fact.did,
                fact.status,
                fact.operator,
                fact.wait_seconds,
                fact.talk_seconds,
            )

    def _keep(self, fact: CallFact) -> None:
        if len(self._retry) >= self._retry_limit:
            lost = self._retry.popleft()
            self._facts_lost += 1
            log.error(
                "event=ami_fact_lost fact=%s linkedid=%s waiting=%d "
                "recover=calltracker calls import-cdr",
                type(lost).__name__,
                lost.linkedid,
                len(self._retry),
            )
        self._retry.append(fact)

    def _schedule_retry(self) -> None:
        self._next_retry = self._clock() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self._retry_max)

    def _retry_due(self) -> bool:
        if not self._retry or self._clock() < self._next_retry:
            return False
        return self._abandoned is None or self._abandoned[0].done()

    async def _retry_kept(self) -> None:
        """Deliver the kept facts in order; stop at the first that fails again."""
        while self._retry:
            if self._abandoned is not None:
                attempt, fact = self._abandoned
                if not attempt.done():
                    return
                self._abandoned = None
                if not attempt.cancelled() and attempt.exception() is None:
                    # The timed-out attempt got through after all: do not store it twice.
                    if self._retry and self._retry[0] is fact:
                        self._retry.popleft()
                        self._delivered(fact)
                    continue
            outcome = await self._deliver(self._retry[0])
            if outcome is _Outcome.RETRY:
                self._schedule_retry()
                return
            self._retry.popleft()
        self._retry_delay = self._retry_min
        log.info("event=ami_fact_sink_recovered")

    async def _retry_at_close(self) -> None:
        if not self._retry:
            return
        self._next_retry = 0.0
        if self._abandoned is not None:
            await asyncio.wait({self._abandoned[0]}, timeout=self._sink_timeout)
        await self._retry_kept()
        if self._retry:
            self._facts_lost += len(self._retry)
            log.error(
                "event=ami_facts_lost_at_close count=%d recover=calltracker calls import-cdr",
                len(self._retry),
            )


def _consume_result(attempt: asyncio.Future[None]) -> None:
    # Mark the result of an abandoned attempt as seen, so asyncio does not report it.
    if not attempt.cancelled():
        attempt.exception()


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=UTC)


def _describe(err: object) -> str:
    if err is None:
        return "closed by peer"
    if not isinstance(err, BaseException):
        return "Asterisk shut down"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
