"""Group commit for visits: many requests share one transaction, each waits for its commit."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from msgspec.structs import asdict, astuple
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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


class VisitRow(msgspec.Struct, frozen=True, gc=False):
    """One row of the visit table, every column, in the order COPY sends them."""

    id: str
    site_id: int
    visitor_key: str
    started_at: datetime
    url: str
    referrer: str
    ga_client_id: str
    ym_client_id: str
    ga_sessions: str  # "STREAM.SESSION ..." from the _ga_<stream> cookies
    source: str  # attributed (last non-direct) labels
    medium: str
    campaign: str
    keyword: str
    content: str
    touch_source: str  # what this visit itself carried
    touch_medium: str
    click_id: str
    click_id_type: str
    number: str
    number_kind: str  # pool | static | default
    pool_id: int | None
    shared: bool
    is_bot: bool


@dataclass
class _Item:
    visit: VisitRow
    touch: VisitorTouch
    done: asyncio.Future[None]


class VisitWriter:
    """Batches visit inserts and visitor upserts; `write` returns once the row is committed.

    Committing per batch rather than per request is what lets SQLite reach thousands of
    visits per second: the cost of a commit is paid once for everything that queued meanwhile.
    """

    def __init__(self, engine: AsyncEngine, max_batch: int = 500) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a batch is being committed
        # PostgreSQL: one connection kept for the writer. A pool checkout pings the server
        # first (pool_pre_ping), a round trip per batch that the writer can do without.
        self._held: AsyncConnection | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="visit-writer")

    async def close(self) -> None:
        if self._task is not None:
            # Let queued visits, and the batch being committed, commit before stopping.
            while not self._queue.empty() or self._busy:
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_held()

    async def write(self, visit: VisitRow, touch: VisitorTouch) -> None:
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
            self._busy = True
            try:
                await self._commit(batch)
            except Exception as err:
                log.exception("event=visit_batch_failed size=%d", len(batch))
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(err)
            else:
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)
            finally:
                self._busy = False

    async def _commit(self, batch: list[_Item]) -> None:
        if self._engine.dialect.name != "postgresql":
            async with self._engine.begin() as conn:
                await write_batch(conn, batch)
            return
        for attempt in range(2):
            if self._held is None:
                self._held = await self._engine.connect()  # pinged on checkout
            driver = await _asyncpg_connection(self._held)
            try:
                await write_batch_asyncpg(driver, batch)
                return
            except Exception:
                if not driver.is_closed():
                    raise  # the rows or the server refused: not the connection's fault
                # The kept connection died (a PostgreSQL restart, a network cut): the batch
                # rolled back with it, so it is written again once on a fresh connection. (Had
                # it died during COMMIT after all, the visits' keys refuse the second copy.)
                await self._drop_held()
                if attempt:
                    raise

    async def _drop_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held.invalidate()
            with contextlib.suppress(Exception):
                await held.close()


async def write_batch(conn: AsyncConnection, batch: list[_Item]) -> None:
    # Core executemany on the connection: one round trip for the whole batch, and none of
    # the ORM's per-row bookkeeping, which costs more than the insert itself here.
    await conn.execute(insert(Visit), [asdict(item.visit) for item in batch])
    direct, non_direct = visitor_rows(batch)
    dialect = conn.dialect.name
    if direct:
        await conn.execute(_upsert_visitor_stmt(dialect, False), direct)
    if non_direct:
        await conn.execute(_upsert_visitor_stmt(dialect, True), non_direct)


async def write_batch_asyncpg(conn: Any, batch: list[_Item]) -> None:
    """The same batch on PostgreSQL through asyncpg itself: binary COPY for the visits and
    prepared upserts for the visitors, in one transaction.

    At a few thousand visits a second SQLAlchemy's per-row parameter processing was a tenth
    of the server's CPU, and COPY costs PostgreSQL (which shares the machine) less than
    INSERTs. The rows are already plain values of the columns' types, in VISIT_COLUMNS order.
    """
    direct, non_direct = visitor_rows(batch)
    async with conn.transaction():
        await conn.copy_records_to_table(
            Visit.__tablename__,
            records=[astuple(item.visit) for item in batch],
            columns=VISIT_COLUMNS,
        )
        for rows, sql, columns in (
            (direct, UPSERT_VISITOR_SQL, VISITOR_COLUMNS),
            (non_direct, UPSERT_VISITOR_LAST_SQL, VISITOR_LAST_COLUMNS),
        ):
            if rows:
                await conn.executemany(sql, [tuple(row[c] for c in columns) for row in rows])


async def _asyncpg_connection(conn: AsyncConnection) -> Any:
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def visitor_rows(batch: list[_Item]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Visitor upserts for a batch: (without a non-direct touch, with one)."""
    direct: list[dict[str, Any]] = []
    non_direct: list[dict[str, Any]] = []
    for touch in merge_touches([item.touch for item in batch]):
        last = _latest_non_direct(batch, touch)
        (direct if last is None else non_direct).append(visitor_values(touch, last))
    return direct, non_direct


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


@functools.cache  # built once per dialect: statement construction showed up in profiles
def _upsert_visitor_stmt(dialect: str, with_last: bool) -> Any:
    """Insert a visitor keeping its first touch; update last-seen, and last touch if given."""
    stmt = insert_for_dialect(dialect)(Visitor.__table__)
    update = {"last_seen_at": stmt.excluded.last_seen_at}
    if with_last:
        update.update({name: getattr(stmt.excluded, name) for name in LAST_COLUMNS})
    return stmt.on_conflict_do_update(index_elements=["site_id", "visitor_key"], set_=update)


VISIT_COLUMNS = list(VisitRow.__struct_fields__)
VISITOR_COLUMNS = [
    "site_id",
    "visitor_key",
    "first_seen_at",
    "last_seen_at",
    "first_source",
    "first_medium",
    "first_campaign",
    "first_keyword",
]
VISITOR_LAST_COLUMNS = [*VISITOR_COLUMNS, *LAST_COLUMNS]


def _upsert_visitor_sql(columns: list[str], updated: list[str]) -> str:
    """_upsert_visitor_stmt's statement in PostgreSQL's own SQL, for asyncpg's executemany."""
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    sets = ", ".join(f"{name} = excluded.{name}" for name in updated)
    return (
        f"INSERT INTO {Visitor.__tablename__} ({', '.join(columns)}) VALUES ({values}) "
        f"ON CONFLICT (site_id, visitor_key) DO UPDATE SET {sets}"
    )


UPSERT_VISITOR_SQL = _upsert_visitor_sql(VISITOR_COLUMNS, ["last_seen_at"])
UPSERT_VISITOR_LAST_SQL = _upsert_visitor_sql(VISITOR_LAST_COLUMNS, ["last_seen_at", *LAST_COLUMNS])
