"""The small inline-SVG chart kit of the HTML report: line charts, grouped bar charts, legends and the
card a chart sits in. Charts take raw text and numbers and escape what they write; an empty chart is
an empty string, so a section with nothing to draw is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gacd_core.report_html import fmt

# The colours of the student and the teacher (also in report.css's :root) and of other series.
STUDENT = "#2563eb"
STUDENT_LIGHT = "#93c5fd"
TEACHER = "#ea580c"
TEACHER_LIGHT = "#fdba74"
NEUTRAL = "#64748b"
PALETTE = ("#0f766e", "#7c3aed", "#db2777", "#65a30d", "#0891b2", "#a16207", "#4f46e5", "#be123c")


@dataclass(frozen=True)
class Series:
    """One line of a line chart; ``points`` are ``(x, y)`` in chart units."""

    name: str
    points: tuple[tuple[float, float], ...]
    color: str
    dashed: bool = False


@dataclass(frozen=True)
class Bars:
    """One set of bars, one value per category. Bars with the same ``slot`` are drawn on top of each
    other (the first behind), ``narrow`` ones thinner, so that one can sit inside another."""

    name: str
    values: tuple[float | None, ...]
    color: str
    slot: int = 0
    narrow: bool = False


@dataclass(frozen=True)
class _Frame:
    """The plot area of a chart and the mapping from data to SVG coordinates."""

    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def base(self) -> float:
        return self.height - self.bottom

    def x(self, value: float) -> float:
        return self.left + (value - self.x_lo) / (self.x_hi - self.x_lo) * self.plot_width

    def y(self, value: float) -> float:
        span = self.height - self.top - self.bottom
        clipped = min(max(value, self.y_lo), self.y_hi)
        return self.base - (clipped - self.y_lo) / (self.y_hi - self.y_lo) * span


def series(
    name: str, pairs: Iterable[tuple[Any, Any]], color: str, *, scale: float = 1.0, dashed: bool = False
) -> Series | None:
    """A series from raw ``(x, y)`` pairs, skipping pairs with a missing value; ``None`` if none is left."""
    points = []
    for x, y in pairs:
        xv, yv = fmt.num(x), fmt.num(y)
        if xv is not None and yv is not None:
            points.append((xv, yv * scale))
    return Series(name, tuple(points), color, dashed) if points else None


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering ``[lo, hi]``."""
    if hi - lo <= 0:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    return [start + i * step for i in range(round((stop - start) / step) + 1)]


def _svg_open(width: float, height: float, label: str, *, fixed: bool = False) -> str:
    size = f' width="{width:.0f}" height="{height:.0f}"' if fixed else ""
    cls = "chart fixed" if fixed else "chart"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{cls}" viewBox="0 0 {width:.0f} {height:.0f}"{size}'
        f' role="img" aria-label="{fmt.esc(label)}">'
    )


def _y_axis(frame: _Frame, ticks: Sequence[float], label_fmt: Callable[[float], str], label: str) -> list[str]:
    """Horizontal grid lines with their labels, and the rotated y-axis title."""
    out = []
    for t in ticks:
        y = frame.y(t)
        out.append(_hline("gridline", frame, y))
        out.append(f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt.esc(label_fmt(t))}</text>')
    mid = (frame.top + frame.base) / 2
    out.append(
        f'<text class="axis-label" x="12" y="{mid:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {mid:.1f})">{fmt.esc(label)}</text>'
    )
    out.append(_hline("axis", frame, frame.base))
    return out


def _hline(cls: str, frame: _Frame, y: float) -> str:
    right = frame.width - frame.right
    return f'<line class="{cls}" x1="{frame.left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>'


def _x_ticks(xs: Sequence[float], lo: float, hi: float) -> list[float]:
    """The data's own x values when there are few, otherwise round ticks inside ``[lo, hi]``."""
    distinct = sorted(set(xs))
    if len(distinct) <= 12:
        return distinct
    return [t for t in _nice_ticks(lo, hi, 6) if lo - 1e-9 <= t <= hi + 1e-9]


def line_chart(
    series: Sequence[Series],
    *,
    label: str,
    x_label: str,
    y_label: str,
    x_fmt: Callable[[float], str] = fmt.tick,
    y_fmt: Callable[[float], str] = fmt.tick,
    value_fmt: Callable[[float], str] = fmt.tick,
    y_range: tuple[float, float] | None = None,
    marker: tuple[float, str] | None = None,
    height: int = 260,
) -> str:
    """An SVG line chart, one polyline per series plus a dot per point (so one point still shows).

    Args:
        series: The lines to draw; empty series are ignored.
        label: Accessible name of the chart.
        x_label: Title of the x axis.
        y_label: Title of the y axis.
        x_fmt: Formats x tick values.
        y_fmt: Formats y tick values.
        value_fmt: Formats y values in the hover titles of the points.
        y_range: Fixed y range; by default from ``min(0, lowest)`` to the highest value.
        marker: An x value and a caption for a dotted vertical guide line.
        height: Height of the chart in SVG units (its width is 640).

    Returns:
        The ``<svg>`` element, or an empty string when there is nothing to draw.
    """
    series = [s for s in series if s.points]
    if not series:
        return ""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    else:
        pad = (x_hi - x_lo) * 0.03
        x_lo, x_hi = x_lo - pad, x_hi + pad
    y_ticks = _nice_ticks(*(y_range or (min(0.0, min(ys)), max(ys))))
    frame = _Frame(640, height, 56, 16, 12, 40, x_lo, x_hi, y_ticks[0], y_ticks[-1])

    out = [_svg_open(frame.width, frame.height, label)]
    out += _y_axis(frame, y_ticks, y_fmt, y_label)
    for t in _x_ticks(xs, min(xs), max(xs)):
        x = frame.x(t)
        out.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.base}" y2="{frame.base + 4}"/>')
        out.append(f'<text x="{x:.1f}" y="{frame.base + 16}" text-anchor="middle">{fmt.esc(x_fmt(t))}</text>')
    out.append(
        f'<text class="axis-label" x="{frame.left + frame.plot_width / 2:.1f}" y="{frame.height - 4}" '
        f'text-anchor="middle">{fmt.esc(x_label)}</text>'
    )
    if marker is not None and x_lo <= marker[0] <= x_hi:
        x = frame.x(marker[0])
        out.append(f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.base}"/>')
        caption = fmt.esc(marker[1])
        out.append(f'<text class="marker-label" x="{x + 4:.1f}" y="{frame.top + 10}">{caption}</text>')
    for s in series:
        out.append(_polyline(s, frame, x_label, x_fmt, value_fmt))
    out.append("</svg>")
    return "".join(out)


def _polyline(
    s: Series, frame: _Frame, x_label: str, x_fmt: Callable[[float], str], value_fmt: Callable[[float], str]
) -> str:
    coords = [(frame.x(x), frame.y(y)) for x, y in sorted(s.points)]
    dash = ' stroke-dasharray="6 4"' if s.dashed else ""
    out = []
    if len(coords) > 1:
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{s.color}" stroke-width="2.2"{dash}/>')
    radius = 3.5 if len(coords) <= 40 else 1.6
    for (x, y), (xv, yv) in zip(coords, sorted(s.points)):
        tip = f"{s.name} · {x_label} {x_fmt(xv)}: {value_fmt(yv)}"
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{s.color}"><title>{fmt.esc(tip)}</title></circle>'
        )
    return f'<g class="series">{"".join(out)}</g>'


def bar_chart(
    categories: Sequence[str],
    bars: Sequence[Bars],
    *,
    label: str,
    y_label: str,
    y_max: float = 100.0,
    value_fmt: Callable[[float], str] = fmt.percent,
    annotate: bool = False,
    min_width: float = 560.0,
) -> str:
    """An SVG grouped bar chart that grows wider (and is then scrolled by CSS) with many categories.

    Args:
        categories: The category names along the x axis (raw text; escaped here).
        bars: The bar sets; ``slot`` places a set within each category group.
        label: Accessible name of the chart.
        y_label: Title of the y axis.
        y_max: Top of the y axis (the bottom is 0).
        value_fmt: Formats values for the hover titles and the annotations.
        annotate: Write each bar's value above it (for charts with few categories).
        min_width: Width of the plot area in SVG units when the categories fit in it; the chart then
            scales with its card. With more categories it grows instead and is scrolled sideways.

    Returns:
        The ``<svg>`` element, or an empty string when there is nothing to draw.
    """
    n = len(categories)
    if n == 0 or not any(v is not None for b in bars for v in b.values):
        return ""
    slots = max(b.slot for b in bars) + 1
    plot_width = max(min_width, n * (9.0 * slots + 8))
    group = plot_width / n
    slot_width = min(36.0, group * 0.78 / slots)
    names = [c if len(c) <= 18 else c[:17] + "…" for c in categories]
    longest = max(len(c) for c in names)
    rotate = longest * 6.3 > group - 4
    bottom = 34 + (longest * 4.8 + 8 if rotate else 14)
    frame = _Frame(56 + plot_width + 12, 230 + bottom, 56, 12, 16, bottom, 0, n, 0, y_max)
    fixed = plot_width > min_width

    out = [_svg_open(frame.width, frame.height, label, fixed=fixed)]
    out += _y_axis(frame, _nice_ticks(0, y_max), fmt.tick, y_label)
    for i, (full, short) in enumerate(zip(categories, names)):
        cx = frame.x(i + 0.5)
        y = frame.base + 14
        turn = f' transform="rotate(-45 {cx:.1f} {y:.1f})"' if rotate else ""
        anchor = "end" if rotate else "middle"
        out.append(
            f'<text x="{cx:.1f}" y="{y:.1f}" text-anchor="{anchor}"{turn}>'
            f"<title>{fmt.esc(full)}</title>{fmt.esc(short)}</text>"
        )
    for b in bars:
        for i, value in enumerate(b.values):
            if value is not None:
                out.append(_bar(frame, b, i, value, categories[i], slots, slot_width, value_fmt, annotate))
    out.append("</svg>")
    svg = "".join(out)
    return f'<div class="scroll">{svg}</div>' if fixed else svg


def _bar(
    frame: _Frame,
    b: Bars,
    index: int,
    value: float,
    category: str,
    slots: int,
    slot_width: float,
    value_fmt: Callable[[float], str],
    annotate: bool,
) -> str:
    group_left = frame.x(index) + (frame.x(index + 1) - frame.x(index) - slots * slot_width) / 2
    width = max(slot_width - 2, 1.0) * (0.45 if b.narrow else 1.0)
    x = group_left + b.slot * slot_width + (slot_width - width) / 2
    top = frame.y(value)
    tip = f"{category} · {b.name}: {value_fmt(value)}"
    note = (
        f'<text class="bar-value" x="{x + width / 2:.1f}" y="{top - 4:.1f}" text-anchor="middle">'
        f"{fmt.esc(value_fmt(value))}</text>"
        if annotate
        else ""
    )
    return (
        f'<rect x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{max(frame.base - top, 0):.1f}" '
        f'fill="{b.color}" rx="1.5"><title>{fmt.esc(tip)}</title></rect>{note}'
    )


def legend(items: Iterable[tuple[str, str, str]]) -> str:
    """A legend row; each item is ``(name, colour, "line" | "dash" | "box")``."""
    keys = "".join(
        f'<span class="key"><i class="swatch {kind}" style="--c:{color}"></i>{fmt.esc(name)}</span>'
        for name, color, kind in items
    )
    return f'<div class="legend">{keys}</div>'


def figure(title: str, chart: str, legend: str = "", caption: str = "", *, wide: bool = False) -> str:
    """A chart card; ``title`` and ``caption`` are HTML fragments built from escaped text."""
    if not chart:
        return ""
    cls = "card figure wide" if wide else "card figure"
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure class="{cls}"><h3>{title}</h3>{legend}{chart}{cap}</figure>'
