"""The SVG charts: scales, one mark per value, and escaped labels."""

from __future__ import annotations

import re
from datetime import date, timedelta
from xml.etree import ElementTree

import pytest

from calltracker.reports import svg

NS = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("top", "axis", "ticks"),
    [(0, 1, [0, 1]), (3, 3, [0, 1, 2, 3]), (30, 30, [0, 10, 20, 30]),
     (97, 100, [0, 20, 40, 60, 80, 100]), (1234, 1250, [0, 250, 500, 750, 1000, 1250])],
)  # fmt: skip
def test_the_axis_is_a_round_number_at_or_above_the_top(
    top: float, axis: float, ticks: list[float]
) -> None:
    assert svg.nice_scale(top) == (axis, ticks)


def test_a_bar_chart_has_one_bar_per_label_and_series_scaled_to_the_axis() -> None:
    chart = svg.bar_chart(
        ["yandex", "google"],
        [svg.Series("Calls", [10, 5]), svg.Series("Target calls", [4, 0])],
        title="Calls by source",
    )
    root = ElementTree.fromstring(chart)  # well-formed XML
    bars = root.findall(f"{NS}rect[@class='bar']")
    assert [(b.get("data-label"), b.get("data-series"), b.get("data-value")) for b in bars] == [
        ("yandex", "Calls", "10"), ("yandex", "Target calls", "4"),
        ("google", "Calls", "5"), ("google", "Target calls", "0"),
    ]  # fmt: skip
    widths = [float(b.get("width", "")) for b in bars]
    assert widths[0] == 2 * widths[2] > 0  # 10 and 5 on the same scale
    assert widths[3] == 0


def test_labels_are_escaped_and_long_ones_shortened() -> None:
    evil = '<script>alert("x")</script>' + "x" * 40
    chart = svg.bar_chart([evil], [svg.Series("Calls & more", [1])], title="t")
    assert "<script>" not in chart
    root = ElementTree.fromstring(chart)
    texts = ["".join(t.itertext()) for t in root.iter(f"{NS}text")]
    assert any(t.endswith("…") and len(t) <= svg.MAX_LABEL_CHARS + len(evil) for t in texts)
    assert "Calls & more" in texts


def test_an_empty_bar_chart_says_so() -> None:
    assert "No data" in svg.bar_chart([], [svg.Series("Calls", [])], title="t")


def test_a_line_chart_has_a_line_per_series_and_a_point_per_day() -> None:
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(10)]
    chart = svg.line_chart(
        days, [svg.Series("Calls", list(range(10))), svg.Series("Target", [1] * 10)], title="t"
    )
    root = ElementTree.fromstring(chart)
    lines = root.findall(f"{NS}polyline")
    assert len(lines) == 2
    points = lines[0].get("points", "").split()
    assert len(points) == 10
    ys = [float(p.split(",")[1]) for p in points]
    assert ys == sorted(ys, reverse=True)  # rising values go up the page
    assert len(root.findall(f"{NS}circle")) == 20
    assert re.search(r">01\.03<", chart)


def test_a_single_day_line_chart_draws_its_point_in_the_middle() -> None:
    chart = svg.line_chart([date(2026, 3, 1)], [svg.Series("Calls", [3])], title="t")
    circle = ElementTree.fromstring(chart).find(f"{NS}circle")
    assert circle is not None and float(circle.get("cx", "")) > 300
