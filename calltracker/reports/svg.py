"""Server-rendered SVG charts: bars per channel and lines per day, no JavaScript needed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

# Presentation attributes, not style=""; the pages' Content-Security-Policy allows no inline
# styles, and attributes are not styles.
COLORS = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'
SMALL_FONT = 'font-family="system-ui, sans-serif" font-size="10"'
MAX_LABEL_CHARS = 26


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def nice_scale(top: float, *, steps: int = 5, whole: bool = True) -> tuple[float, list[float]]:
    """A round axis maximum at or above `top`, and its tick values from zero."""
    if top <= 0:
        top = 1
    raw = top / steps
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(1, math.ceil(step))
    count = math.ceil(top / step)
    return step * count, [step * i for i in range(count + 1)]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out: list[str] = []
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        out.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14:.1f}" y="{y:.1f}" {FONT}>{escape(s.name)}</text>'
        )
        x += 24 + 7 * len(s.name)
    return out


def bar_chart(
    labels: Sequence[str], series: Sequence[Series], *, title: str, width: int = 720
) -> str:
    """Horizontal grouped bars: one group per label, one bar per series."""
    left, right, top, row_gap = 190, 60, 34, 10
    bar_h = 12
    group_h = bar_h * len(series) + row_gap
    height = top + max(len(labels), 1) * group_h + 24
    top_value = max((v for s in series for v in s.values), default=0)
    axis_max, ticks = nice_scale(top_value)
    plot_w = width - left - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-bars" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        *_legend(series, left, 16),
    ]
    for tick in ticks:
        x = left + plot_w * tick / axis_max
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 20}" '
            f'stroke="#e5e7eb"/><text x="{x:.1f}" y="{height - 6}" text-anchor="middle" '
            f'{FONT} fill="#6b7280">{_fmt(tick)}</text>'
        )
    if not labels:
        parts.append(f'<text x="{left}" y="{top + 14}" {FONT} fill="#6b7280">No data</text>')
    for row, label in enumerate(labels):
        y0 = top + row * group_h
        parts.append(
            f'<text x="{left - 8}" y="{y0 + bar_h * len(series) / 2 + 4:.1f}" '
            f'text-anchor="end" {FONT}><title>{escape(label)}</title>'
            f"{escape(_short(label))}</text>"
        )
        for i, s in enumerate(series):
            value = s.values[row]
            w = plot_w * value / axis_max
            y = y0 + i * bar_h
            parts.append(
                f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" '
                f'fill="{COLORS[i % len(COLORS)]}" data-label="{escape(label)}" '
                f'data-series="{escape(s.name)}" data-value="{_fmt(value)}">'
                f"<title>{escape(label)} · {escape(s.name)}: {_fmt(value)}</title></rect>"
                f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 3}" {SMALL_FONT} '
                f'fill="#374151">{_fmt(value)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    days: Sequence[date], series: Sequence[Series], *, title: str, width: int = 720
) -> str:
    """One line per series over the days, with a point (and its tooltip) per day."""
    left, right, top, bottom, height = 48, 16, 30, 28, 240
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max((v for s in series for v in s.values), default=0)
    axis_max, ticks = nice_scale(top_value)
    n = len(days)

    def x_at(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        return top + plot_h - plot_h * v / axis_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-days" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        *_legend(series, left, 16),
    ]
    for tick in ticks:
        y = y_at(tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT} '
            f'fill="#6b7280">{_fmt(tick)}</text>'
        )
    label_every = max(1, math.ceil(n / 8))
    for i, day in enumerate(days):
        if i % label_every == 0:
            parts.append(
                f'<text x="{x_at(i):.1f}" y="{height - 8}" text-anchor="middle" {FONT} '
                f'fill="#6b7280">{day:%d.%m}</text>'
            )
    for si, s in enumerate(series):
        color = COLORS[si % len(COLORS)]
        points = " ".join(f"{x_at(i):.1f},{y_at(v):.1f}" for i, v in enumerate(s.values))
        parts.append(
            f'<polyline class="line" data-series="{escape(s.name)}" fill="none" '
            f'stroke="{color}" stroke-width="2" points="{points}"/>'
        )
        for i, v in enumerate(s.values):
            parts.append(
                f'<circle class="point" cx="{x_at(i):.1f}" cy="{y_at(v):.1f}" r="2.5" '
                f'fill="{color}"><title>{days[i].isoformat()} · {escape(s.name)}: '
                f"{_fmt(v)}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)
