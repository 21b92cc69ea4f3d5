"""Which call brought a deal: the order of certainty, as a table (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calltracker.deals.matching import (
    CONFIDENCE,
    CallRef,
    Candidates,
    Match,
    VisitRef,
    decide,
    prefer,
)

OPENED = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=30)
YANDEX = ("yandex", "cpc", "brand", "sofa")
GOOGLE = ("google", "cpc", "spring", "")


def call(n: int, days_before: float, labels: tuple[str, str, str, str] = YANDEX) -> CallRef:
    return CallRef(n, OPENED - timedelta(days=days_before), labels, f"v{n}")


@pytest.mark.parametrize(
    ("found", "basis", "call_id"),
    [
        # Our own lead/deal id wins over everything else; the earliest call that made it.
        (Candidates(own=[call(2, 1), call(1, 3)], pushed=[call(3, 0.5)], by_phone=[call(3, 0.5)]),
         "own", 1),
        # The caller we sent to the CRM: their latest call before the deal opened.
        (Candidates(pushed=[call(4, 5), call(5, 2), call(6, -1)]), "phone", 5),
        # A click id on the deal names a visit: that visit's latest earlier call.
        (Candidates(visits=[VisitRef("v7", OPENED - timedelta(days=4), GOOGLE, [call(7, 3, GOOGLE)])],
                    by_phone=[call(8, 1)]), "tracking", 7),
        # A phone that called within the window, never sent to this CRM: probable.
        (Candidates(by_phone=[call(9, 10), call(10, 40)]), "window", 9),
        # Only older than the window: nothing but the deal's own tags.
        (Candidates(by_phone=[call(10, 40)], utm=("vk", "social", "", "")), "utm", None),
        (Candidates(by_phone=[call(10, 40)]), "none", None),
        # A posted deal that names its call.
        (Candidates(named=call(11, 100), own=[call(1, 3)]), "call", 11),
    ],
)  # fmt: skip
def test_the_strongest_candidate_decides(
    found: Candidates, basis: str, call_id: int | None
) -> None:
    match = decide(OPENED, found, WINDOW)
    assert (match.basis, match.call_id) == (basis, call_id)


def test_a_match_carries_the_calls_labels_and_start_for_the_report() -> None:
    match = decide(OPENED, Candidates(by_phone=[call(9, 10, GOOGLE)]), WINDOW)
    assert match.labels == GOOGLE
    assert match.attributed_at == OPENED - timedelta(days=10)
    assert match.confidence == "probable"


def test_a_visit_without_a_call_still_places_the_deal_under_the_visits_labels() -> None:
    visit = VisitRef("v1", OPENED - timedelta(days=2), GOOGLE, [])
    match = decide(OPENED, Candidates(visits=[visit]), WINDOW)
    assert (match.basis, match.call_id, match.visit_id, match.labels) == (
        "tracking",
        None,
        "v1",
        GOOGLE,
    )


def test_no_window_takes_any_earlier_call_of_that_phone() -> None:
    match = decide(OPENED, Candidates(by_phone=[call(10, 400)]), None)
    assert (match.basis, match.call_id) == ("window", 10)


def test_a_call_after_the_deal_opened_did_not_bring_it() -> None:
    assert decide(OPENED, Candidates(pushed=[call(6, -0.1)]), WINDOW).basis == "none"


def test_an_earlier_stronger_match_is_kept_and_a_weaker_one_replaced() -> None:
    own = Match("own", 1, "v1", OPENED, YANDEX)
    window = Match("window", 9, "v9", OPENED, GOOGLE)
    assert prefer(own, window) is own
    assert prefer(window, own) is own
    assert prefer(None, window) is window
    assert prefer(Match("none"), window) is window


def test_every_basis_says_how_sure_it_is() -> None:
    assert {CONFIDENCE[b] for b in ("call", "own", "phone", "tracking")} == {"exact"}
    assert {CONFIDENCE[b] for b in ("window", "utm")} == {"probable"}
    assert CONFIDENCE["none"] == "none"
