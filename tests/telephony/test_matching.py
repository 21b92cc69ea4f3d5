"""The attribution table, one row per test, on plain data."""

from __future__ import annotations

from calltracker.catalog.cache import NumberInfo
from calltracker.telephony.matching import (
    AMBIGUOUS,
    DEFAULT,
    EXACT,
    NONE,
    PROBABLE,
    STATIC,
    PhoneClick,
    decide,
    is_target,
)
from number_pool import LeaseRecord

N = "+74951230001"
POOLED = NumberInfo(number=N, site_id=1, kind="pool", pool_id=1)
GRACE = 900.0
T = 1_800_000_000.0  # the call's start


def rec(
    visit: str, start: float, end: float, *, visitor: str = "", shared: bool = False
) -> LeaseRecord:
    return LeaseRecord("1", N, visitor or f"visitor-{visit}", visit, start, start, end, shared)


def test_a_static_number_takes_its_label() -> None:
    billboard = NumberInfo(
        number="+74952000001",
        site_id=1,
        kind="static",
        source="billboard",
        medium="outdoor",
        campaign="tverskaya-2026",
    )
    d = decide(billboard, T, [], [], GRACE)
    assert (d.attribution, d.source, d.medium, d.campaign) == (
        STATIC,
        "billboard",
        "outdoor",
        "tverskaya-2026",
    )
    assert d.visit_id is None


def test_the_sites_default_number_is_unattributed() -> None:
    d = decide(NumberInfo(number="+74950000000", site_id=1, kind="default"), T, [], [], GRACE)
    assert (d.attribution, d.visit_id) == (DEFAULT, None)


def test_an_untracked_number_is_unattributed() -> None:
    assert decide(None, T, [], [], GRACE).attribution == NONE


def test_the_holder_at_call_start_gets_the_call() -> None:
    d = decide(POOLED, T, [rec("v1", T - 300, T + 600)], [], GRACE)
    assert (d.attribution, d.visit_id) == (EXACT, "v1")
    assert d.candidates[0].why == "held the number at call start"


def test_a_number_reused_by_a_second_visitor_goes_to_the_second() -> None:
    history = [rec("first", T - 3000, T - 1000), rec("second", T - 600, T + 300)]
    d = decide(POOLED, T, history, [], GRACE)
    assert (d.attribution, d.visit_id) == (EXACT, "second")


def test_a_call_in_the_grace_window_goes_to_the_last_holder_as_probable() -> None:
    d = decide(POOLED, T, [rec("v1", T - 2000, T - 120)], [], GRACE)
    assert (d.attribution, d.visit_id) == (PROBABLE, "v1")
    assert "120 s before" in d.candidates[0].why


def test_a_call_after_the_grace_window_is_unattributed() -> None:
    d = decide(POOLED, T, [rec("v1", T - 5000, T - GRACE - 1)], [], GRACE)
    assert (d.attribution, d.visit_id) == (NONE, None)


def test_a_shared_number_is_ambiguous_and_goes_to_the_newest_holder() -> None:
    history = [rec("old", T - 900, T + 60, shared=False), rec("new", T - 30, T + 870, shared=True)]
    d = decide(POOLED, T, history, [], GRACE)
    assert (d.attribution, d.visit_id) == (AMBIGUOUS, "new")
    assert {c.visit_id for c in d.candidates} == {"old", "new"}


def test_a_phone_click_settles_a_shared_number() -> None:
    history = [rec("old", T - 900, T + 60), rec("new", T - 30, T + 870, shared=True)]
    d = decide(POOLED, T, history, [PhoneClick("old", T - 20)], GRACE)
    assert (d.attribution, d.visit_id) == (EXACT, "old")
    assert "phone click" in d.rule


def test_a_phone_click_makes_a_grace_window_call_exact() -> None:
    d = decide(POOLED, T, [rec("v1", T - 2000, T - 120)], [PhoneClick("v1", T - 130)], GRACE)
    assert (d.attribution, d.visit_id) == (EXACT, "v1")


def test_a_stale_phone_click_confirms_nothing() -> None:
    d = decide(POOLED, T, [rec("v1", T - 2000, T - 120)], [PhoneClick("v1", T - 3600)], GRACE)
    assert d.attribution == PROBABLE


def test_a_target_call_is_answered_and_long_enough() -> None:
    assert is_target("answered", 30, 30)
    assert not is_target("answered", 29, 30)
    assert not is_target("missed", 100, 30)
