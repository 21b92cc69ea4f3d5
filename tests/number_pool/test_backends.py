"""One behaviour suite run against both pool backends."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

import pytest

from number_pool import (
    ExhaustionPolicy,
    InvalidPoolConfig,
    Lease,
    LeaseRecord,
    PoolBackend,
    PoolConfig,
    UnknownPool,
)

HOLD = 1800
T0 = 1_700_000_000.0
HOUR = 3600.0
A, B, C, D = "+493011110001", "+493011110002", "+493011110003", "+493011110004"

Reopen = Callable[[Sequence[PoolConfig], float], Awaitable[PoolBackend]]


def pool(*numbers: str, hold: int = HOLD, share: bool = False, pool_id: str = "p1") -> PoolConfig:
    policy = ExhaustionPolicy.SHARE_OLDEST if share else ExhaustionPolicy.DEFAULT_NUMBER
    return PoolConfig(pool_id, numbers, hold, policy)


async def take(backend: PoolBackend, visitor: str, now: float, visit: str = "") -> Lease:
    outcome = await backend.lease("p1", visitor, visit or f"{visitor}-visit", now)
    assert outcome.lease is not None, outcome
    return outcome.lease


def who(records: Sequence[LeaseRecord]) -> list[tuple[str, str]]:
    return [(r.visitor_id, r.visit_id) for r in records]


async def test_same_visit_gets_its_number_back_renewed(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B))
    first = await backend.lease("p1", "alice", "v1", T0)
    again = await backend.lease("p1", "alice", "v1", T0 + 60)

    assert first.lease is not None and again.lease is not None
    assert (first.reused, again.reused, again.exhausted) == (False, True, False)
    assert again.lease.number == first.lease.number
    assert again.lease.started_at == T0
    assert (again.lease.last_seen_at, again.lease.expires_at) == (T0 + 60, T0 + 60 + HOLD)
    [record] = await backend.history(first.lease.number, T0, T0 + 2 * HOLD)
    assert (record.started_at, record.last_seen_at, record.ended_at) == (
        T0,
        T0 + 60,
        T0 + 60 + HOLD,
    )


async def test_new_visit_keeps_the_number_and_splits_the_history(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B))
    await take(backend, "alice", T0, visit="v1")
    outcome = await backend.lease("p1", "alice", "v2", T0 + 600)

    assert outcome.reused and outcome.lease is not None
    assert (outcome.lease.number, outcome.lease.visit_id, outcome.lease.started_at) == (
        A,
        "v2",
        T0 + 600,
    )
    old, new = await backend.history(A, T0, T0 + 10 * HOUR)
    assert (old.visit_id, old.started_at, old.ended_at) == ("v1", T0, T0 + 600)
    assert (new.visit_id, new.started_at, new.ended_at) == ("v2", T0 + 600, T0 + 600 + HOLD)
    assert who(await backend.holders_at(A, T0 + 599)) == [("alice", "v1")]
    assert who(await backend.holders_at(A, T0 + 600)) == [("alice", "v2")]
    assert await backend.renew("p1", "v1", T0 + 700) is None
    renewed = await backend.renew("p1", "v2", T0 + 700)
    assert renewed is not None and renewed.expires_at == T0 + 700 + HOLD


async def test_never_used_numbers_go_out_in_config_order(backend: PoolBackend) -> None:
    await backend.configure(pool(C, A, B))
    got = [(await take(backend, f"visitor{i}", T0 + i)).number for i in range(3)]
    assert got == [C, A, B]


async def test_free_number_idle_longest_is_chosen(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B, C, hold=100))
    for visitor in ["va", "vb", "vc"]:
        await take(backend, visitor, T0)
    for visitor, at in [("vb", 10), ("vc", 20), ("va", 50)]:
        assert await backend.renew("p1", f"{visitor}-visit", T0 + at) is not None
    # Free since: A 150, B 110, C 120.
    got = [(await take(backend, f"new{i}", T0 + 500)).number for i in range(3)]
    assert got == [B, C, A]


async def test_equally_idle_numbers_go_in_config_order(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B, C, hold=100))
    for visitor in ["va", "vb", "vc"]:
        await take(backend, visitor, T0)
    await backend.configure(pool(C, B, A, hold=100))
    got = [(await take(backend, f"new{i}", T0 + 500)).number for i in range(3)]
    assert got == [C, B, A]


async def test_lease_lasts_exactly_the_hold_time(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B, hold=100))
    await take(backend, "alice", T0)

    assert who(await backend.holders_at(A, T0 + 99.9)) == [("alice", "alice-visit")]
    assert await backend.holders_at(A, T0 + 100) == []
    # A is free again, but B, never used, has been idle longer.
    assert (await take(backend, "bob", T0 + 100)).number == B
    later = await backend.lease("p1", "alice", "alice-visit", T0 + 100)
    assert later.lease is not None and not later.reused
    assert (later.lease.number, later.lease.started_at) == (A, T0 + 100)


async def test_renew_of_unknown_or_expired_visit_is_none(backend: PoolBackend) -> None:
    await backend.configure(pool(A, hold=100))
    await take(backend, "alice", T0, visit="v1")

    assert await backend.renew("p1", "nobody", T0 + 1) is None
    assert await backend.renew("p1", "v1", T0 + 100) is None
    assert await backend.renew("p1", "v1", T0 + 50) is None  # no resurrection from the past
    [record] = await backend.history(A, T0, T0 + 1000)
    assert record.ended_at == T0 + 100


async def test_expire_frees_due_leases_and_counts_them(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B, C, hold=100))
    await take(backend, "va", T0)
    await take(backend, "vb", T0 + 10)
    await take(backend, "vc", T0 + 20)

    assert await backend.expire(T0 + 110) == 2
    assert await backend.expire(T0 + 110) == 0
    assert (await backend.stats("p1", T0 + 110)).leased == 1
    # A (free since 100) has been idle longer than B (since 110).
    assert (await take(backend, "vd", T0 + 115)).number == A


async def test_explicit_and_lazy_expiry_agree(backend: PoolBackend) -> None:
    steps = [("a", 0), ("b", 30), ("c", 60), ("a", 90), ("d", 140), ("e", 165), ("f", 170)]
    # The eager run comes later in time, so its expire() calls cannot touch the lazy run.
    runs = {
        "lazy": (T0, ("+4911", "+4912", "+4913")),
        "eager": (T0 + HOUR, ("+4921", "+4922", "+4923")),
    }
    picked: dict[str, list[int | None]] = {}
    stats: dict[str, tuple[int, int]] = {}
    for pool_id, (start, nums) in runs.items():
        await backend.configure(PoolConfig(pool_id, nums, 100))
        picked[pool_id] = []
        for visitor, at in steps:
            if pool_id == "eager":
                await backend.expire(start + at)
            outcome = await backend.lease(pool_id, visitor, visitor, start + at)
            number = outcome.lease.number if outcome.lease else None
            picked[pool_id].append(None if number is None else nums.index(number))
        result = await backend.stats(pool_id, start + 170)
        stats[pool_id] = (result.peak_concurrent, result.leased)
    assert picked["eager"] == picked["lazy"] == [0, 1, 2, 0, 1, 2, None]
    assert stats["eager"] == stats["lazy"] == (3, 3)


async def test_default_number_policy_refuses_and_counts(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B))
    await take(backend, "va", T0)
    await take(backend, "vb", T0)

    first = await backend.lease("p1", "vc", "vc1", T0 + 1)
    second = await backend.lease("p1", "vd", "vd1", T0 + 2)
    assert (first.lease, first.exhausted) == (None, True)
    assert (second.lease, second.exhausted) == (None, True)
    stats = await backend.stats("p1", T0 + 3)
    assert (stats.exhaustion_count, stats.leased, stats.peak_concurrent) == (2, 2, 2)


async def test_share_oldest_hands_out_the_least_recently_seen_number(
    backend: PoolBackend,
) -> None:
    await backend.configure(pool(A, B, share=True))
    await take(backend, "va", T0, visit="va1")
    await take(backend, "vb", T0 + 10, visit="vb1")
    assert await backend.renew("p1", "va1", T0 + 20) is not None  # B is now idle longest

    outcome = await backend.lease("p1", "vc", "vc1", T0 + 30)
    assert outcome.lease is not None
    assert (outcome.lease.number, outcome.lease.shared, outcome.exhausted) == (B, True, True)
    holders = await backend.holders_at(B, T0 + 35)
    assert who(holders) == [("vb", "vb1"), ("vc", "vc1")]
    assert [r.shared for r in holders] == [False, True]
    stats = await backend.stats("p1", T0 + 35)
    assert (stats.exhaustion_count, stats.leased, stats.peak_concurrent) == (1, 3, 3)
    assert stats.utilisation == 1.5


async def test_shared_number_is_free_only_after_its_last_holder(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B, hold=100, share=True))
    await take(backend, "va", T0, visit="va1")
    await take(backend, "vb", T0 + 10, visit="vb1")
    assert (await take(backend, "vc", T0 + 20)).number == A  # shared with va
    assert await backend.renew("p1", "vb1", T0 + 90) is not None  # B until 190

    # va ends at 100, vc at 120: A is busy until 120, and free since then.
    outcome = await backend.lease("p1", "vd", "vd1", T0 + 110)
    assert outcome.lease is not None and outcome.lease.shared
    assert outcome.lease.number == A  # last seen 20 beats B's 90
    assert (await backend.stats("p1", T0 + 200)).leased == 1  # only vd, until 210
    assert (await take(backend, "ve", T0 + 300)).number == B  # free since 190, A since 210
    assert who(await backend.holders_at(A, T0 + 115)) == [("vc", "vc-visit"), ("vd", "vd1")]


async def test_share_oldest_skips_removed_numbers(backend: PoolBackend) -> None:
    numbers = tuple(f"+4930555{i:04d}" for i in range(40))
    await backend.configure(PoolConfig("p1", numbers, HOLD, ExhaustionPolicy.SHARE_OLDEST))
    for i in range(40):
        await take(backend, f"v{i}", T0 + i)
    # The 35 numbers seen least recently leave the pool while still leased.
    await backend.configure(PoolConfig("p1", numbers[35:], HOLD, ExhaustionPolicy.SHARE_OLDEST))

    outcome = await backend.lease("p1", "late", "late1", T0 + 100)
    assert outcome.lease is not None and outcome.lease.shared
    assert outcome.lease.number == numbers[35]


async def test_past_holder_is_found_hours_later_after_reuse(backend: PoolBackend) -> None:
    await backend.configure(pool(A))
    await take(backend, "alice", T0, visit="a1")
    assert await backend.renew("p1", "a1", T0 + 600) is not None
    bob = await take(backend, "bob", T0 + 3 * HOUR, visit="b1")
    assert bob.number == A

    at_call = T0 + 1200  # a call that Asterisk reports hours late
    assert who(await backend.holders_at(A, at_call)) == [("alice", "a1")]
    assert await backend.holders_at(A, T0 + 600 + HOLD) == []
    assert who(await backend.holders_at(A, T0 + 3 * HOUR + 5)) == [("bob", "b1")]
    assert who(await backend.history(A, T0 - HOUR, T0 + 4 * HOUR)) == [
        ("alice", "a1"),
        ("bob", "b1"),
    ]


async def test_grace_window_finds_the_holder_whose_lease_just_ended(
    backend: PoolBackend,
) -> None:
    await backend.configure(pool(A, B, hold=100))
    await take(backend, "alice", T0, visit="a1")
    call = T0 + 160  # the visitor dialled a minute after the lease ran out

    assert await backend.holders_at(A, call) == []
    assert who(await backend.history(A, call - 120, call)) == [("alice", "a1")]
    assert await backend.history(A, call - 30, call) == []
    assert await backend.history(A, T0 - 50, T0 - 1) == []
    assert who(await backend.history(A, T0 - 50, T0)) == [("alice", "a1")]


async def test_stats_track_peak_and_recommend_a_size(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B, C, D, hold=100))
    for i in range(3):
        await take(backend, f"v{i}", T0 + i)
    await take(backend, "late", T0 + 150)  # the first three are gone by now

    stats = await backend.stats("p1", T0 + 150)
    assert (stats.size, stats.leased, stats.peak_concurrent) == (4, 1, 3)
    assert (stats.utilisation, stats.exhaustion_count, stats.recommended_size) == (0.25, 0, 5)


async def test_removed_number_is_never_handed_out_again(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B, hold=100))
    await take(backend, "alice", T0, visit="a1")  # holds A
    await backend.configure(pool(B, C, hold=100))

    assert who(await backend.holders_at(A, T0 + 50)) == [("alice", "a1")]
    assert await backend.renew("p1", "a1", T0 + 50) is None  # not extended
    got = [(await take(backend, f"v{i}", T0 + 60)).number for i in range(2)]
    assert got == [B, C]
    assert (await backend.lease("p1", "bob", "b1", T0 + 70)).lease is None
    moved = await backend.lease("p1", "alice", "a1", T0 + 200)
    assert moved.lease is not None and (moved.lease.number, moved.reused) == (B, False)
    assert (await backend.stats("p1", T0 + 200)).size == 2


async def test_removed_free_numbers_are_not_handed_out(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B, C, D, hold=100))
    await take(backend, "alice", T0)  # A, free again from T0+100
    assert await backend.expire(T0 + 150) == 1
    await backend.configure(pool(C, B, hold=100))  # drops A (used) and D (never used)

    got = [(await backend.lease("p1", f"v{i}", f"x{i}", T0 + 200)).lease for i in range(3)]
    assert [lease.number if lease else None for lease in got] == [C, B, None]


async def test_visitor_on_a_removed_number_moves_to_a_new_one(backend: PoolBackend) -> None:
    await backend.configure(pool(A, B))
    await take(backend, "alice", T0, visit="a1")
    await backend.configure(pool(B))

    moved = await backend.lease("p1", "alice", "a1", T0 + 30)
    assert moved.lease is not None and (moved.lease.number, moved.reused) == (B, False)
    [old] = await backend.history(A, T0, T0 + HOUR)
    assert old.ended_at == T0 + 30  # closed when she moved, not at its expiry
    await backend.configure(pool(A, B))
    assert (await take(backend, "bob", T0 + 40)).number == A


async def test_reconfigure_keeps_live_leases_and_applies_the_new_hold(
    backend: PoolBackend,
) -> None:
    await backend.configure(pool(A, B, hold=100))
    await take(backend, "alice", T0, visit="a1")
    await backend.configure(pool(A, B, hold=500))

    again = await backend.lease("p1", "alice", "a1", T0 + 10)
    assert again.lease is not None and again.reused
    assert (again.lease.number, again.lease.expires_at) == (A, T0 + 510)


@pytest.mark.parametrize(
    ("numbers", "hold", "message"),
    [
        ((), 60, "()"),
        ((A, B, A), 60, repr(A)),
        ((A, ""), 60, "''"),
        ((A,), 0, "got 0"),
        ((A,), -5, "got -5"),
    ],
)
async def test_invalid_config_names_the_offending_value(
    backend: PoolBackend, numbers: tuple[str, ...], hold: int, message: str
) -> None:
    with pytest.raises(InvalidPoolConfig, match=r"'p1'.*" + re.escape(message)):
        await backend.configure(PoolConfig("p1", numbers, hold))
    with pytest.raises(UnknownPool):
        await backend.stats("p1", T0)  # nothing half-configured


async def test_unknown_pool_is_an_error(backend: PoolBackend) -> None:
    await backend.configure(pool(A))
    with pytest.raises(UnknownPool, match="nope"):
        await backend.lease("nope", "alice", "a1", T0)
    with pytest.raises(UnknownPool, match="nope"):
        await backend.renew("nope", "a1", T0)
    with pytest.raises(UnknownPool, match="nope"):
        await backend.stats("nope", T0)
    assert await backend.history("+999", 0, T0) == []


async def test_pool_time_never_runs_backwards(backend: PoolBackend) -> None:
    await backend.configure(pool(A, hold=100))
    await take(backend, "alice", T0)
    # Another server process with a clock 50 ms behind asks after alice's lease ran out.
    await backend.expire(T0 + 100.05)
    bob = await take(backend, "bob", T0 + 100.0)
    assert bob.started_at == T0 + 100.05
    assert who(await backend.holders_at(A, T0 + 100.02)) == []


async def test_lease_survives_a_restart(backend: PoolBackend, reopen: Reopen) -> None:
    config = pool(A, B, C, hold=100)
    await backend.configure(config)
    await take(backend, "alice", T0, visit="a1")
    await take(backend, "bob", T0 + 5, visit="b1")
    assert await backend.renew("p1", "b1", T0 + 10) is not None
    assert (await backend.lease("p1", "carol", "c1", T0 + 20)).lease is not None
    assert await backend.expire(T0 + 101) == 1  # alice gone
    await backend.close()

    after = await reopen([config], T0 + 105)
    again = await after.lease("p1", "bob", "b1", T0 + 106)
    assert again.lease is not None and again.reused
    assert (again.lease.number, again.lease.started_at) == (B, T0 + 5)
    assert await after.renew("p1", "c1", T0 + 107) is not None
    assert (await take(after, "dave", T0 + 108)).number == A  # idle since 100
    assert (await after.lease("p1", "erin", "e1", T0 + 109)).exhausted
    assert who(await after.holders_at(A, T0 + 50)) == [("alice", "a1")]
    stats = await after.stats("p1", T0 + 109)
    assert (stats.peak_concurrent, stats.exhaustion_count, stats.leased) == (3, 1, 3)


async def test_times_come_back_to_the_last_bit(backend: PoolBackend) -> None:
    await backend.configure(pool(A, hold=100))
    now = T0 + 0.123456789  # sub-millisecond digits that 14-digit formatting would round
    lease = await take(backend, "alice", now)
    [record] = await backend.holders_at(A, now)

    assert (lease.started_at, lease.expires_at) == (now, now + 100)
    assert (record.started_at, record.ended_at) == (now, now + 100)
    assert await backend.holders_at(A, now - 1e-6) == []
