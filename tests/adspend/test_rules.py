"""The sync's pure rules, as tables: windows, backoff, labels from tracking or the table."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from calltracker.adspend import base, mapping, sync
from calltracker.adspend.base import CampaignInfo, StatRow
from calltracker.adspend.sync import Window

D = date.fromisoformat
TODAY = D("2026-03-20")


@pytest.mark.parametrize(
    ("lookback", "pulled_through", "first"),
    [
        (7, None, "2026-03-14"),  # a new account: the look-back window
        (7, "2026-03-19", "2026-03-14"),  # up to date: yesterday and today, and corrections
        (7, "2026-03-13", "2026-03-14"),  # the day before the window: no gap
        (7, "2026-03-05", "2026-03-06"),  # ten days of outage: from the first unpulled day
        (1, "2026-03-19", "2026-03-20"),
        (7, "2025-01-01", "2025-12-21"),  # a gap older than 90 days is the backfill's job
    ],
)
def test_a_round_starts_at_its_look_back_or_at_the_first_unpulled_day(
    lookback: int, pulled_through: str | None, first: str
) -> None:
    window = sync.plan_window(TODAY, lookback, D(pulled_through) if pulled_through else None)
    assert (window.first, window.last) == (D(first), TODAY)


@pytest.mark.parametrize(
    ("pulled_through", "window", "after"),
    [
        (None, ("2026-03-14", "2026-03-20"), "2026-03-20"),
        ("2026-03-10", ("2026-03-11", "2026-03-20"), "2026-03-20"),
        ("2026-03-20", ("2026-03-14", "2026-03-20"), "2026-03-20"),
        ("2026-03-20", ("2026-01-01", "2026-01-07"), "2026-03-20"),  # backfill of the past
        ("2026-03-10", ("2026-03-15", "2026-03-20"), "2026-03-10"),  # a hole stays visible
    ],
)
def test_pulled_through_moves_only_over_contiguous_days(
    pulled_through: str | None, window: tuple[str, str], after: str
) -> None:
    before = D(pulled_through) if pulled_through else None
    assert sync.advance(before, Window(D(window[0]), D(window[1]))) == D(after)


def test_a_backfill_goes_in_chunks_oldest_first() -> None:
    steps = sync.chunks(D("2026-01-01"), D("2026-01-16"), 7)
    assert [(w.first.day, w.last.day) for w in steps] == [(1, 7), (8, 14), (15, 16)]
    assert sync.chunks(D("2026-01-02"), D("2026-01-01"), 7) == []


NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
HOURS3 = timedelta(hours=3)


@pytest.mark.parametrize(
    ("kind", "failures", "retry_after", "wait"),
    [
        ("", 0, None, HOURS3),
        ("temporary", 1, None, timedelta(minutes=5)),
        ("temporary", 3, None, timedelta(minutes=20)),
        ("temporary", 9, None, HOURS3),  # never later than the normal interval
        ("temporary", 1, 3600.0, timedelta(hours=1)),  # the platform said when
        ("auth", 4, None, HOURS3),  # refused credentials: the regular interval, not a storm
        ("permanent", 1, None, HOURS3),
    ],
)
def test_the_next_round_after_each_outcome(
    kind: str, failures: int, retry_after: float | None, wait: timedelta
) -> None:
    due = sync.next_attempt(
        NOW, kind=kind, failures=failures, interval=HOURS3, retry_after=retry_after
    )
    assert due - NOW == wait


def test_a_key_listed_twice_is_added_up_once() -> None:
    a = StatRow(D("2026-03-01"), "1", "C", "2", "G", "3", "sofa", 10, 1, 100)
    b = StatRow(D("2026-03-01"), "1", "C", "2", "G", "3", "", 5, 2, 50)
    assert sync.merge_rows([a, b]) == [
        StatRow(D("2026-03-01"), "1", "C", "2", "G", "3", "sofa", 15, 3, 150)
    ]


@pytest.mark.parametrize(
    ("micros", "minor"),
    [(0, 0), (1_234_567, 123), (1_235_000, 124), (12_004_999, 1200), (12_005_000, 1201)],
)
def test_micro_units_round_half_up_to_the_kopeck(micros: int, minor: int) -> None:
    assert base.micros_to_minor(micros) == minor


ROW = StatRow(D("2026-03-01"), "555", "Brand Moscow", "77", "Sofas", "9", "диван купить -бесплатно")


@pytest.mark.parametrize(
    ("platform", "tracking", "labels"),
    [
        ("yandex_direct", "utm_source=Yandex&utm_medium=CPC&utm_campaign=brand&utm_term={keyword}",
         ("yandex", "cpc", "brand", "диван купить")),
        ("yandex_direct", "utm_source=yandex&utm_campaign={campaign_id}",
         ("yandex", "cpc", "555", "")),  # no utm_medium: cpc, as the click id says
        ("yandex_direct", "utm_source=yandex&utm_medium=cpc&utm_campaign={campaign_name}",
         ("yandex", "cpc", "Brand Moscow", "")),
        ("yandex_direct", "utm_source=yandex&utm_medium=cpc&utm_campaign=x&utm_term={phrase_id}",
         ("yandex", "cpc", "x", "")),  # a keyword macro we cannot fill: the keyword stays empty
        ("google_ads", "{lpurl}?utm_source=google&utm_medium=cpc&utm_campaign={campaignid}",
         ("google", "cpc", "555", "")),
        ("vk_ads", "utm_source=vk&utm_medium=cpc&utm_campaign={{campaign_name}}",
         ("vk", "cpc", "Sofas", "")),
    ],
)  # fmt: skip
def test_tracking_parameters_give_the_labels_visits_will_carry(
    platform: str, tracking: str, labels: tuple[str, str, str, str]
) -> None:
    found = mapping.resolve(
        platform,
        ROW,
        table=None,
        campaign=CampaignInfo("555", "", "Brand", tracking),
        ad_group=None,
    )
    assert found is not None and found.key == labels and found.how == "tracking"


@pytest.mark.parametrize(
    "tracking",
    [
        "",  # no tracking parameters: unknown, never guessed
        "utm_medium=cpc&utm_campaign=brand",  # no utm_source
        "utm_source={source}&utm_medium=cpc",  # filled per click: unknowable here
        "utm_source=yandex&utm_medium=cpc&utm_campaign={ad_id}",
    ],
)
def test_a_row_without_usable_tracking_is_unmapped(tracking: str) -> None:
    info = CampaignInfo("555", "", "Brand", tracking)
    assert mapping.resolve("yandex_direct", ROW, table=None, campaign=info, ad_group=None) is None


def test_the_mapping_table_wins_and_the_keyword_is_the_platforms_text() -> None:
    info = CampaignInfo("555", "", "Brand", "utm_source=yandex&utm_campaign=from-tracking")
    found = mapping.resolve(
        "yandex_direct",
        ROW,
        table=mapping.TableEntry("Yandex", "CPC", "Бренд"),
        campaign=info,
        ad_group=None,
    )
    assert found == mapping.Labels("yandex", "cpc", "Бренд", "диван купить", "table")


def test_an_ad_groups_tracking_comes_before_its_campaigns() -> None:
    found = mapping.resolve(
        "vk_ads",
        ROW,
        table=None,
        campaign=CampaignInfo("555", "", "", "utm_source=vk&utm_campaign=plan"),
        ad_group=CampaignInfo("555", "77", "", "utm_source=vk&utm_campaign=group"),
    )
    assert found is not None and found.campaign == "group"
