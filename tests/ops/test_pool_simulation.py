"""The pool-size model (pure) and `calltracker pool simulate`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from calltracker.catalog.simulation import (
    DelayBucket,
    Scenario,
    draw_visitors,
    parse_delays,
    parse_hourly,
    simulate,
    size_for,
    sizes_for,
)
from calltracker.cli.main import main

# 60 visitors an hour for two days: about 2,900 candidate calls, a few tenths of a second.
BASE = Scenario(visitors_per_hour=(60.0,) * 24, pool_size=30, days=2)


def test_same_seed_same_result_and_another_seed_differs() -> None:
    assert simulate(BASE) == simulate(BASE)
    assert simulate(replace(BASE, seed=2)) != simulate(BASE)


@pytest.mark.parametrize("policy", ["default_number", "share_oldest"])
def test_more_numbers_never_lower_the_accuracy(policy: str) -> None:
    scenario = replace(BASE, policy=policy)
    visitors = draw_visitors(scenario)
    accuracy = [
        simulate(replace(scenario, pool_size=n), visitors).accuracy
        for n in (1, 5, 10, 20, 30, 40, 60, 100, 200)
    ]
    assert accuracy == sorted(accuracy)
    assert accuracy[0] < 0.2 < 0.99 < accuracy[-1]


def test_shares_add_up_to_every_candidate_call() -> None:
    o = simulate(BASE)
    total = (
        o.exact_right + o.exact_wrong + o.probable_right + o.probable_wrong + o.ambiguous
    ) + o.unattributed
    assert total == pytest.approx(1.0)
    assert o.visits > 2000
    assert o.calls_per_day == pytest.approx(o.visits * BASE.call_rate / BASE.days)


def test_without_a_hold_time_calls_after_the_visit_are_flagged_or_lost() -> None:
    roomy = replace(BASE, pool_size=40)
    held, unheld = simulate(roomy), simulate(replace(roomy, hold_seconds=0))
    assert held.accuracy > 0.99
    assert unheld.accuracy < held.accuracy - 0.02
    # The lease ends with the page: later calls are at best probable, after the grace lost.
    assert unheld.unattributed > 0.02 > held.unattributed
    assert unheld.flagged > held.flagged + 0.2


def test_a_tiny_pool_flags_most_calls() -> None:
    tiny = simulate(replace(BASE, pool_size=2))
    assert tiny.flagged > 0.8
    assert tiny.exhausted_visits > 0.8
    assert simulate(replace(BASE, pool_size=60)).flagged < 0.15


def test_sharing_the_oldest_number_makes_calls_ambiguous_instead_of_unattributed() -> None:
    small = replace(BASE, pool_size=10)
    default, shared = simulate(small), simulate(replace(small, policy="share_oldest"))
    assert default.ambiguous == 0 and default.unattributed > 0.5
    assert shared.ambiguous > 0.3 and shared.unattributed < default.unattributed


def test_calls_later_than_hold_and_grace_are_unattributed_whatever_the_size() -> None:
    late = replace(BASE, during_visit=0.0, call_delays=(DelayBucket(40, 60, 1),))
    assert simulate(replace(late, pool_size=5000)).unattributed == pytest.approx(1.0)
    assert size_for(late, 0.99) is None


def test_the_size_found_is_the_smallest_that_reaches_the_target() -> None:
    sizes = sizes_for(BASE, [0.99, 0.995])
    n99, n995 = sizes[0.99], sizes[0.995]
    assert n99 is not None and n995 is not None and n99 <= n995
    visitors = draw_visitors(BASE)
    assert simulate(replace(BASE, pool_size=n99), visitors).accuracy >= 0.99
    assert simulate(replace(BASE, pool_size=n99 - 1), visitors).accuracy < 0.99
    # More traffic needs more numbers.
    busier = sizes_for(replace(BASE, visitors_per_hour=(120.0,) * 24), [0.99])[0.99]
    assert busier is not None and busier > n99


def test_hourly_profile_and_delay_buckets_parse() -> None:
    assert parse_hourly("120") == (120.0,) * 24
    hours = ",".join(str(h) for h in range(24))
    assert parse_hourly(hours)[23] == 23.0
    with pytest.raises(ValueError, match="24"):
        parse_hourly("1,2,3")
    assert parse_delays("0-2:50, 2-10:30") == (DelayBucket(0, 2, 50), DelayBucket(2, 10, 30))
    with pytest.raises(ValueError, match="LOW-HIGH:WEIGHT"):
        parse_delays("5:10")


def test_a_quiet_night_needs_fewer_numbers_than_a_flat_day_of_the_same_peak() -> None:
    profile = tuple(10.0 if h < 8 else 60.0 for h in range(24))
    night = simulate(replace(BASE, visitors_per_hour=profile))
    assert night.visits < simulate(BASE).visits
    assert night.peak_leased <= simulate(replace(BASE, pool_size=10_000)).peak_leased


def test_cli_prints_accuracy_flags_and_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pool", "simulate", "--visitors-per-hour", "60", "--size", "30", "--days", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    expected = simulate(BASE)
    assert (
        f"accuracy (calls attributed to the right visitor): {expected.accuracy * 100:.1f}%" in out
    )
    assert f"flagged: {expected.flagged * 100:.1f}%" in out
    sizes = sizes_for(BASE, [0.99, 0.995])
    assert f"pool size for 99.0% accuracy: {sizes[0.99]} numbers" in out
    assert f"pool size for 99.5% accuracy: {sizes[0.995]} numbers" in out


def test_cli_rejects_a_bad_profile_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pool", "simulate", "--visitors-per-hour", "1,2"]) == 1
    assert "24" in capsys.readouterr().err
