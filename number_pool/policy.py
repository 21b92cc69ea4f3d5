"""Pure allocation decisions over plain data; both backends (and the Lua scripts) follow them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from number_pool.core import ExhaustionPolicy, InvalidPoolConfig, LeaseRecord, PoolConfig, PoolStats

NEVER_USED = -math.inf  # free-since of a number never leased: idle longer than any other


class Action(StrEnum):
    RENEW = "renew"  # same visitor, same visit: extend the lease
    SWITCH_VISIT = "switch_visit"  # same visitor and number, new visit: close one record, open one
    TAKE_FREE = "take_free"
    SHARE = "share"  # no free number, SHARE_OLDEST: join the number idle longest
    REFUSE = "refuse"  # no free number, DEFAULT_NUMBER: the site shows its own number


@dataclass(frozen=True)
class Holding:
    """The visitor's live lease in the pool, as far as the decision cares."""

    number: str
    visit_id: str


@dataclass(frozen=True)
class Decision:
    action: Action
    number: str | None = None
    # The visitor holds a number that was removed from the pool: end that lease before the new one.
    retire_current: bool = False


def validate_config(config: PoolConfig) -> None:
    """Raise InvalidPoolConfig naming the offending value."""
    where = f"pool {config.pool_id!r}"
    if not config.pool_id:
        raise InvalidPoolConfig(f"pool_id must be non-empty, got {config.pool_id!r}")
    if not config.numbers:
        raise InvalidPoolConfig(f"{where}: numbers must be non-empty, got {config.numbers!r}")
    seen: set[str] = set()
    for number in config.numbers:
        if not isinstance(number, str) or not number:
            raise InvalidPoolConfig(f"{where}: invalid number {number!r}")
        if number in seen:
            raise InvalidPoolConfig(f"{where}: duplicate number {number!r}")
        seen.add(number)
    hold = config.hold_seconds
    if isinstance(hold, bool) or not isinstance(hold, int) or hold <= 0:
        raise InvalidPoolConfig(f"{where}: hold_seconds must be a positive int, got {hold!r}")
    if config.policy not in set(ExhaustionPolicy):
        raise InvalidPoolConfig(f"{where}: unknown exhaustion policy {config.policy!r}")


def is_live(expires_at: float, now: float) -> bool:
    return expires_at > now


def clamp_now(clock: float, now: float) -> float:
    """Never let a pool's time run backwards.

    Several server processes share one Redis pool with clocks a few ms apart; without this a
    request stamped slightly earlier could start a record before the previous holder's ended.
    """
    return now if now > clock else clock


def choose_free(free_since: Mapping[str, float], order: Mapping[str, int]) -> str | None:
    """The configured free number idle longest; ties go to the earlier one in the config."""
    best: tuple[float, int, str] | None = None
    for number, since in free_since.items():
        index = order.get(number)
        if index is None:
            continue
        candidate = (since, index, number)
        if best is None or candidate < best:
            best = candidate
    return None if best is None else best[2]


def choose_share_victim(
    busy_last_seen: Mapping[str, float], order: Mapping[str, int]
) -> str | None:
    """The configured leased number whose holders were seen least recently.

    ``busy_last_seen`` maps a leased number to the latest last_seen of its live holders, so a
    number already shared is as busy as its most active holder.
    """
    return choose_free(busy_last_seen, order)


def decide_lease(
    holding: Holding | None,
    visit_id: str,
    *,
    order: Mapping[str, int],
    free_since: Mapping[str, float],
    busy_last_seen: Mapping[str, float],
    policy: ExhaustionPolicy,
) -> Decision:
    """What lease() does, given the pool after expiry at `now`."""
    if holding is not None and holding.number in order:
        action = Action.RENEW if holding.visit_id == visit_id else Action.SWITCH_VISIT
        return Decision(action, holding.number)
    retire = holding is not None
    free = choose_free(free_since, order)
    if free is not None:
        return Decision(Action.TAKE_FREE, free, retire)
    if policy == ExhaustionPolicy.SHARE_OLDEST:
        victim = choose_share_victim(busy_last_seen, order)
        if victim is not None:
            return Decision(Action.SHARE, victim, retire)
    return Decision(Action.REFUSE, None, retire)


def overlaps(record: LeaseRecord, since: float, until: float) -> bool:
    """Whether the record's [started_at, ended_at) meets the closed window [since, until]."""
    return record.started_at <= until and record.ended_at > since


def covers(record: LeaseRecord, t: float) -> bool:
    return record.started_at <= t < record.ended_at


def oldest_first(record: LeaseRecord) -> tuple[float, float, str, str]:
    """Sort key for history answers, total so both backends list ties alike."""
    return (record.started_at, record.ended_at, record.visitor_id, record.visit_id)


def recommended_size(size: int, peak: int, exhaustion_count: int) -> int:
    """ceil(peak * 1.2) + 1, and never below the current size once the pool has run dry.

    The 20 % headroom absorbs bursts above the observed peak, and the +1 keeps a number free so
    the least-recently-used choice has something to choose from. Integer maths keeps Python and
    any other implementation exact (peak * 1.2 in floats is 3.5999... for 3).
    """
    headroom = (peak * 6 + 4) // 5 + 1
    return max(headroom, size) if exhaustion_count > 0 else headroom


def pool_stats(pool_id: str, size: int, leased: int, peak: int, exhaustion_count: int) -> PoolStats:
    return PoolStats(
        pool_id=pool_id,
        size=size,
        leased=leased,
        utilisation=leased / size if size else 0.0,
        peak_concurrent=peak,
        exhaustion_count=exhaustion_count,
        recommended_size=recommended_size(size, peak, exhaustion_count),
    )
