"""Tables for the pure allocation decisions."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from number_pool import ExhaustionPolicy, InvalidPoolConfig, LeaseRecord, PoolConfig, policy
from number_pool.policy import Action, Decision, Holding

NEVER = policy.NEVER_USED
ORDER = {"A": 0, "B": 1, "C": 2}
DEFAULT, SHARE = ExhaustionPolicy.DEFAULT_NUMBER, ExhaustionPolicy.SHARE_OLDEST


@pytest.mark.parametrize(
    ("free_since", "expected"),
    [
        ({}, None),
        ({"B": 50.0}, "B"),
        ({"A": 100.0, "B": 50.0, "C": 75.0}, "B"),
        ({"A": 100.0, "C": NEVER}, "C"),  # never used beats any real time
        ({"C": NEVER, "B": NEVER}, "B"),  # ties go to config order, not dict order
        ({"C": 10.0, "A": 10.0}, "A"),
        ({"Z": 1.0, "C": 10.0}, "C"),  # not in the config (removed): never chosen
        ({"Z": 1.0}, None),
    ],
)
def test_choose_free_takes_the_number_idle_longest(
    free_since: dict[str, float], expected: str | None
) -> None:
    assert policy.choose_free(free_since, ORDER) == expected


@pytest.mark.parametrize(
    ("busy_last_seen", "expected"),
    [
        ({}, None),
        ({"A": 30.0, "B": 10.0, "C": 20.0}, "B"),
        ({"A": 10.0, "B": 10.0}, "A"),
        ({"Z": 1.0, "A": 10.0}, "A"),
    ],
)
def test_share_victim_is_the_number_seen_least_recently(
    busy_last_seen: dict[str, float], expected: str | None
) -> None:
    assert policy.choose_share_victim(busy_last_seen, ORDER) == expected


@pytest.mark.parametrize(
    ("holding", "visit", "free_since", "busy", "exhaustion", "expected"),
    [
        (None, "v1", {"A": NEVER}, {}, DEFAULT, Decision(Action.TAKE_FREE, "A")),
        (Holding("B", "v1"), "v1", {"A": NEVER}, {"B": 5.0}, DEFAULT, Decision(Action.RENEW, "B")),
        (
            Holding("B", "v1"),
            "v2",
            {"A": NEVER},
            {"B": 5.0},
            DEFAULT,
            Decision(Action.SWITCH_VISIT, "B"),
        ),
        # Sticky wins even when the pool is exhausted.
        (Holding("B", "v1"), "v2", {}, {"B": 5.0}, DEFAULT, Decision(Action.SWITCH_VISIT, "B")),
        (None, "v1", {}, {"A": 5.0, "B": 3.0}, DEFAULT, Decision(Action.REFUSE)),
        (None, "v1", {}, {"A": 5.0, "B": 3.0}, SHARE, Decision(Action.SHARE, "B")),
        # Holding a removed number: retire it, then as if new.
        (
            Holding("Z", "v1"),
            "v1",
            {"C": 1.0},
            {"Z": 5.0},
            DEFAULT,
            Decision(Action.TAKE_FREE, "C", True),
        ),
        (
            Holding("Z", "v1"),
            "v1",
            {},
            {"Z": 1.0, "A": 5.0},
            SHARE,
            Decision(Action.SHARE, "A", True),
        ),
        (Holding("Z", "v1"), "v1", {}, {"Z": 1.0}, SHARE, Decision(Action.REFUSE, None, True)),
    ],
)
def test_decide_lease(
    holding: Holding | None,
    visit: str,
    free_since: dict[str, float],
    busy: dict[str, float],
    exhaustion: ExhaustionPolicy,
    expected: Decision,
) -> None:
    decision = policy.decide_lease(
        holding, visit, order=ORDER, free_since=free_since, busy_last_seen=busy, policy=exhaustion
    )
    assert decision == expected


def record(started: float, ended: float) -> LeaseRecord:
    return LeaseRecord("p", "A", "alice", "v1", started, started, ended)


@pytest.mark.parametrize(
    ("started", "ended", "since", "until", "expected"),
    [
        (100, 200, 150, 160, True),  # inside
        (100, 200, 50, 100, True),  # window ends at the start
        (100, 200, 200, 300, False),  # the record ended as the window opened
        (100, 200, 199.9, 300, True),
        (100, 200, 0, 99.9, False),
        (100, 200, 0, 1000, True),  # window spans the record
        (100, 200, -math.inf, math.inf, True),
    ],
)
def test_overlaps_treats_records_as_half_open(
    started: float, ended: float, since: float, until: float, expected: bool
) -> None:
    assert policy.overlaps(record(started, ended), since, until) is expected


@pytest.mark.parametrize(
    ("t", "expected"), [(99.9, False), (100, True), (150, True), (199.99, True), (200, False)]
)
def test_covers(t: float, expected: bool) -> None:
    assert policy.covers(record(100, 200), t) is expected


@pytest.mark.parametrize(
    ("expires_at", "now", "expected"), [(100.0, 99.99, True), (100.0, 100.0, False)]
)
def test_a_lease_dies_at_its_expiry(expires_at: float, now: float, expected: bool) -> None:
    assert policy.is_live(expires_at, now) is expected


@pytest.mark.parametrize(
    ("clock", "now", "expected"), [(NEVER, 5.0, 5.0), (5.0, 7.0, 7.0), (5.0, 4.9, 5.0)]
)
def test_clamp_now_never_goes_back(clock: float, now: float, expected: float) -> None:
    assert policy.clamp_now(clock, now) == expected


@pytest.mark.parametrize(
    ("size", "peak", "exhaustion_count", "expected"),
    [
        (10, 0, 0, 1),
        (10, 3, 0, 5),  # ceil(3.6) + 1; 3 * 1.2 is 3.5999... in floats
        (10, 5, 0, 7),  # exactly 6, no rounding up
        (10, 10, 0, 13),
        (20, 10, 0, 13),  # a pool bigger than it needs may shrink
        (20, 10, 1, 20),  # ...unless it ran dry: then it keeps its size
        (10, 10, 4, 13),
        (10, 25, 9, 31),
    ],
)
def test_recommended_size(size: int, peak: int, exhaustion_count: int, expected: int) -> None:
    assert policy.recommended_size(size, peak, exhaustion_count) == expected


def test_pool_stats_derives_utilisation_and_recommendation() -> None:
    stats = policy.pool_stats("p", size=4, leased=3, peak=4, exhaustion_count=2)
    assert (stats.utilisation, stats.recommended_size) == (0.75, 6)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (PoolConfig("", ("+1",), 60), "pool_id must be non-empty, got ''"),
        (PoolConfig("p", (), 60), "pool 'p': numbers must be non-empty, got ()"),
        (PoolConfig("p", ("+1", "+2", "+1"), 60), "pool 'p': duplicate number '+1'"),
        (PoolConfig("p", ("+1", ""), 60), "pool 'p': invalid number ''"),
        (PoolConfig("p", ("+1",), 0), "pool 'p': hold_seconds must be a positive int, got 0"),
        (PoolConfig("p", ("+1",), -1), "got -1"),
        (PoolConfig("p", ("+1",), 1.5), "got 1.5"),  # type: ignore[arg-type]
        (PoolConfig("p", ("+1",), True), "got True"),
        (PoolConfig("p", ("+1",), 60, "first_come"), "unknown exhaustion policy 'first_come'"),  # type: ignore[arg-type]
    ],
)
def test_invalid_configs_are_rejected_with_the_offending_value(
    config: PoolConfig, message: str
) -> None:
    with pytest.raises(InvalidPoolConfig) as raised:
        policy.validate_config(config)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "config",
    [
        PoolConfig("p", ("+1",), 1),
        PoolConfig("p", ("+1", "+2"), 1800, SHARE),
        PoolConfig("p", ("+1",), 60, "share_oldest"),  # type: ignore[arg-type]
    ],
)
def test_valid_configs_pass(config: PoolConfig) -> None:
    policy.validate_config(config)


def test_the_library_never_imports_calltracker() -> None:
    code = (
        "import sys, number_pool.memory, number_pool.redis, number_pool.policy\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'calltracker'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
