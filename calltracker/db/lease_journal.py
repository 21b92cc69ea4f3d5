"""The SQL side of number_pool's LeaseJournal: lease history in the `lease` table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from calltracker.db.engine import SessionMaker
from calltracker.db.models import LeaseRow, PoolCounter
from calltracker.db.upsert import insert_for
from number_pool import LeaseRecord


class SqlLeaseJournal:
    def __init__(self, sessionmaker: SessionMaker) -> None:
        self._sessionmaker = sessionmaker

    async def save(self, records: Sequence[LeaseRecord]) -> None:
        if not records:
            return
        rows = [
            {
                "pool_key": r.pool_id,
                "number": r.number,
                "visitor_key": r.visitor_id,
                "visit_id": r.visit_id,
                "started_at": r.started_at,
                "last_seen_at": r.last_seen_at,
                "ended_at": r.ended_at,
                "shared": r.shared,
            }
            for r in records
        ]
        async with self._sessionmaker.begin() as session:
            stmt = insert_for(session)(LeaseRow.__table__)
            stmt = stmt.on_conflict_do_update(
                index_elements=["pool_key", "number", "visit_id", "started_at"],
                set_={
                    "last_seen_at": stmt.excluded.last_seen_at,
                    "ended_at": stmt.excluded.ended_at,
                    "shared": stmt.excluded.shared,
                },
            )
            conn = await session.connection()  # Core executemany, no ORM per-row work
            await conn.execute(stmt, rows)

    async def load(self, since: float) -> Sequence[LeaseRecord]:
        async with self._sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(LeaseRow).where(LeaseRow.ended_at >= since).order_by(LeaseRow.started_at)
                )
            ).all()
        return [
            LeaseRecord(
                pool_id=r.pool_key,
                number=r.number,
                visitor_id=r.visitor_key,
                visit_id=r.visit_id,
                started_at=r.started_at,
                last_seen_at=r.last_seen_at,
                ended_at=r.ended_at,
                shared=r.shared,
            )
            for r in rows
        ]

    async def save_counters(
        self, pool_id: str, peak_concurrent: int, exhaustion_count: int
    ) -> None:
        async with self._sessionmaker.begin() as session:
            stmt = insert_for(session)(PoolCounter).values(
                pool_key=pool_id, peak_concurrent=peak_concurrent, exhaustion_count=exhaustion_count
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["pool_key"],
                set_={"peak_concurrent": peak_concurrent, "exhaustion_count": exhaustion_count},
            )
            await session.execute(stmt)

    async def load_counters(self) -> dict[str, tuple[int, int]]:
        async with self._sessionmaker() as session:
            rows = (await session.scalars(select(PoolCounter))).all()
        return {r.pool_key: (r.peak_concurrent, r.exhaustion_count) for r in rows}
