"""Spend and deal parsing, money and time: pure functions, line numbers and reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from calltracker.db.models import Site
from calltracker.deals.candidates import caller_forms
from calltracker.reports import conversions, money, spend
from calltracker.reports.rows import BadRows, Batch, RowError

HEADER = "date,source,medium,campaign,keyword,amount,currency\n"


@pytest.mark.parametrize(
    ("raw", "minor"),
    [("1234.50", 123450), ("1 234,50", 123450), ("1\u00a0000", 100000), (12, 1200),
     (0.1, 10), ("0", 0), ("7.5", 750)],
)  # fmt: skip
def test_amounts_become_minor_units(raw: object, minor: int) -> None:
    assert money.parse_amount(raw) == minor


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("abc", "not a number"), ("-1", "negative"), ("1.001", "two decimals"),
     ("1,234.5", "mixes"), ("NaN", "not a number"), (True, "must be a number"),
     ("1e13", "too large")],
)  # fmt: skip
def test_bad_amounts_say_why(raw: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        money.parse_amount(raw)


def test_a_spend_csv_reads_labels_like_the_visit_classifier() -> None:
    batch = spend.parse_csv("\ufeff" + HEADER + "2026-03-01, Yandex ,CPC, Brand ,Sofa,10,rub\n")
    assert batch.errors == []
    (row,) = batch.items
    assert (row.line, row.spend_date, row.source, row.medium, row.campaign, row.keyword) == (
        2, date(2026, 3, 1), "yandex", "cpc", "Brand", "Sofa"
    )  # fmt: skip
    assert (row.amount, row.currency) == (1000, "RUB")


def test_semicolon_csv_with_decimal_commas_and_no_optional_columns() -> None:
    batch = spend.parse_csv("Date;Source;Medium;Amount;Currency\n01.03.2026;vk;social;12,5;RUB\n")
    assert [(r.source, r.campaign, r.keyword, r.amount) for r in batch.items] == [
        ("vk", "", "", 1250)
    ]


def test_line_numbers_count_physical_lines_of_quoted_fields() -> None:
    text = HEADER + '2026-03-01,a,b,"multi\nline\ncampaign",k,1,RUB\n2026-03-01,a,b,c,k,x,RUB\n'
    batch = spend.parse_csv(text)
    assert [r.line for r in batch.items] == [2]
    assert batch.errors == [RowError(5, "amount 'x' is not a number")]


def test_an_empty_file_and_a_header_only_file_are_bad() -> None:
    assert spend.parse_csv("").errors == [RowError(1, "the file is empty")]
    with pytest.raises(BadRows, match="nothing to import"):
        spend.parse_csv(HEADER).check()


def test_json_rows_name_their_position() -> None:
    batch = spend.parse_json_rows(
        [{"date": "2026-03-01", "source": "a", "medium": "b", "amount": 1, "currency": "RUB"},
         "not an object",
         {"date": "2026-13-01", "source": "a", "medium": "b", "amount": 1, "currency": "RUB"},
         {"date": "2026-03-01", "source": "a", "medium": 5, "amount": 1, "currency": "RUB"}]
    )  # fmt: skip
    assert [(e.line, e.reason) for e in batch.errors] == [
        (2, "a row must be an object"),
        (3, "date '2026-13-01' is not YYYY-MM-DD or DD.MM.YYYY"),
        (4, "medium must be text"),
    ]
    assert spend.parse_json_rows("nope").errors == [RowError(1, "expected a list of row objects")]


def test_rows_with_one_key_are_summed_and_keep_their_currency() -> None:
    rows = spend.parse_csv(
        HEADER + "2026-03-01,a,b,c,,1,RUB\n2026-03-01,a,b,c,,2,RUB\n2026-03-01,a,b,d,,2,USD\n"
    ).items
    assert spend.aggregate(rows) == {
        (date(2026, 3, 1), "a", "b", "c", ""): spend.Total(300, "RUB", 0, 0),
        (date(2026, 3, 1), "a", "b", "d", ""): spend.Total(200, "USD", 0, 0),
    }
    assert spend.currency_errors(rows) == []  # other currencies convert at the rate table
    mixed = spend.parse_csv(HEADER + "2026-03-01,a,b,c,,1,RUB\n2026-03-01,a,b,c,,2,USD\n").items
    assert [e.line for e in spend.currency_errors(mixed)] == [3]


def test_impressions_and_clicks_are_whole_counts() -> None:
    header = "date,source,medium,amount,currency,impressions,clicks\n"
    batch = spend.parse_csv(
        header + "2026-03-01,a,b,1,RUB,1 000,7\n2026-03-01,a,c,1,RUB,,\n"
        "2026-03-01,a,d,1,RUB,-3,1\n2026-03-01,a,e,1,RUB,1,2.5\n"
    )
    assert [(r.impressions, r.clicks) for r in batch.items] == [(1000, 7), (0, 0)]
    assert [e.line for e in batch.errors] == [4, 5]


def test_bad_rows_list_every_line_in_order_and_show_the_first_five() -> None:
    batch: Batch[int] = Batch(
        items=[1], errors=[RowError(n, f"r{n}") for n in (9, 2, 7, 3, 4, 5, 6)]
    )
    with pytest.raises(BadRows) as caught:
        batch.check([RowError(1, "late")])
    assert [d["line"] for d in caught.value.details] == [1, 2, 3, 4, 5, 6, 7, 9]
    assert caught.value.message.startswith("8 bad row(s), nothing was stored: line 1: late;")
    assert caught.value.message.endswith("(and 3 more)")


MSK = ZoneInfo("Europe/Moscow")
SITE = Site(
    key="shop", name="Shop", country="RU", timezone="Europe/Moscow", default_number="+74950000000"
)


def test_a_deal_time_without_offset_is_the_sites_local_time() -> None:
    assert conversions.parse_time("2026-03-01 12:00", MSK) == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert conversions.parse_time("2026-03-01T12:00Z", MSK) == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert conversions.parse_time(0, MSK) == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        conversions.parse_time("01/03/2026", MSK)


def test_a_deal_needs_an_id_a_call_or_phone_and_a_valid_phone() -> None:
    good = {"deal_id": 42, "phone": "8 916 111-00-01", "amount": "10", "time": "2026-03-01T10:00"}
    (deal,) = conversions.parse_json(good, SITE).items
    assert (deal.external_id, deal.phone, deal.call_id, deal.currency) == (
        "42",
        "+79161110001",
        None,
        None,
    )
    batch = conversions.parse_json(
        {"conversions": [{"amount": 1, "time": "2026-03-01"},
                         {"deal_id": "a", "amount": 1, "time": "2026-03-01"},
                         {"deal_id": "b", "phone": "12", "amount": 1, "time": "2026-03-01"},
                         {"deal_id": "c", "call_id": "x1", "amount": 1, "time": "2026-03-01"}]},
        SITE,
    )  # fmt: skip
    assert [(e.line, e.reason.split(":")[0]) for e in batch.errors] == [
        (1, "deal_id is required"),
        (2, "a deal needs call_id or phone to find its call"),
        (3, "invalid phone number '12' for region RU"),
        (4, "call_id 'x1' must be a whole number"),
    ]


def test_a_caller_is_looked_up_in_the_forms_a_pbx_writes() -> None:
    assert caller_forms("+79161110001") == [
        "+79161110001", "79161110001", "89161110001", "9161110001"
    ]  # fmt: skip
