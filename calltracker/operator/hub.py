"""Live call cards for operators: kept per call, pushed to the consoles whose extension rang."""

# One hub per process. The process that stores call facts (the AMI listener's) builds the
# cards (operator_cards.py) and publishes them; with Redis every process hears them on a
# pub/sub channel, so an operator's websocket may live in any web worker. Cards of calls in
# progress (and of calls ended in the last `linger_seconds`) are kept, here and in a Redis
# hash, so that a console that reconnects, or a worker that starts mid-call, gets them again.

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

log = logging.getLogger(__name__)

LINGER_SECONDS = 300.0  # an ended card still gets its CRM link and shows after a reload
MAX_AGE_SECONDS = 4 * 3600.0  # a card whose hangup was never heard is forgotten after this
QUEUE_SIZE = 256  # messages waiting for one console; past it, that console is dropped
# Below CALLTRACKER_REDIS_PREFIX (with "operator:"): the pub/sub channel and the hash of
# kept cards.
CHANNEL = "cards"
LIVE_HASH = "live"


def parse_extensions(raw: str) -> frozenset[str]:
    """A user's extension field: "101", or several as "101, 102" (spaces or ; work too)."""
    return frozenset(p for p in raw.replace(";", ",").replace(" ", ",").split(",") if p)


@dataclass(frozen=True)
class LiveCard:
    """A call card and who may see it: the extensions that rang for the call."""

    linkedid: str
    extensions: frozenset[str]
    data: dict[str, Any]  # what the console renders (operator_cards.card_data)
    ended: bool
    version: int  # time.time_ns() when built: a newer version replaces an older one
    updated_at: float  # time.time()
    origin: str = ""  # the hub that built it

    def to_json(self) -> str:
        return json.dumps(
            {
                "linkedid": self.linkedid,
                "extensions": sorted(self.extensions),
                "data": self.data,
                "ended": self.ended,
                "version": self.version,
                "updated_at": self.updated_at,
                "origin": self.origin,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> LiveCard:
        d = json.loads(raw)
        return cls(
            linkedid=str(d["linkedid"]),
            extensions=frozenset(str(e) for e in d["extensions"]),
            data=dict(d["data"]),
            ended=bool(d["ended"]),
            version=int(d["version"]),
            updated_at=float(d["updated_at"]),
            origin=str(d.get("origin", "")),
        )


@dataclass(eq=False)
class Subscription:
    """One console: its extensions and the messages waiting to be sent to it."""

    extensions: frozenset[str]
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # A console that cannot keep up is dropped; it reconnects and gets a snapshot.
            self.closed.set()


class OperatorHub:
    """Cards by Linkedid, and the consoles subscribed by extension."""

    def __init__(
        self,
        *,
        redis: Redis | None = None,
        prefix: str = "ct:operator:",
        linger_seconds: float = LINGER_SECONDS,
        max_age_seconds: float = MAX_AGE_SECONDS,
        sweep_seconds: float = 5.0,
    ) -> None:
        self.id = uuid.uuid4().hex
        self._redis = redis
        self._channel = prefix + CHANNEL
        self._live = prefix + LIVE_HASH
        self._linger = linger_seconds
        self._max_age = max_age_seconds
        self._sweep_seconds = sweep_seconds
        self._cards: dict[str, LiveCard] = {}
        self._subs: set[Subscription] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.connections = 0  # consoles ever subscribed: tests see reconnects by it
        self._closed = False

    # -- state -----------------------------------------------------------------------------

    def get(self, linkedid: str) -> LiveCard | None:
        return self._cards.get(linkedid)

    def cards(self) -> list[LiveCard]:
        return list(self._cards.values())

    def snapshot(self, extensions: Iterable[str]) -> list[dict[str, Any]]:
        """The cards a console of these extensions shows on (re)connect, oldest first."""
        wanted = frozenset(extensions)
        shown = [c for c in self._cards.values() if c.extensions & wanted]
        return [c.data for c in sorted(shown, key=lambda c: str(c.data.get("started_at", "")))]

    def apply(self, card: LiveCard) -> bool:
        """Keep a card and push it to its consoles; False if a newer one is already kept."""
        known = self._cards.get(card.linkedid)
        if known is not None and known.version >= card.version:
            return False
        self._cards[card.linkedid] = card
        message = {"type": "card", "card": card.data}
        for sub in self._subs:
            if sub.extensions & card.extensions:
                sub.offer(message)
        return True

    async def publish(self, card: LiveCard) -> None:
        """A card built here: applied at once, then told to the other processes."""
        if self._closed:  # shutting down: the facts still being stored reach no console
            return
        card = LiveCard(
            card.linkedid,
            card.extensions,
            card.data,
            card.ended,
            card.version,
            card.updated_at,
            self.id,
        )
        self.apply(card)
        if self._redis is None:
            return
        raw = card.to_json()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self._live, card.linkedid, raw)
                pipe.publish(self._channel, raw)
                await pipe.execute()
        except Exception as err:  # Redis down: this process's consoles still got the card
            log.warning("event=operator_publish_failed linkedid=%s error=%r", card.linkedid, err)

    def sweep(self, now: float | None = None) -> list[str]:
        """Forget ended cards after the linger time, and any card after the max age."""
        now = time.time() if now is None else now
        gone = [
            c.linkedid
            for c in self._cards.values()
            if (c.ended and now - c.updated_at > self._linger) or now - c.updated_at > self._max_age
        ]
        for linkedid in gone:
            del self._cards[linkedid]
        return gone

    # -- consoles --------------------------------------------------------------------------

    def subscribe(self, extensions: Iterable[str]) -> Subscription:
        sub = Subscription(frozenset(extensions))
        self._subs.add(sub)
        self.connections += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        sub.closed.set()

    @property
    def consoles(self) -> int:
        return len(self._subs)

    def disconnect_all(self) -> None:
        """Close every console's socket (shutdown; tests of reconnecting)."""
        for sub in list(self._subs):
            self.unsubscribe(sub)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._redis is not None:
            ready = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._listen(ready), name="operator-hub-redis"))
            # Subscribed before loading the hash, so nothing published between is missed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 5)
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="operator-hub-sweep"))

    async def close(self) -> None:
        self._closed = True
        self.disconnect_all()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            gone = self.sweep()
            if gone and self._redis is not None:
                try:
                    await self._redis.hdel(self._live, *gone)
                except Exception as err:  # the next sweep of any process deletes them
                    log.warning("event=operator_sweep_failed error=%r", err)

    async def _listen(self, ready: asyncio.Event) -> None:
        """Hear other processes' cards; on a Redis failure, resubscribe and reload."""
        assert self._redis is not None
        delay = 0.5
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    await self._load()
                    ready.set()
                    delay = 0.5
                    while True:
                        message = await pubsub.get_message(timeout=30.0)
                        if message is not None and message.get("type") == "message":
                            self._receive(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as err:
                ready.set()  # start-up goes on without Redis; this loop keeps trying
                log.warning("event=operator_redis_lost error=%r retry_in=%s", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _load(self) -> None:
        assert self._redis is not None
        stored = await self._redis.hgetall(self._live)
        now = time.time()
        for raw in stored.values():
            try:
                card = LiveCard.from_json(raw)
            except (ValueError, KeyError, TypeError):
                continue
            if now - card.updated_at <= (self._linger if card.ended else self._max_age):
                self.apply(card)

    def _receive(self, raw: bytes | str) -> None:
        try:
            card = LiveCard.from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("event=operator_bad_message")
            return
        if card.origin != self.id:  # our own cards were applied when published
            self.apply(card)
