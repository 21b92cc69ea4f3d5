"""Derived metrics and their dash rules, the table cells and the JSON, with no database."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import msgspec
import pytest

from calltracker.reports import model
from calltracker.reports.model import DASH, Counts, Report, Row


def test_counts_add_field_by_field() -> None:
    a = Counts(
        visits=1, calls=2, unique_calls=3, target_calls=4, missed_calls=5, spend=6, revenue=7
    )
    assert a + a == Counts(2, 4, 6, 8, 10, 12, 14)
    b = Counts(impressions=100, clicks=3)
    assert b + b == Counts(impressions=200, clicks=6)


def test_ctr_and_cpc_are_none_without_impressions_or_clicks() -> None:
    assert Counts(impressions=400, clicks=10, spend=250_00).ctr == Decimal("0.025")
    assert Counts(impressions=400, clicks=10, spend=250_00).cpc == Decimal(25)
    assert Counts(spend=100_00).ctr is None
    assert Counts(spend=100_00).cpc is None
    assert Counts(impressions=10).cpc is None


@pytest.mark.parametrize(
    ("counts", "conversion", "per_call", "per_target", "roi"),
    [
        (Counts(visits=4, calls=1, target_calls=1, spend=100_00, revenue=300_00),
         Decimal("0.25"), Decimal(100), Decimal(100), Decimal(2)),
        (Counts(visits=0, calls=3, spend=0), None, Decimal(0), None, None),
        (Counts(visits=5, calls=0, spend=50_00, revenue=0), Decimal(0), None, None, Decimal(-1)),
        (Counts(), None, None, None, None),
    ],
)  # fmt: skip
def test_a_zero_denominator_gives_none_not_an_error_or_infinity(
    counts: Counts,
    conversion: Decimal | None,
    per_call: Decimal | None,
    per_target: Decimal | None,
    roi: Decimal | None,
) -> None:
    assert counts.conversion == conversion
    assert counts.cost_per_call == per_call
    assert counts.cost_per_target_call == per_target
    assert counts.roi == roi


def test_cells_round_half_up_and_show_a_dash_for_none() -> None:
    assert model.money_cell(12345) == "123.45"
    assert model.money_cell(Decimal("0.005"), minor=False) == "0.01"
    assert model.money_cell(None) == DASH
    assert model.percent_cell(Decimal(2) / 3) == "66.67%"
    assert model.percent_cell(Decimal(-1)) == "-100.00%"
    assert model.percent_cell(None) == DASH
    assert model.label_cell("") == "(not set)"


def test_rows_sort_by_calls_then_spend_then_label() -> None:
    rows = model.sort_rows(
        {("b",): Counts(calls=1, spend=5), ("a",): Counts(calls=1, spend=5),
         ("c",): Counts(calls=1, spend=9), ("d",): Counts(calls=2)}
    )  # fmt: skip
    assert [r.key for r in rows] == [("d",), ("c",), ("a",), ("b",)]


def test_merge_adds_the_parts_that_share_a_key() -> None:
    merged = model.merge(
        [{("x",): Counts(visits=2)}, {("x",): Counts(calls=1), ("y",): Counts(spend=3)}]
    )
    assert merged == {("x",): Counts(visits=2, calls=1), ("y",): Counts(spend=3)}


def test_every_day_of_the_range_appears_once() -> None:
    days = model.every_day(date(2026, 2, 27), date(2026, 3, 2), {date(2026, 3, 1): Counts(calls=4)})
    assert [(d.day.isoformat(), d.counts.calls) for d in days] == [
        ("2026-02-27", 0), ("2026-02-28", 0), ("2026-03-01", 4), ("2026-03-02", 0)
    ]  # fmt: skip


def sample_report(level: str = "medium") -> Report:
    rows = [
        Row(("yandex", "cpc"), Counts(visits=3, calls=1, spend=1000)),
        Row(("yandex", ""), Counts(calls=2)),
    ]
    return Report(
        site_key="shop", timezone="UTC", currency="", first_day=date(2026, 3, 1),
        last_day=date(2026, 3, 1), level=level, filters={"source": "yandex"}, rows=rows,
        days=[], totals=model.total(rows),
    )  # fmt: skip


def test_the_table_has_a_column_per_level_and_a_total_row() -> None:
    table = model.table(sample_report())
    assert table.header[:6] == ["Source", "Medium", "Impressions", "Clicks", "CTR", "Visits"]
    assert "Spend" in table.header  # no currency suffix until the site has one
    assert table.body[1][:7] == ["yandex", "(not set)", "0", "0", "—", "0", "2"]
    assert table.footer[:7] == ["Total", "", "0", "0", "—", "3", "3"]
    assert table.lines() == [table.header, *table.body, table.footer]


def test_the_json_uses_null_for_dashes_and_major_units_for_money() -> None:
    body = msgspec.to_builtins(model.report_json(sample_report()))
    assert body["currency"] is None
    assert body["rows"][0] | {} == {
        "source": "yandex", "medium": "cpc", "impressions": 0, "clicks": 0, "ctr": None,
        "visits": 3, "calls": 1, "unique_calls": 0, "target_calls": 0, "missed_calls": 0,
        "conversion": 0.3333, "spend": 10.0, "cpc": None, "cost_per_call": 10.0,
        "cost_per_target_call": None, "revenue": 0.0, "roi": -1.0,
    }  # fmt: skip
    assert body["rows"][1]["conversion"] is None
    assert body["filters"] == {"source": "yandex"}
