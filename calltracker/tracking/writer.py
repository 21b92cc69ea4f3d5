"""Group commit for visits: many requests share one transaction, each waits for its commit."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.db.engine import SessionMaker
from calltracker.db.models import Visit, Visitor
from calltracker.db.upsert import insert_for_dialect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisitorTouch:
    site_id: int
    visitor_key: str
    seen_at: datetime
    source: str
    medium: str
    campaign: str
    keyword: str
    content: str
    direct: bool


@dataclass
class _Item:
    visit: dict[str, Any]
    touch: VisitorTouch
    done: asyncio.Future[None]


class VisitWriter:
    """Batches visit inserts and visitor upserts; `write` returns once the row is committed.

    Committing per batch rather than per request is what lets SQLite reach thousands of
    visits per second: the cost of a commit is paid once for everything that queued meanwhile.
    """

    def __init__(self, sessionmaker: SessionMaker, max_batch: int = 500) -> None:
        self._sessionmaker = sessionmaker
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="visit-writer")

    async def close(self) -> None:
        if self._task is not None:
            # Let queued visits commit before stopping.
            while not self._queue.empty():
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def write(self, visit: dict[str, Any], touch: VisitorTouch) -> None:
        if self._task is None or self._task.done():
            raise RuntimeError("visit writer is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(visit, touch, done))
        await done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self._sessionmaker.begin() as session:
                    await write_batch(session, batch)
            except Exception as err:
                log.exception("event=visit_batch_failed size=%d", len(batch))
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(err)
            else:
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)


async def write_batch(session: AsyncSession, batch: list[_Item]) -> None:
    # Core executemany on the connection: one round trip for the whole batch, and none of
    # the ORM's per-row bookkeeping, which costs more than the insert itself here.
    conn = await session.connection()
    await conn.execute(insert(Visit), [item.visit for item in batch])
    direct: list[dict[str, Any]] = []
    non_direct: list[dict[str, Any]] = []
    for touch in merge_touches([item.touch for item in batch]):
        last = _latest_non_direct(batch, touch)
        (direct if last is None else non_direct).append(visitor_values(touch, last))
    if direct:
        await conn.execute(upsert_visitor_stmt(session, with_last=False), direct)
    if non_direct:
        await conn.execute(upsert_visitor_stmt(session, with_last=True), non_direct)


def merge_touches(touches: list[VisitorTouch]) -> list[VisitorTouch]:
    """One touch per visitor: the latest, so each visitor row is upserted once per batch."""
    latest: dict[tuple[int, str], VisitorTouch] = {}
    for touch in touches:
        latest[(touch.site_id, touch.visitor_key)] = touch
    return list(latest.values())


def _latest_non_direct(batch: list[_Item], touch: VisitorTouch) -> VisitorTouch | None:
    for item in reversed(batch):
        t = item.touch
        if t.site_id == touch.site_id and t.visitor_key == touch.visitor_key and not t.direct:
            return t
    return None


LAST_COLUMNS = ("last_source", "last_medium", "last_campaign", "last_keyword", "last_content")


def visitor_values(touch: VisitorTouch, last: VisitorTouch | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "site_id": touch.site_id,
        "visitor_key": touch.visitor_key,
        "first_seen_at": touch.seen_at,
        "last_seen_at": touch.seen_at,
        "first_source": touch.source,
        "first_medium": touch.medium,
        "first_campaign": touch.campaign,
        "first_keyword": touch.keyword,
    }
    if last is not None:
        values.update(
            last_source=last.source,
            last_medium=last.medium,
            last_campaign=last.campaign,
            last_keyword=last.keyword,
            last_content=last.content,
        )
    return values


def upsert_visitor_stmt(session: AsyncSession, *, with_last: bool) -> Any:
    return _upsert_visitor_stmt(session.get_bind().dialect.name, with_last)


@functools.cache  # built once per dialect: statement construction showed up in profiles
def _upsert_visitor_stmt(dialect: str, with_last: bool) -> Any:
    """Insert a visitor keeping its first touch; update last-seen, and last touch if given."""
    stmt = insert_for_dialect(dialect)(Visitor.__table__)
    update = {"last_seen_at": stmt.excluded.last_seen_at}
    if with_last:
        update.update({name: getattr(stmt.excluded, name) for name in LAST_COLUMNS})
    return stmt.on_conflict_do_update(index_elements=["site_id", "visitor_key"], set_=update)
