"""How accurate a pool of a given size is for given traffic: a seeded discrete-event simulation.

Visitors arrive by hour of day (a Poisson process at each hour's rate), keep the page
open for an exponentially distributed time, and lease a number as `number_pool` does:
the free number idle longest, held until the visit ends plus the hold time; when none is
free the visitor sees the default number (policy default_number) or shares the number
least recently active (share_oldest). Each visitor may call the number they were shown:
during the visit (at a uniform moment), or after it with a delay drawn from buckets.
Calls are then matched as `telephony/matching.py` does: the number's holder at the
call's start (exact; ambiguous when shared), else its last holder if the lease ended
within the grace window (probable), else nobody (unattributed).

Calls change nothing in the pool, so every visitor gets a candidate call: the shares come
from all of them, which removes the sampling noise of drawing who calls, and the call
rate only scales the expected number of calls. Each pool size sees the same visitors (the
same draws), so comparing sizes compares like with like.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

DEFAULT_POLICY = "default_number"
POLICIES = ("default_number", "share_oldest")
MAX_SIZE = 10_000


@dataclass(frozen=True)
class DelayBucket:
    """Callers who call `low`..`high` minutes after the visit, with a relative weight."""

    low: float
    high: float
    weight: float


# Most who call after the visit do so within minutes; the defaults assume all within half
# an hour (the default hold plus grace). Later calls cannot be attributed by any pool size.
DEFAULT_DELAYS = (DelayBucket(0, 2, 50), DelayBucket(2, 10, 30), DelayBucket(10, 30, 20))


@dataclass(frozen=True)
class Scenario:
    visitors_per_hour: tuple[float, ...]  # 24 rates, hour 0 to 23; the day repeats
    pool_size: int
    hold_seconds: float = 900.0
    grace_seconds: float = 900.0
    visit_minutes: float = 4.0  # mean time the page stays open (pinging, so the lease lives)
    call_rate: float = 0.03  # share of visitors who call
    during_visit: float = 0.5  # share of those who call while the page is open
    call_delays: tuple[DelayBucket, ...] = DEFAULT_DELAYS  # for the others, after the visit
    policy: str = DEFAULT_POLICY
    days: float = 7.0
    seed: int = 1

    def __post_init__(self) -> None:
        if len(self.visitors_per_hour) != 24 or min(self.visitors_per_hour) < 0:
            raise ValueError("visitors_per_hour needs 24 rates of zero or more")
        if self.pool_size < 0 or self.hold_seconds < 0 or self.grace_seconds < 0:
            raise ValueError("pool size, hold and grace must be zero or more")
        if self.visit_minutes <= 0 or self.days <= 0:
            raise ValueError("visit length and days must be positive")
        if not (0 <= self.call_rate <= 1 and 0 <= self.during_visit <= 1):
            raise ValueError("call rate and the share during the visit are between 0 and 1")
        if self.policy not in POLICIES:
            raise ValueError(f"policy is one of {', '.join(POLICIES)}")
        if not self.call_delays or any(
            b.low < 0 or b.high < b.low or b.weight < 0 for b in self.call_delays
        ):
            raise ValueError("call delays are buckets LOW-HIGH:WEIGHT with 0 <= LOW <= HIGH")
        if sum(b.weight for b in self.call_delays) <= 0:
            raise ValueError("call delay weights must not all be zero")


@dataclass(frozen=True)
class Outcome:
    """Shares of all candidate calls (one per visit) by how they would be attributed."""

    pool_size: int
    visits: int
    calls_per_day: float
    exact_right: float
    exact_wrong: float  # silently given to another visitor: the error nobody sees
    probable_right: float
    probable_wrong: float
    ambiguous: float
    unattributed: float
    exhausted_visits: float  # visits that got the default number (or a shared one)
    peak_leased: int

    @property
    def accuracy(self) -> float:
        """Calls attributed to the visitor who made them (ambiguous ones count as wrong)."""
        return self.exact_right + self.probable_right

    @property
    def flagged(self) -> float:
        """Calls marked as less than exact: probable, ambiguous or unattributed."""
        return self.probable_right + self.probable_wrong + self.ambiguous + self.unattributed


@dataclass(frozen=True)
class _Visitors:
    arrivals: list[float]  # seconds, sorted
    lengths: list[float]  # seconds the page stays open
    calls: list[float]  # when each would call, seconds


def draw_visitors(s: Scenario) -> _Visitors:
    """Arrivals, visit lengths and call times: everything random, and none of it pool-dependent."""
    rng = random.Random(s.seed)
    arrivals: list[float] = []
    hours = math.ceil(s.days * 24)
    end = s.days * 86400
    for hour in range(hours):
        rate = s.visitors_per_hour[hour % 24] / 3600.0
        if rate <= 0:
            continue
        t = hour * 3600.0
        stop = min((hour + 1) * 3600.0, end)
        while True:
            t += rng.expovariate(rate)  # memoryless: restarting at each hour is exact
            if t >= stop:
                break
            arrivals.append(t)
    mean = s.visit_minutes * 60
    weights = [b.weight for b in s.call_delays]
    lengths: list[float] = []
    calls: list[float] = []
    for at in arrivals:
        length = rng.expovariate(1 / mean)
        lengths.append(length)
        if rng.random() < s.during_visit:
            calls.append(at + rng.random() * length)
        else:
            bucket = rng.choices(s.call_delays, weights)[0]
            calls.append(at + length + rng.uniform(bucket.low, bucket.high) * 60)
    return _Visitors(arrivals, lengths, calls)


@dataclass
class _Number:
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    holders: list[int] = field(default_factory=list)
    busy_until: float = -math.inf


def simulate(s: Scenario, visitors: _Visitors | None = None) -> Outcome:
    v = visitors if visitors is not None else draw_visitors(s)
    numbers = [_Number() for _ in range(s.pool_size)]
    given: list[int] = [-1] * len(v.arrivals)  # each visitor's number; -1: the default
    free: deque[int] = deque(range(s.pool_size))  # idle longest on the left
    expiring: list[tuple[float, int]] = []  # (lease end, number)
    shared = exhausted = leased = peak = 0
    longest = 0.0
    for visitor, at in enumerate(v.arrivals):
        while expiring and expiring[0][0] <= at:
            until, k = heapq.heappop(expiring)
            if until == numbers[k].busy_until:  # not extended by a sharer since
                free.append(k)
                leased -= 1
        until = at + v.lengths[visitor] + s.hold_seconds
        longest = max(longest, until - at)
        if free:
            k = free.popleft()
            leased += 1
            peak = max(peak, leased)
        elif s.policy == "share_oldest" and expiring:
            k = expiring[0][1]  # the lease that ends first: its holder was seen least recently
            shared += 1
        else:
            exhausted += 1
            continue
        number = numbers[k]
        number.starts.append(at)
        number.ends.append(until)
        number.holders.append(visitor)
        if until > number.busy_until:
            number.busy_until = until
            heapq.heappush(expiring, (until, k))
        given[visitor] = k
    tally = dict.fromkeys(
        ("exact_right", "exact_wrong", "probable_right", "probable_wrong", "ambiguous"), 0
    )
    unattributed = 0
    for visitor, k in enumerate(given):
        if k < 0:
            unattributed += 1
            continue
        kind = _attribute(numbers[k], v.calls[visitor], visitor, s.grace_seconds, longest)
        if kind is None:
            unattributed += 1
        else:
            tally[kind] += 1
    total = max(len(v.arrivals), 1)
    return Outcome(
        pool_size=s.pool_size,
        visits=len(v.arrivals),
        calls_per_day=len(v.arrivals) * s.call_rate / s.days,
        exact_right=tally["exact_right"] / total,
        exact_wrong=tally["exact_wrong"] / total,
        probable_right=tally["probable_right"] / total,
        probable_wrong=tally["probable_wrong"] / total,
        ambiguous=tally["ambiguous"] / total,
        unattributed=unattributed / total,
        exhausted_visits=(exhausted + shared) / total,
        peak_leased=peak,
    )


def _attribute(number: _Number, t: float, caller: int, grace: float, longest: float) -> str | None:
    """matching.py's table for a call at `t` to this number; None when unattributed."""
    last = bisect.bisect_right(number.starts, t) - 1
    if last < 0:
        return None
    covering = []
    latest = last  # the lease that ended last before t, if none covers t
    j = last
    # Leases of one number overlap only when shared; none is longer than `longest`.
    while j >= 0 and number.starts[j] > t - longest:
        if number.ends[j] > t:
            covering.append(number.holders[j])
        elif number.ends[j] > number.ends[latest] or number.ends[latest] > t:
            latest = j
        j -= 1
    if len(covering) > 1:
        return "ambiguous"
    if covering:
        return "exact_right" if covering[0] == caller else "exact_wrong"
    if t - number.ends[latest] <= grace:
        return "probable_right" if number.holders[latest] == caller else "probable_wrong"
    return None


def sizes_for(
    s: Scenario, targets: Sequence[float], max_size: int = MAX_SIZE
) -> dict[float, int | None]:
    """The smallest pool reaching each target accuracy; None when no size up to max does.

    Some calls come too late for any pool (after the hold and the grace window): a target
    may be out of reach whatever the size, and then a longer hold time is the fix. The
    search starts at the peak of leases an unlimited pool sees.
    """
    visitors = draw_visitors(s)
    seen: dict[int, float] = {}

    def accuracy(size: int) -> float:
        if size not in seen:
            seen[size] = simulate(replace(s, pool_size=size), visitors).accuracy
        return seen[size]

    unlimited = simulate(replace(s, pool_size=max_size), visitors)
    seen[max_size] = unlimited.accuracy
    found: dict[float, int | None] = {}
    for target in targets:
        if unlimited.accuracy < target:
            found[target] = None
            continue
        low, high = 0, min(max(unlimited.peak_leased, 1), max_size)
        while accuracy(high) < target:  # accuracy(low) < target <= accuracy(high) after
            low, high = high, min(high * 2, max_size)
        while high - low > 1:
            mid = (low + high) // 2
            if accuracy(mid) >= target:
                high = mid
            else:
                low = mid
        found[target] = high
    return found


def size_for(s: Scenario, target: float, max_size: int = MAX_SIZE) -> int | None:
    return sizes_for(s, [target], max_size)[target]


def parse_hourly(text: str) -> tuple[float, ...]:
    """'120' (a flat rate) or 24 comma-separated rates, hour 0 first."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    values = tuple(float(p) for p in parts)
    if len(values) == 1:
        return values * 24
    if len(values) != 24:
        raise ValueError(f"give one rate or 24 (one per hour), not {len(values)}")
    return values


def parse_delays(text: str) -> tuple[DelayBucket, ...]:
    """'0-2:40,2-10:30,10-30:20,30-120:10': minutes after the visit, and weights."""
    buckets = []
    for part in text.split(","):
        span, sep, weight = part.strip().partition(":")
        low, dash, high = span.partition("-")
        if not sep or not dash:
            raise ValueError(f"bucket {part.strip()!r} is not LOW-HIGH:WEIGHT")
        buckets.append(DelayBucket(float(low), float(high), float(weight)))
    return tuple(buckets)


def format_delays(buckets: Sequence[DelayBucket]) -> str:
    return ",".join(f"{b.low:g}-{b.high:g}:{b.weight:g}" for b in buckets)


def describe(s: Scenario, outcome: Outcome, sizes: dict[float, int | None]) -> list[str]:
    """The simulation's result as the CLI prints it."""
    flat = len(set(s.visitors_per_hour)) == 1
    rate = (
        f"{s.visitors_per_hour[0]:g} visitors/h"
        if flat
        else f"{sum(s.visitors_per_hour):g} visitors/day (peak {max(s.visitors_per_hour):g}/h)"
    )
    pct = _pct
    lines = [
        f"pool simulation: {rate}, visit {s.visit_minutes:g} min, hold {s.hold_seconds / 60:g} min, "
        f"grace {s.grace_seconds / 60:g} min, policy {s.policy}, {s.days:g} days, seed {s.seed}",
        f"  calls: {pct(s.call_rate)} of visits call, {pct(s.during_visit)} of them during the "
        f"visit, the rest after it ({format_delays(s.call_delays)} min:weight)",
        f"  pool of {s.pool_size}: {outcome.visits} visits, about {outcome.calls_per_day:.0f} calls/day",
        f"  accuracy (calls attributed to the right visitor): {pct(outcome.accuracy)}",
        f"  flagged: {pct(outcome.flagged)} (probable {pct(outcome.probable_right + outcome.probable_wrong)}, "
        f"ambiguous {pct(outcome.ambiguous)}, unattributed {pct(outcome.unattributed)})",
        f"  silently misattributed: {pct(outcome.exact_wrong)}",
        f"  visits without a number of their own: {pct(outcome.exhausted_visits)}; "
        f"peak leases {outcome.peak_leased}",
    ]
    for target, size in sorted(sizes.items()):
        if size is None:
            lines.append(
                f"  pool size for {pct(target)} accuracy: out of reach (calls come later than "
                "hold + grace: lengthen the hold time)"
            )
        else:
            lines.append(f"  pool size for {pct(target)} accuracy: {size} numbers")
    return lines


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"
