"""Tests for last non-direct and first-touch attribution."""

from __future__ import annotations

from calltracker.tracking.attribution import attribute, first_touch, next_last_non_direct
from calltracker.tracking.classify import Source, classify

DIRECT = Source("(direct)", "(none)")
YANDEX_CPC = Source(
    "yandex",
    "cpc",
    campaign="spring_sale",
    keyword="купить диван",
    click_id="5463248762937846271",
    click_id_type="yclid",
)
GOOGLE_ORGANIC = Source("google", "organic")


def test_returning_direct_visitor_keeps_last_non_direct_source() -> None:
    first = classify(
        "https://shop.example.ru/?utm_source=yandex&utm_medium=cpc&utm_campaign=spring_sale"
        "&utm_term=%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C+%D0%B4%D0%B8%D0%B2%D0%B0%D0%BD"
        "&yclid=5463248762937846271",
        "https://yandex.ru/",
    )
    stored = next_last_non_direct(first, None)

    returning = classify("https://shop.example.ru/contacts/", None)

    assert attribute(returning, stored) == YANDEX_CPC


def test_direct_visit_of_new_visitor_stays_direct() -> None:
    assert attribute(DIRECT, None) == DIRECT


def test_non_direct_visit_wins_over_earlier_source() -> None:
    assert attribute(GOOGLE_ORGANIC, YANDEX_CPC) == GOOGLE_ORGANIC


def test_non_direct_visit_becomes_the_stored_last_non_direct() -> None:
    assert next_last_non_direct(GOOGLE_ORGANIC, YANDEX_CPC) == GOOGLE_ORGANIC


def test_direct_visit_leaves_the_stored_last_non_direct_alone() -> None:
    assert next_last_non_direct(DIRECT, YANDEX_CPC) == YANDEX_CPC


def test_direct_visit_never_becomes_the_stored_last_non_direct() -> None:
    assert next_last_non_direct(DIRECT, None) is None


def test_first_visit_sets_the_first_touch() -> None:
    assert first_touch(DIRECT, None) == DIRECT


def test_first_touch_stays_with_the_first_visit() -> None:
    assert first_touch(GOOGLE_ORGANIC, YANDEX_CPC) == YANDEX_CPC
