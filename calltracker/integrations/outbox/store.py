"""The outbox's SQL: insert once, find due work, claim it, record outcomes, count, retry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.db.integration_models import Integration, OutboxRow
from calltracker.db.upsert import insert_for
from calltracker.integrations.outbox.policy import (
    AUTH,
    CLAIMABLE,
    DEAD,
    DONE,
    FAILED,
    PENDING,
    SENDING,
    STATES,
    Outcome,
)

WON = "won"  # the stage of a won deal's report to an ad platform (deals/revenue.py)


def idempotency_key(integration_id: int, call_id: int, stage: str) -> str:
    return f"{integration_id}:{call_id}:{stage}"


def deal_key(integration_id: int, deal_id: int) -> str:
    """One report of a won deal per platform, however often the deal is won again."""
    return f"{integration_id}:deal:{deal_id}:{WON}"


def new_row(
    integration_id: int, call_id: int, stage: str, now: datetime, deal_id: int | None = None
) -> dict[str, Any]:
    """Every column of a fresh row: Core multi-row inserts do not run Python-side defaults."""
    key = (
        deal_key(integration_id, deal_id)
        if deal_id is not None
        else idempotency_key(integration_id, call_id, stage)
    )
    return {
        "integration_id": integration_id,
        "call_id": call_id,
        "stage": stage,
        "deal_id": deal_id,
        "idempotency_key": key,
        "state": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": "",
        "error_kind": "",
        "remote_ids": {},
        "created_at": now,
        "updated_at": now,
        "sent_at": None,
    }


async def insert_rows(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows; one whose idempotency key exists already is skipped, not an error."""
    if not rows:
        return
    stmt = insert_for(session)(OutboxRow).values(list(rows))
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["idempotency_key"]))


@dataclass(frozen=True)
class Due:
    """An enabled integration with rows a worker may claim now."""

    integration_id: int
    count: int
    oldest: datetime  # the earliest next_attempt_at among them


def _due(now: datetime) -> Any:
    return (OutboxRow.state.in_(CLAIMABLE)) & (OutboxRow.next_attempt_at <= now)


async def due_integrations(session: AsyncSession, now: datetime, limit: int = 200) -> list[Due]:
    """Integrations with due rows, the longest-waiting first; a read, so polling is cheap."""
    oldest = func.min(OutboxRow.next_attempt_at)
    query = (
        select(OutboxRow.integration_id, func.count(), oldest)
        .join(Integration, Integration.id == OutboxRow.integration_id)
        .where(_due(now), Integration.enabled.is_(True))
        .group_by(OutboxRow.integration_id)
        .order_by(oldest)
        .limit(limit)
    )
    result = await session.execute(query)
    return [Due(iid, count, first) for iid, count, first in result.all()]


@dataclass(frozen=True)
class Claimed:
    """A row this worker now holds until ``lease_until``; ``attempt`` fences its outcome."""

    row_id: int
    attempt: int
    call_id: int
    stage: str
    key: str
    deal_id: int | None = None


async def claim(
    session: AsyncSession,
    integration_id: int,
    *,
    now: datetime,
    lease_until: datetime,
    limit: int,
    won: bool | None = None,
) -> list[Claimed]:
    """Mark up to ``limit`` due rows of one integration `sending`; none while it is busy.

    ``won``: True claims only won-deal rows, False only call rows, None either."""
    # "Busy" is a live lease on another of its rows: deliveries to one remote never overlap,
    # across processes too. On PostgreSQL the integration row lock (SKIP LOCKED) makes that
    # check atomic between workers, and SKIP LOCKED on the rows keeps two claims apart. SQLite
    # runs one worker process; the final UPDATE re-checks each row, so a claim stays atomic.
    # NO KEY UPDATE: the lock must not block an outbox insert's foreign-key check.
    holder = await session.scalar(
        select(Integration.id)
        .where(Integration.id == integration_id, Integration.enabled.is_(True))
        .with_for_update(skip_locked=True, key_share=True)
    )
    if holder is None:
        return []
    busy = await session.scalar(
        select(
            exists().where(
                OutboxRow.integration_id == integration_id,
                OutboxRow.state == SENDING,
                OutboxRow.next_attempt_at > now,
            )
        )
    )
    if busy:
        return []
    query = select(OutboxRow.id).where(OutboxRow.integration_id == integration_id, _due(now))
    if won is not None:
        query = query.where((OutboxRow.stage == WON) if won else (OutboxRow.stage != WON))
    ids = (
        await session.scalars(
            query.order_by(OutboxRow.next_attempt_at, OutboxRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not ids:
        return []
    result = await session.execute(
        update(OutboxRow)
        .where(OutboxRow.id.in_(ids), _due(now))
        .values(
            state=SENDING,
            attempts=OutboxRow.attempts + 1,
            next_attempt_at=lease_until,
            updated_at=now,
        )
        .returning(
            OutboxRow.id,
            OutboxRow.attempts,
            OutboxRow.call_id,
            OutboxRow.stage,
            OutboxRow.idempotency_key,
            OutboxRow.deal_id,
        )
        .execution_options(synchronize_session=False)
    )
    claimed = [Claimed(*row) for row in result.all()]
    return sorted(claimed, key=lambda c: ids.index(c.row_id))


async def finish(session: AsyncSession, claimed: Claimed, outcome: Outcome, now: datetime) -> bool:
    """Record an attempt's outcome; False if the row was no longer ours (lease lost)."""
    values: dict[str, Any] = {
        "state": outcome.state,
        "error_kind": outcome.error_kind,
        "last_error": outcome.last_error[:2000],
        "updated_at": now,
        "next_attempt_at": now + timedelta(seconds=outcome.delay),
    }
    if outcome.state == DONE:
        values["remote_ids"] = outcome.remote_ids
        values["sent_at"] = now
    if not outcome.counts_attempt:
        values["attempts"] = claimed.attempt - 1
    result = await session.execute(
        update(OutboxRow)
        .where(
            OutboxRow.id == claimed.row_id,
            OutboxRow.state == SENDING,
            OutboxRow.attempts == claimed.attempt,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def disable_integration(session: AsyncSession, claimed: Claimed, now: datetime) -> None:
    """Switch off the integration a row belongs to (its receiver is gone)."""
    integration_id = select(OutboxRow.integration_id).where(OutboxRow.id == claimed.row_id)
    await session.execute(
        update(Integration)
        .where(Integration.id == integration_id.scalar_subquery())
        .values(enabled=False, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def retry(
    session: AsyncSession, integration_id: int, now: datetime, *, dead: bool = False
) -> int:
    """Make failed (and, if asked, dead) rows due now with fresh attempts; how many."""
    states = (FAILED, DEAD) if dead else (FAILED,)
    result = await session.execute(
        update(OutboxRow)
        .where(OutboxRow.integration_id == integration_id, OutboxRow.state.in_(states))
        .values(state=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def retry_auth_failures(session: AsyncSession, integration_id: int, now: datetime) -> int:
    """After the credentials changed: rows that failed on them are due now."""
    result = await session.execute(
        update(OutboxRow)
        .where(
            OutboxRow.integration_id == integration_id,
            OutboxRow.state == FAILED,
            OutboxRow.error_kind == AUTH,
        )
        .values(attempts=0, next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Counts:
    """Rows of one integration by state; ``auth_failed`` are failed rows waiting for an admin."""

    pending: int = 0
    sending: int = 0
    done: int = 0
    failed: int = 0
    dead: int = 0
    auth_failed: int = 0


async def counts(
    session: AsyncSession, integration_ids: Sequence[int] | None = None
) -> dict[int, Counts]:
    """Counts per integration id; integrations without rows are left out."""
    query = select(
        OutboxRow.integration_id, OutboxRow.state, OutboxRow.error_kind, func.count()
    ).group_by(OutboxRow.integration_id, OutboxRow.state, OutboxRow.error_kind)
    if integration_ids is not None:
        query = query.where(OutboxRow.integration_id.in_(integration_ids))
    tally: dict[int, dict[str, int]] = {}
    for iid, state, kind, count in (await session.execute(query)).all():
        per = tally.setdefault(iid, dict.fromkeys((*STATES, "auth_failed"), 0))
        per[state] = per.get(state, 0) + count
        if state == FAILED and kind == AUTH:
            per["auth_failed"] += count
    return {
        iid: Counts(
            pending=per[PENDING],
            sending=per[SENDING],
            done=per[DONE],
            failed=per[FAILED],
            dead=per[DEAD],
            auth_failed=per["auth_failed"],
        )
        for iid, per in tally.items()
    }


async def last_errors(
    session: AsyncSession, integration_id: int, limit: int = 5
) -> Sequence[OutboxRow]:
    """The most recently failed or dead rows, with their remote's message."""
    query = (
        select(OutboxRow)
        .where(
            OutboxRow.integration_id == integration_id,
            OutboxRow.state.in_((FAILED, DEAD)),
            OutboxRow.last_error != "",
        )
        .order_by(OutboxRow.updated_at.desc(), OutboxRow.id.desc())
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def list_rows(
    session: AsyncSession,
    integration_id: int,
    *,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[OutboxRow]:
    """One integration's rows, newest first."""
    query = select(OutboxRow).where(OutboxRow.integration_id == integration_id)
    if state is not None:
        query = query.where(OutboxRow.state == state)
    query = query.order_by(OutboxRow.id.desc()).limit(limit).offset(offset)
    return (await session.scalars(query)).all()
