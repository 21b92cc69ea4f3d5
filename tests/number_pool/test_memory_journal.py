"""MemoryPool persistence: buffered journal writes, the flusher, restart and crash recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from number_pool import LeaseRecord, PoolConfig
from number_pool.memory import MemoryPool
from tests.number_pool.conftest import FakeJournal

T0 = 1_700_000_000.0
A, B = "+493022220001", "+493022220002"
CONFIG = PoolConfig("p1", (A, B), 100)


def flusher_running() -> bool:
    return any(task.get_name() == "number-pool-flush" for task in asyncio.all_tasks())


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_the_hot_path_never_waits_for_the_journal(journal: FakeJournal) -> None:
    pool = MemoryPool(journal)
    await pool.configure(CONFIG)
    await pool.lease("p1", "alice", "a1", T0)
    await pool.renew("p1", "a1", T0 + 30)
    assert (journal.saves, journal.records, journal.counters) == (0, {}, {})

    await pool.flush()
    [saved] = journal.records.values()
    assert (saved.visitor_id, saved.last_seen_at, saved.ended_at) == ("alice", T0 + 30, T0 + 130)
    assert journal.counters == {"p1": (1, 0)}
    await pool.flush()
    assert journal.saves == 1  # nothing new, nothing written


async def test_a_crash_loses_only_what_was_not_flushed(journal: FakeJournal) -> None:
    pool = MemoryPool(journal)
    await pool.configure(CONFIG)
    await pool.lease("p1", "alice", "a1", T0)
    await pool.flush()
    await pool.lease("p1", "bob", "b1", T0 + 1)  # the process dies before this is flushed

    after = await MemoryPool.open(journal, [CONFIG], T0 + 2)
    alice = await after.lease("p1", "alice", "a1", T0 + 3)
    carol = await after.lease("p1", "carol", "c1", T0 + 3)
    assert alice.reused and alice.lease is not None and alice.lease.number == A
    assert carol.lease is not None and carol.lease.number == B  # bob's number came back free
    assert [r.visitor_id for r in await after.history(B, T0, T0 + 10)] == ["carol"]


async def test_a_failed_flush_keeps_changes_for_the_next(journal: FakeJournal) -> None:
    pool = MemoryPool(journal)
    await pool.configure(CONFIG)
    await pool.lease("p1", "alice", "a1", T0)
    journal.fail_next_save = True
    with pytest.raises(ConnectionError):
        await pool.flush()
    assert journal.records == {}
    await pool.renew("p1", "a1", T0 + 50)

    await pool.flush()
    [saved] = journal.records.values()
    assert saved.ended_at == T0 + 150
    assert journal.counters == {"p1": (1, 0)}


async def test_the_flusher_writes_in_the_background_and_close_writes_the_rest(
    journal: FakeJournal,
) -> None:
    pool = MemoryPool(journal, flush_interval=0.01)
    await pool.configure(CONFIG)
    await pool.start()
    assert flusher_running()
    await pool.lease("p1", "alice", "a1", T0)
    await wait_until(lambda: len(journal.records) == 1)

    await pool.lease("p1", "bob", "b1", T0 + 1)
    await pool.close()
    assert not flusher_running()
    assert {r.visitor_id for r in journal.records.values()} == {"alice", "bob"}
    await pool.lease("p1", "carol", "c1", T0 + 200)
    await asyncio.sleep(0.05)
    assert len(journal.records) == 2  # the flusher is gone after close()


async def test_the_flusher_retries_after_a_journal_error(
    journal: FakeJournal, caplog: pytest.LogCaptureFixture
) -> None:
    pool = MemoryPool(journal, flush_interval=0.01)
    await pool.configure(CONFIG)
    journal.fail_next_save = True
    await pool.start()
    await pool.lease("p1", "alice", "a1", T0)
    with caplog.at_level(logging.ERROR, logger="number_pool.memory"):
        await wait_until(lambda: len(journal.records) == 1)
    await pool.close()
    assert "lease journal flush failed" in caplog.text


async def test_restore_keeps_only_history_within_retention(journal: FakeJournal) -> None:
    pool = MemoryPool(journal, history_retention_seconds=1000)
    await pool.configure(CONFIG)
    await pool.lease("p1", "alice", "a1", T0)  # A, ends T0+100
    await pool.lease("p1", "bob", "b1", T0 + 900)  # B, ends T0+1000
    await pool.close()

    after = await MemoryPool.open(journal, [CONFIG], T0 + 1200, history_retention_seconds=1000)
    assert await after.history(A, 0, T0 + 2000) == []
    assert [r.visitor_id for r in await after.history(B, 0, T0 + 2000)] == ["bob"]
    # A's last use is forgotten, so it counts as never used and beats B (free since T0+1000).
    outcome = await after.lease("p1", "carol", "c1", T0 + 1210)
    assert outcome.lease is not None and outcome.lease.number == A


async def test_history_past_retention_is_trimmed() -> None:
    pool = MemoryPool(history_retention_seconds=1000)
    await pool.configure(PoolConfig("p1", (A,), 100))
    await pool.lease("p1", "alice", "a1", T0)
    await pool.lease("p1", "bob", "b1", T0 + 5000)
    assert [r.visitor_id for r in await pool.history(A, 0, T0 + 9000)] == ["bob"]


async def test_restore_resolves_a_visitor_with_two_live_records(journal: FakeJournal) -> None:
    old = LeaseRecord("p1", A, "alice", "a1", T0, T0, T0 + 100)
    new = LeaseRecord("p1", A, "alice", "a2", T0 + 10, T0 + 10, T0 + 110)  # lost the close of old
    await journal.save([old, new])

    pool = await MemoryPool.open(journal, [CONFIG], T0 + 20)
    assert await pool.renew("p1", "a1", T0 + 21) is None
    renewed = await pool.renew("p1", "a2", T0 + 21)
    assert renewed is not None and renewed.number == A
    assert [(r.visit_id, r.ended_at) for r in await pool.history(A, 0, T0 + 50)] == [
        ("a1", T0 + 10),
        ("a2", T0 + 121),
    ]
    await pool.flush()
    assert journal.records[("p1", A, "a1", T0)].ended_at == T0 + 10


async def test_without_a_journal_nothing_is_persisted_or_started() -> None:
    pool = MemoryPool()
    await pool.configure(CONFIG)
    await pool.start()
    assert not flusher_running()
    outcome = await pool.lease("p1", "alice", "a1", T0)
    await pool.flush()
    await pool.close()
    assert outcome.lease is not None and outcome.lease.number == A
