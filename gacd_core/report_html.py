"""Render a ``report.json`` dictionary as one self-contained HTML page.

The page needs no network, no JavaScript and no third-party library: the CSS is inline and the charts
are inline SVG drawn by the small helpers below. Every string taken from the report is HTML-escaped,
and every value may be missing or ``null``: it is shown as an em dash, or its chart is left out.

Standard library only (no torch, no numpy), so a report can be rendered anywhere.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from gacd_core import catalog

__all__ = ["render_html"]

STUDENT = "#2563eb"
STUDENT_LIGHT = "#93c5fd"
TEACHER = "#ea580c"
TEACHER_LIGHT = "#fdba74"
NEUTRAL = "#64748b"
PALETTE = ("#0f766e", "#7c3aed", "#db2777", "#65a30d", "#0891b2", "#a16207", "#4f46e5", "#be123c")
DASH = "—"

_ATTACK_NAMES = {name: a.label for name, a in catalog.ACCURACIES.items()}
_REFERENCE = catalog.REFERENCE_ATTACK  # the headline robust accuracy and the per-class chart's attack


# --------------------------------------------------------------------------------------------------
# Reading and formatting values. Every formatter returns HTML-safe text.
# --------------------------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _num(value: Any) -> float | None:
    """A finite number as float; ``None`` for null, booleans, strings, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _pct(value: Any) -> str:
    """A fraction as a percentage with one decimal: ``0.5312`` -> ``53.1%``."""
    v = _num(value)
    return DASH if v is None else f"{v * 100:.1f}%"


def _pp(student: Any, teacher: Any) -> str:
    """The gap between two fractions in percentage points, with a real minus sign."""
    s, t = _num(student), _num(teacher)
    if s is None or t is None:
        return DASH
    delta = (s - t) * 100
    return f"{'+' if delta >= 0 else '−'}{abs(delta):.1f} pp"


def _int(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:,.0f}"


def _float(value: Any, digits: int = 3) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:.{digits}f}"


def _ratio(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:.2f}×"


def _si(value: Any) -> str:
    """A large count with an SI prefix and three significant figures: ``2296922`` -> ``2.30 M``."""
    v = _num(value)
    if v is None:
        return DASH
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            x = v / scale
            digits = 2 if abs(x) < 10 else 1 if abs(x) < 100 else 0
            return f"{x:.{digits}f} {prefix}"
    return f"{v:g}"


def _duration(value: Any) -> str:
    v = _num(value)
    if v is None:
        return DASH
    if v < 60:
        return f"{v:.1f} s"
    if v < 3600:
        return f"{int(v // 60)} min {int(v % 60):02d} s"
    return f"{int(v // 3600)} h {int(v % 3600 // 60):02d} min"


def _text(value: Any) -> str:
    """Any report value as escaped text: lists joined by commas, booleans as yes/no, null as a dash."""
    if value is None or value == "":
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) if value else DASH
    if isinstance(value, Mapping):
        return _esc(json.dumps(value, default=str, ensure_ascii=False))
    if isinstance(value, float):
        return _esc(f"{value:g}")
    return _esc(value)


def _is_linf(norm: Any) -> bool:
    return norm is None or str(norm).lower() in {"linf", "l_inf", "inf", "l∞"}


def _eps(value: Any, norm: Any = "Linf") -> str:
    """An L-inf radius in units of 1/255 (``0.03137`` -> ``8/255``); other norms as plain numbers."""
    v = _num(value)
    if v is None:
        return DASH
    if not _is_linf(norm):
        return f"{v:g}"
    n = v * 255
    if abs(n) < 1e-9:
        return "0"
    if abs(n - round(n)) < 0.02:
        return f"{round(n)}/255"
    return f"{n:.1f}/255"


def _norm_name(norm: Any) -> str:
    if _is_linf(norm):
        return "ℓ∞"
    return {"l2": "ℓ2", "l1": "ℓ1"}.get(str(norm).lower(), _esc(norm))


def _attack_name(name: Any) -> str:
    return _ATTACK_NAMES.get(str(name).lower(), _esc(name))


def _split_word(protocol: Mapping[str, Any]) -> str:
    """Which images the protocol ran on: the test split, or the validation images held out of training."""
    return "validation" if protocol.get("split") == "val" else "test"


def _method_name(method: Any) -> str:
    entry = catalog.METHODS.get(str(method).lower())
    return _esc(entry.label) if entry is not None else _esc(method)


def _tick(value: float) -> str:
    return f"{value:.4g}"


def _percent_value(value: float) -> str:
    return f"{value:.1f}%"


# --------------------------------------------------------------------------------------------------
# Charts: small inline-SVG helpers.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Series:
    """One line of a line chart; ``points`` are ``(x, y)`` in chart units."""

    name: str
    points: tuple[tuple[float, float], ...]
    color: str
    dashed: bool = False


@dataclass(frozen=True)
class _Bars:
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


def _series(
    name: str, pairs: Iterable[tuple[Any, Any]], color: str, *, scale: float = 1.0, dashed: bool = False
) -> _Series | None:
    """A series from raw ``(x, y)`` pairs, skipping pairs with a missing value; ``None`` if none is left."""
    points = []
    for x, y in pairs:
        xv, yv = _num(x), _num(y)
        if xv is not None and yv is not None:
            points.append((xv, yv * scale))
    return _Series(name, tuple(points), color, dashed) if points else None


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
        f' role="img" aria-label="{_esc(label)}">'
    )


def _y_axis(frame: _Frame, ticks: Sequence[float], fmt: Callable[[float], str], label: str) -> list[str]:
    """Horizontal grid lines with their labels, and the rotated y-axis title."""
    out = []
    for t in ticks:
        y = frame.y(t)
        out.append(_hline("gridline", frame, y))
        out.append(f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end">{_esc(fmt(t))}</text>')
    mid = (frame.top + frame.base) / 2
    out.append(
        f'<text class="axis-label" x="12" y="{mid:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {mid:.1f})">{_esc(label)}</text>'
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


def _line_chart(
    series: Sequence[_Series],
    *,
    label: str,
    x_label: str,
    y_label: str,
    x_fmt: Callable[[float], str] = _tick,
    y_fmt: Callable[[float], str] = _tick,
    value_fmt: Callable[[float], str] = _tick,
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
        out.append(f'<text x="{x:.1f}" y="{frame.base + 16}" text-anchor="middle">{_esc(x_fmt(t))}</text>')
    out.append(
        f'<text class="axis-label" x="{frame.left + frame.plot_width / 2:.1f}" y="{frame.height - 4}" '
        f'text-anchor="middle">{_esc(x_label)}</text>'
    )
    if marker is not None and x_lo <= marker[0] <= x_hi:
        x = frame.x(marker[0])
        out.append(f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.base}"/>')
        caption = _esc(marker[1])
        out.append(f'<text class="marker-label" x="{x + 4:.1f}" y="{frame.top + 10}">{caption}</text>')
    for s in series:
        out.append(_polyline(s, frame, x_label, x_fmt, value_fmt))
    out.append("</svg>")
    return "".join(out)


def _polyline(
    s: _Series, frame: _Frame, x_label: str, x_fmt: Callable[[float], str], value_fmt: Callable[[float], str]
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
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{s.color}"><title>{_esc(tip)}</title></circle>'
        )
    return f'<g class="series">{"".join(out)}</g>'


def _bar_chart(
    categories: Sequence[str],
    bars: Sequence[_Bars],
    *,
    label: str,
    y_label: str,
    y_max: float = 100.0,
    value_fmt: Callable[[float], str] = _percent_value,
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
    out += _y_axis(frame, _nice_ticks(0, y_max), _tick, y_label)
    for i, (full, short) in enumerate(zip(categories, names)):
        cx = frame.x(i + 0.5)
        y = frame.base + 14
        turn = f' transform="rotate(-45 {cx:.1f} {y:.1f})"' if rotate else ""
        anchor = "end" if rotate else "middle"
        out.append(
            f'<text x="{cx:.1f}" y="{y:.1f}" text-anchor="{anchor}"{turn}>'
            f"<title>{_esc(full)}</title>{_esc(short)}</text>"
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
    b: _Bars,
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
        f"{_esc(value_fmt(value))}</text>"
        if annotate
        else ""
    )
    return (
        f'<rect x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{max(frame.base - top, 0):.1f}" '
        f'fill="{b.color}" rx="1.5"><title>{_esc(tip)}</title></rect>{note}'
    )


def _legend(items: Iterable[tuple[str, str, str]]) -> str:
    """A legend row; each item is ``(name, colour, "line" | "dash" | "box")``."""
    keys = "".join(
        f'<span class="key"><i class="swatch {kind}" style="--c:{color}"></i>{_esc(name)}</span>'
        for name, color, kind in items
    )
    return f'<div class="legend">{keys}</div>'


def _figure(title: str, chart: str, legend: str = "", caption: str = "", *, wide: bool = False) -> str:
    """A chart card; ``title`` and ``caption`` are HTML fragments built from escaped text."""
    if not chart:
        return ""
    cls = "card figure wide" if wide else "card figure"
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure class="{cls}"><h3>{title}</h3>{legend}{chart}{cap}</figure>'


# --------------------------------------------------------------------------------------------------
# Tables.
# --------------------------------------------------------------------------------------------------


def _table(headers: Sequence[str] | None, rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """An HTML table whose first column is a row header. Cells are HTML fragments (already escaped)."""
    head = ""
    if headers:
        head = "<thead><tr>" + "".join(f'<th scope="col">{h}</th>' for h in headers) + "</tr></thead>"
    body = "".join(
        f'<tr><th scope="row">{row[0]}</th>' + "".join(f"<td>{c}</td>" for c in row[1:]) + "</tr>" for row in rows
    )
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def _card(title: str, body: str, *, wide: bool = False) -> str:
    cls = "card wide" if wide else "card"
    return f'<section class="{cls}"><h3>{title}</h3>{body}</section>'


def _code(value: Any) -> str:
    return DASH if value in (None, "") else f"<code>{_esc(value)}</code>"


# --------------------------------------------------------------------------------------------------
# Page sections.
# --------------------------------------------------------------------------------------------------


def _protocol_summary(report: Mapping[str, Any]) -> str:
    """One line saying what produced the numbers: threat model, attacks and image counts."""
    protocol = _dict(report.get("protocol"))
    norm = protocol.get("norm")
    parts = [f"{_norm_name(norm)} ε = {_eps(protocol.get('eps'), norm)}"]
    attacks = [_attack_name(a) for a in _list(protocol.get("attacks"))]
    autoattack = _dict(_dict(protocol.get("attack_params")).get("autoattack"))
    if autoattack:
        version = f" ({_esc(autoattack['version'])})" if autoattack.get("version") else ""
        size = protocol.get("autoattack_size")
        size = f" on {_int(size)} images" if _num(size) is not None else ""
        attacks.append(f"AutoAttack{version}{size}")
    if attacks:
        parts.append("attacks " + ", ".join(attacks))
    if _num(protocol.get("test_size")) is not None:
        parts.append(f"{_int(protocol['test_size'])} {_split_word(protocol)} images")
    if protocol.get("precision"):
        parts.append(_esc(protocol["precision"]))
    if protocol.get("seed") is not None:
        parts.append(f"seed {_text(protocol['seed'])}")
    return " · ".join(parts)


def _provenance(report: Mapping[str, Any]) -> str:
    env = _dict(report.get("environment"))
    device = _text(env.get("device"))
    if env.get("device_name") and env.get("device_name") != env.get("device"):
        device += f" ({_esc(env['device_name'])})"
    return " · ".join(
        [
            f"git {_code(env.get('git_commit'))}",
            f"torch {_text(env.get('torch'))}",
            f"device {device}",
            f"gacd {_text(env.get('gacd_version'))}",
            f"created {_text(report.get('created_at'))}",
        ]
    )


def _header(report: Mapping[str, Any]) -> str:
    student, teacher = _dict(report.get("student")), _dict(report.get("teacher"))
    dataset = _dict(report.get("dataset"))
    kind = str(report.get("kind") or "report")
    title = f'<span class="student">{_text(student.get("arch"))}</span>'
    if teacher:
        arch = _text(teacher.get("arch"))
        title += f' <span class="soft">distilled from</span> <span class="teacher">{arch}</span>'
    if report.get("method"):
        verb = "with" if teacher else "trained with"
        title += f' <span class="soft">{verb}</span> {_method_name(report["method"])}'
    elif kind == "evaluate":
        title += ' <span class="soft">evaluated</span>'
    facts = [_text(dataset.get("name"))]
    if _num(dataset.get("num_classes")) is not None:
        facts.append(f"{_int(dataset['num_classes'])} classes")
    if _num(dataset.get("image_size")) is not None:
        size = _int(dataset["image_size"])
        facts.append(f"{size}×{size} images")
    return (
        '<header class="top">'
        f'<div class="eyebrow"><span class="badge">{_esc(kind)}</span> robust compression report · '
        f"{_text(report.get('created_at'))}</div>"
        f'<h1>{title}</h1><p class="sub">{" · ".join(facts)}</p></header>'
    )


def _stat(label: str, value: str, *, teacher: str = "", note: str = "") -> str:
    """A headline card: a big student figure, the teacher's beside it, a small note. HTML fragments."""
    side = f'<div class="stat-teacher"><i class="dot"></i>{teacher}</div>' if teacher else ""
    foot = f'<div class="stat-note">{note}</div>' if note else ""
    return (
        f'<div class="stat"><div class="stat-label">{label}</div>'
        f'<div class="stat-value">{value}</div>{side}{foot}</div>'
    )


def _accuracy_stat(
    label: str, key: str, metrics: Mapping[str, Any], teacher: Mapping[str, Any] | None, note: str
) -> str:
    side = ""
    if teacher is not None and _num(teacher.get(key)) is not None:
        delta = _pp(metrics.get(key), teacher[key])
        side = f'teacher {_pct(teacher[key])} <span class="delta">{delta}</span>'
    return _stat(label, _pct(metrics.get(key)), teacher=side, note=note)


def _size_stat(report: Mapping[str, Any]) -> str:
    comp, student = _dict(report.get("compression")), _dict(report.get("student"))
    s_params = comp.get("student_params", student.get("params"))
    s_macs = comp.get("student_macs", student.get("macs"))
    if _num(comp.get("params_ratio")) is not None:
        side = f"{_si(s_params)} vs {_si(comp.get('teacher_params'))} params (teacher)"
        note = f"MACs {_ratio(comp['macs_ratio'])} fewer" if _num(comp.get("macs_ratio")) is not None else ""
        return _stat("Fewer parameters", _ratio(comp["params_ratio"]), teacher=side, note=note)
    if _num(s_params) is not None:
        note = f"{_si(s_macs)} MACs per image" if _num(s_macs) is not None else ""
        return _stat("Parameters", _si(s_params), note=note)
    return ""


def _speed_stat(report: Mapping[str, Any]) -> str:
    comp = _dict(report.get("compression"))
    s_ips, t_ips = comp.get("student_images_per_second"), comp.get("teacher_images_per_second")
    notes = [_text(comp["device"])] if comp.get("device") else []
    if _num(comp.get("batch_size")) is not None:
        notes.append(f"batch {_int(comp['batch_size'])}")
    note = " · ".join(notes)
    if _num(comp.get("speedup")) is not None:
        side = f"{_int(s_ips)} vs {_int(t_ips)} img/s (teacher)"
        return _stat("Inference speedup", _ratio(comp["speedup"]), teacher=side, note=note)
    if _num(s_ips) is not None:
        return _stat("Throughput", f"{_int(s_ips)} <small>img/s</small>", note=note)
    return ""


def _headline(report: Mapping[str, Any]) -> str:
    metrics = _dict(report.get("metrics"))
    teacher = _dict(report.get("teacher_metrics")) if report.get("teacher_metrics") else None
    protocol = _dict(report.get("protocol"))
    eps = f"{_norm_name(protocol.get('norm'))} ε = {_eps(protocol.get('eps'), protocol.get('norm'))}"
    test = f"{_int(protocol.get('test_size'))} {_split_word(protocol)} images"
    stats = [
        _accuracy_stat("Clean accuracy", "clean_acc", metrics, teacher, test),
        _accuracy_stat(f"{_REFERENCE.label} accuracy", _REFERENCE.key, metrics, teacher, eps),
    ]
    if any(_num(m.get("autoattack_acc")) is not None for m in (metrics, _dict(teacher))):
        size = protocol.get("autoattack_size")
        note = f"{eps} · {_int(size)} images" if _num(size) is not None else eps
        stats.append(_accuracy_stat("AutoAttack accuracy", "autoattack_acc", metrics, teacher, note))
    stats += [_size_stat(report), _speed_stat(report)]
    return (
        f'<section class="headline" aria-label="Headline numbers">{"".join(s for s in stats if s)}</section>'
        f'<p class="protocol-line">{_protocol_summary(report)}</p>'
    )


def _history(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [_dict(h) for h in _list(_dict(report.get("training")).get("history")) if isinstance(h, Mapping)]


def _epoch_pairs(
    history: Sequence[Mapping[str, Any]], get: Callable[[Mapping[str, Any]], Any]
) -> list[tuple[Any, Any]]:
    return [(h.get("epoch", i + 1), get(h)) for i, h in enumerate(history)]


def _loss_part_names(history: Sequence[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for h in history:
        names.update(dict.fromkeys(str(k) for k in _dict(h.get("loss_parts"))))
    return list(names)


def _part_of(h: Mapping[str, Any], part: str) -> Any:
    return _dict(h.get("loss_parts")).get(part)


def _field_of(h: Mapping[str, Any], key: str) -> Any:
    return h.get(key)


def _training_figures(report: Mapping[str, Any]) -> list[str]:
    history = _history(report)
    if not history:
        note = '<p class="empty">No training (evaluation only): there are no per-epoch curves.</p>'
        return [f'<figure class="card figure wide"><h3>Training curves</h3>{note}</figure>']
    loss = [_series("total loss", _epoch_pairs(history, lambda h: h.get("loss")), "#111827")]
    for i, part in enumerate(_loss_part_names(history)):
        pairs = _epoch_pairs(history, partial(_part_of, part=part))
        loss.append(_series(part, pairs, PALETTE[i % len(PALETTE)], dashed=True))
    accuracy = [
        _series(name, _epoch_pairs(history, partial(_field_of, key=key)), color, scale=100, dashed=dashed)
        for key, name, color, dashed in (
            ("train_acc", "train (on training batches)", NEUTRAL, True),
            ("val_clean_acc", "validation clean", STUDENT_LIGHT, False),
            ("val_pgd_acc", "validation PGD", STUDENT, False),
        )
    ]
    lr = [_series("learning rate", _epoch_pairs(history, lambda h: h.get("lr")), PALETTE[1])]
    return [
        _line_figure("Training loss", loss, y_label="loss"),
        _line_figure(
            "Accuracy during training",
            accuracy,
            y_label="accuracy (%)",
            y_range=(0, 100),
            value_fmt=_percent_value,
        ),
        _line_figure("Learning rate", lr, y_label="lr", height=180),
    ]


def _line_figure(title: str, series: Sequence[_Series | None], *, y_label: str, **options: Any) -> str:
    """A per-epoch line chart in a card, with its legend."""
    present = [s for s in series if s is not None]
    chart = _line_chart(present, label=title, x_label="epoch", y_label=y_label, **options)
    legend = _legend((s.name, s.color, "dash" if s.dashed else "line") for s in present)
    return _figure(_esc(title), chart, legend if len(present) > 1 else "")


def _attack_figure(report: Mapping[str, Any]) -> str:
    metrics, teacher = _dict(report.get("metrics")), _dict(report.get("teacher_metrics"))
    keys = [k for k in catalog.ACCURACY_KEYS if _num(metrics.get(k)) is not None or _num(teacher.get(k)) is not None]
    if not keys:
        return ""
    bars = [_Bars("student", tuple(_scaled(metrics.get(k)) for k in keys), STUDENT)]
    if teacher:
        bars.append(_Bars("teacher", tuple(_scaled(teacher.get(k)) for k in keys), TEACHER, slot=1))
    names = [_ATTACK_NAMES.get(k.removesuffix("_acc"), k) for k in keys]
    chart = _bar_chart(names, bars, label="Accuracy under attack", y_label="accuracy (%)", annotate=True)
    legend = _legend((b.name, b.color, "box") for b in bars)
    return _figure("Accuracy under attack", chart, legend, _protocol_summary(report))


def _scaled(value: Any) -> float | None:
    v = _num(value)
    return None if v is None else v * 100


def _eps_figure(report: Mapping[str, Any]) -> str:
    protocol = _dict(report.get("protocol"))
    norm = protocol.get("norm")
    series = [
        _series(
            name,
            ((p.get("eps"), p.get("acc")) for p in map(_dict, _list(m.get("eps_sweep")))),
            color,
            scale=100,
        )
        for name, m, color in (
            ("student", _dict(report.get("metrics")), STUDENT),
            ("teacher", _dict(report.get("teacher_metrics")), TEACHER),
        )
    ]
    present = [s for s in series if s is not None]
    eps = _num(protocol.get("eps"))
    marker = None if eps is None else (eps, f"ε = {_eps(eps, norm)}")
    unit = "ε (in 1/255)" if _is_linf(norm) else "ε"
    chart = _line_chart(
        present,
        label="Accuracy versus attack radius",
        x_label=unit,
        y_label="accuracy (%)",
        x_fmt=lambda v: _eps(v, norm),
        value_fmt=_percent_value,
        y_range=(0, 100),
        marker=marker,
    )
    legend = _legend((s.name, s.color, "line") for s in present)
    caption = f"Robust accuracy as the {_norm_name(norm)} radius grows; the dotted line marks the evaluation ε."
    return _figure("Accuracy versus ε", chart, legend, caption)


def _per_class_figure(report: Mapping[str, Any]) -> str:
    names = [str(c) for c in _list(_dict(report.get("dataset")).get("class_names"))]
    models = [
        ("student", _dict(_dict(report.get("metrics")).get("per_class")), STUDENT, STUDENT_LIGHT),
        ("teacher", _dict(_dict(report.get("teacher_metrics")).get("per_class")), TEACHER, TEACHER_LIGHT),
    ]
    ref = _REFERENCE.name
    models = [m for m in models if _list(m[1].get(ref)) or _list(m[1].get("clean"))]
    if not models:
        return ""
    n = max(len(_list(pc.get(k))) for _, pc, _, _ in models for k in ("clean", ref))
    categories = [names[i] if i < len(names) else f"class {i}" for i in range(n)]
    bars = []
    for slot, (who, per_class, dark, light) in enumerate(models):
        for key, label, color, narrow in (("clean", "clean", light, False), (ref, _REFERENCE.label, dark, True)):
            values = _list(per_class.get(key))
            if values:
                padded = tuple(_scaled(values[i]) if i < len(values) else None for i in range(n))
                bars.append(_Bars(f"{who} {label}", padded, color, slot=slot, narrow=narrow))
    chart = _bar_chart(categories, bars, label="Per-class accuracy", y_label="accuracy (%)", min_width=1000)
    legend = _legend((b.name, b.color, "box") for b in bars)
    caption = f"Narrow dark bars: {_REFERENCE.label} (robust) accuracy; wide pale bars behind them: clean accuracy."
    return _figure("Per-class accuracy", chart, legend, caption, wide=True)


def _charts(report: Mapping[str, Any]) -> str:
    figures = [
        *_training_figures(report),
        _attack_figure(report),
        _eps_figure(report),
        _per_class_figure(report),
    ]
    return '<h2>Charts</h2><div class="grid">' + "".join(f for f in figures if f) + "</div>"


def _metric_label(key: str) -> str:
    name = key.removesuffix("_acc")
    return _ATTACK_NAMES.get(name, _esc(name)) + " accuracy"


def _metrics_table(report: Mapping[str, Any]) -> str:
    metrics = _dict(report.get("metrics"))
    teacher = _dict(report.get("teacher_metrics")) if report.get("teacher_metrics") else None
    keys = [k for k in catalog.ACCURACY_KEYS if k in metrics or (teacher and k in teacher)]
    keys += [k for k in metrics if k.endswith("_acc") and k not in keys]
    rows = [(_metric_label(k), metrics.get(k), _dict(teacher).get(k)) for k in keys]
    breakdown = _dict(metrics.get("autoattack_breakdown"))
    t_breakdown = _dict(_dict(teacher).get("autoattack_breakdown"))
    for step in dict.fromkeys([*breakdown, *t_breakdown]):
        what = "AutoAttack subset, clean" if step == "clean" else f"AutoAttack after {_esc(step)}"
        label = f'<span class="indent">{what}</span>'
        rows.append((label, breakdown.get(step), t_breakdown.get(step)))
    cells: list[tuple[str, ...]]
    if teacher is None:
        cells = [(label, _pct(s)) for label, s, _ in rows]
        cells.append(("Evaluation time", _duration(metrics.get("seconds"))))
        return _card("Metrics", _table(["", "Student"], cells, cls="num"))
    cells = [(label, _pct(s), _pct(t), _pp(s, t)) for label, s, t in rows]
    seconds = (_duration(metrics.get("seconds")), _duration(teacher.get("seconds")))
    cells.append(("Evaluation time", *seconds, ""))
    return _card("Metrics", _table(["", "Student", "Teacher", "Δ"], cells, cls="num"))


def _attack_params(params: Mapping[str, Any], norm: Any) -> str:
    items = []
    for key, value in params.items():
        shown = _eps(value, norm) if key in {"eps", "step_size"} and _num(value) is not None else _text(value)
        items.append(f"{_esc(key)} = {shown}")
    return "; ".join(items) or DASH


def _protocol_table(report: Mapping[str, Any]) -> str:
    protocol = _dict(report.get("protocol"))
    norm = protocol.get("norm")
    eps = protocol.get("eps")
    rows = [
        ("Threat model", f"{_norm_name(norm)}, ε = {_eps(eps, norm)} ({_text(eps)})"),
        ("Attacks", ", ".join(_attack_name(a) for a in _list(protocol.get("attacks"))) or DASH),
    ]
    for name, params in _dict(protocol.get("attack_params")).items():
        label = f'<span class="indent">{_attack_name(name)}</span>'
        rows.append((label, _attack_params(_dict(params), norm)))
    rows += [
        (f"{_split_word(protocol).capitalize()} images", _int(protocol.get("test_size"))),
        ("AutoAttack images", _int(protocol.get("autoattack_size"))),
        ("Precision", _text(protocol.get("precision"))),
        ("Seed", _text(protocol.get("seed"))),
    ]
    return _card("Protocol", _table(None, rows))


_STRUCTURE_LABELS = {
    "cka_clean": ("Feature CKA (clean)", 3),
    "cka_adv": ("Feature CKA (adversarial)", 3),
    "logit_corr_diff": ("Logit correlation gap (clean)", 4),
    "logit_corr_diff_adv": ("Logit correlation gap (adversarial)", 4),
}


def _structure_table(report: Mapping[str, Any]) -> str:
    structure, agreement = _dict(report.get("structure")), _dict(report.get("agreement"))
    if not structure and not agreement:
        return ""
    rows = [(f"Prediction agreement ({_esc(key)})", _pct(value)) for key, value in agreement.items()]
    for key, value in structure.items():
        label, digits = _STRUCTURE_LABELS.get(key, (_esc(key), 4))
        rows.append((label, _float(value, digits) if _num(value) is not None else _text(value)))
    return _card("Structure (student vs teacher)", _table(None, rows, cls="num"))


def _compression_table(report: Mapping[str, Any]) -> str:
    comp = _dict(report.get("compression"))
    if not comp:
        return ""
    rows = [
        (label, fmt(comp.get(f"teacher_{key}")), fmt(comp.get(f"student_{key}")), _ratio(comp.get(ratio)))
        for label, key, fmt, ratio in (
            ("Parameters", "params", _int, "params_ratio"),
            ("MACs / image", "macs", _si, "macs_ratio"),
            ("Images / s", "images_per_second", _int, "speedup"),
        )
    ]
    table = _table(["", "Teacher", "Student", "Ratio"], rows, cls="num")
    timing = f"Throughput timed on {_text(comp.get('device'))}, batch size {_int(comp.get('batch_size'))}."
    return _card("Compression", f'{table}<p class="note">{timing}</p>')


def _models_table(report: Mapping[str, Any]) -> str:
    student, teacher = _dict(report.get("student")), _dict(report.get("teacher"))
    fields = (
        ("Architecture", "arch", _text),
        ("Parameters", "params", _int),
        ("MACs / image", "macs", _si),
        ("Classes", "num_classes", _int),
        ("File", "file", _code),
        ("SHA-256", "sha256", _code),
    )
    headers = ["", "Student", "Teacher"] if teacher else ["", "Student"]
    rows = []
    for label, key, fmt in fields:
        if key in student or key in teacher:
            rows.append([label, fmt(student.get(key)), *([fmt(teacher.get(key))] if teacher else [])])
    if "normalization" in student or "normalization" in teacher:
        rows.append(
            [
                "Input normalisation",
                _normalization(student.get("normalization")),
                *([_normalization(teacher.get("normalization"))] if teacher else []),
            ]
        )
    return _card("Models", _table(headers, rows, cls="wrap"))


_NORM_SOURCES = {
    "file": "from the weights file",
    "user": "given by the user",
    "default": "default: none given, so none applied",
    "dataset": "the training dataset's statistics",
}


def _normalization(value: Any) -> str:
    """``none (mean 0, std 1), default: none given ...``: which normalisation and where it came from."""
    norm = _dict(value)
    if not norm:
        return DASH
    name = str(norm.get("name", "custom"))
    values = "mean 0, std 1" if name == "none" else f"mean {_text(norm.get('mean'))}; std {_text(norm.get('std'))}"
    source = _NORM_SOURCES.get(str(norm.get("source")), _text(norm.get("source")))
    origin = norm.get("origin")
    origin = f", where it was {_NORM_SOURCES.get(str(origin), _text(origin))}" if origin else ""
    return f'<strong>{_esc(name)}</strong> ({values})<br><span class="soft">{source}{origin}</span>'


def _teacher_check_table(report: Mapping[str, Any]) -> str:
    check = _dict(_dict(report.get("teacher")).get("check"))
    if not check:
        return ""
    if check.get("verdict") == "exempt":
        return _card("Teacher check", f'<p class="note">Exempt: {_text(check.get("exempt_reason"))}.</p>')
    pgd = (
        f"{_pct(check.get('pgd20_acc'))} on {_int(check.get('pgd20_subset'))} images"
        if check.get("pgd20_acc") is not None
        else _text(check.get("pgd20_skipped"))
    )
    verdict = _text(check.get("verdict"))
    if check.get("allowed_weak"):
        verdict += " (allowed by allow_weak)"
    rows = [
        ("Clean accuracy", f"{_pct(check.get('clean_acc'))} on {_int(check.get('clean_subset'))} images"),
        ("PGD-20 accuracy", pgd),
        ("Chance / refused below", f"{_pct(check.get('chance'))} / {_pct(check.get('threshold'))}"),
        ("Verdict", verdict),
        ("Normalisation", _normalization(check.get("normalization"))),
    ]
    for alt in _list(check.get("alternatives")):
        a = _dict(alt)
        rows.append((f"With {_esc(str(a.get('label')))} ({_esc(str(a.get('name')))})", _pct(a.get("clean_acc"))))
    note = f'<p class="note">{_text(check.get("subset"))}.</p>'
    if check.get("message"):
        note += f'<p class="note"><strong>Warning:</strong> {_text(check.get("message"))}</p>'
    return _card("Teacher check (before anything ran)", _table(None, rows, cls="wrap") + note)


def _dataset_table(report: Mapping[str, Any]) -> str:
    dataset = _dict(report.get("dataset"))
    names = _list(dataset.get("class_names"))
    shown = _text(names)
    if len(names) > 20:
        shown = f"<details><summary>{len(names)} names</summary>{shown}</details>"
    rows = [
        ("Name", _text(dataset.get("name"))),
        ("Classes", _int(dataset.get("num_classes"))),
        ("Train / val / test", " / ".join(_int(dataset.get(f"{k}_size")) for k in ("train", "val", "test"))),
        ("Image size", _int(dataset.get("image_size"))),
        ("Class subset", _text(dataset.get("classes"))),
        ("Class names", shown),
    ]
    return _card("Dataset", _table(None, rows, cls="wrap"))


def _training_table(report: Mapping[str, Any]) -> str:
    training = _dict(report.get("training"))
    if not training:
        return _card("Training", '<p class="empty">No training (evaluation only).</p>')
    rows = [
        ("Epochs", _int(training.get("epochs"))),
        ("Wall time", _duration(training.get("seconds"))),
        ("Images / s", _int(training.get("images_per_second"))),
        ("Resumed from epoch", _int(training.get("resumed_from_epoch"))),
    ]
    history = _history(report)
    parts = _loss_part_names(history)
    headers = ["Epoch", "lr", "Loss", *map(_esc, parts), "Train", "Val clean", "Val PGD", "Time", "Img/s"]
    epochs = [
        [
            _text(h.get("epoch", i + 1)),
            _text(h.get("lr")),
            _float(h.get("loss"), 4),
            *(_float(_dict(h.get("loss_parts")).get(p), 4) for p in parts),
            _pct(h.get("train_acc")),
            _pct(h.get("val_clean_acc")),
            _pct(h.get("val_pgd_acc")),
            _duration(h.get("seconds")),
            _int(h.get("images_per_second")),
        ]
        for i, h in enumerate(history)
    ]
    per_epoch = ""
    if epochs:
        per_epoch = (
            f"<details><summary>Per-epoch history ({len(epochs)} epochs)</summary>"
            f'<div class="scroll">{_table(headers, epochs, cls="num")}</div></details>'
        )
    return _card("Training", _table(None, rows, cls="num") + per_epoch)


_ENVIRONMENT_LABELS = {
    "torch": "PyTorch",
    "python": "Python",
    "platform": "Platform",
    "device": "Device",
    "device_name": "Device name",
    "git_commit": "Git commit",
    "gacd_version": "gacd version",
}


def _environment_table(report: Mapping[str, Any]) -> str:
    env = _dict(report.get("environment"))
    rows = [(_ENVIRONMENT_LABELS.get(k, _esc(k)), _code(v) if k == "git_commit" else _text(v)) for k, v in env.items()]
    rows.append(("Report schema", _text(report.get("schema"))))
    return _card("Environment", _table(None, rows, cls="wrap"))


def _export_table(report: Mapping[str, Any]) -> str:
    """The ONNX export and its check against PyTorch (jobs only; evaluation reports have none)."""
    onnx = _dict(_dict(report.get("export")).get("onnx"))
    if not onnx:
        return ""
    diff, agreement = _num(onnx.get("max_abs_diff")), _num(onnx.get("agreement"))
    rows = [
        ("File", _code(onnx.get("file"))),
        ("Opset", _text(onnx.get("opset"))),
        ("Input", _text(onnx.get("input"))),
        ("Normalisation", _text(onnx.get("normalization"))),
        ("Max |logit difference|", DASH if diff is None else f"{diff:.2e}"),
        (
            "Identical predictions",
            (DASH if agreement is None else f"{100 * agreement:.2f}%") + f" of {_int(onnx.get('images'))} test images",
        ),
        ("Checked with", f"ONNX Runtime {_text(onnx.get('onnxruntime'))} ({_text(onnx.get('provider'))})"),
    ]
    return _card("ONNX export", _table(None, rows, cls="wrap"))


def _spec_block(report: Mapping[str, Any]) -> str:
    spec = report.get("spec")
    if spec is None:
        return ""
    text = json.dumps(spec, indent=2, ensure_ascii=False, default=str)
    return _card(
        "Job specification",
        f"<details><summary>Show the spec as JSON</summary><pre>{_esc(text)}</pre></details>",
        wide=True,
    )


def _tables(report: Mapping[str, Any]) -> str:
    cards = [
        _metrics_table(report),
        _protocol_table(report),
        _structure_table(report),
        _compression_table(report),
        _models_table(report),
        _teacher_check_table(report),
        _dataset_table(report),
        _training_table(report),
        _environment_table(report),
        _export_table(report),
        _spec_block(report),
    ]
    return '<h2>Details</h2><div class="grid tables">' + "".join(c for c in cards if c) + "</div>"


def _footer(report: Mapping[str, Any]) -> str:
    return (
        '<footer class="footer">'
        f"<p><strong>Protocol:</strong> {_protocol_summary(report)}.</p>"
        f"<p><strong>Provenance:</strong> {_provenance(report)}.</p></footer>"
    )


def _page_title(report: Mapping[str, Any]) -> str:
    student = _dict(report.get("student")).get("arch") or "model"
    extras = [str(v) for v in (report.get("method"), _dict(report.get("dataset")).get("name")) if v]
    return f"gacd report — {student}" + (f" ({', '.join(extras)})" if extras else "")


_CSS = f"""
:root {{ --student: {STUDENT}; --student-light: {STUDENT_LIGHT}; --teacher: {TEACHER};
  --teacher-light: {TEACHER_LIGHT}; --ink: #111827; --muted: #5b6472; --line: #e5e7eb; --bg: #f4f6f9; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }}
main {{ max-width: 1200px; margin: 0 auto; padding: 32px 24px 24px; }}
h1 {{ font-size: 28px; line-height: 1.25; margin: 6px 0 4px; font-weight: 700; }}
h2 {{ font-size: 13px; text-transform: uppercase; letter-spacing: .08em; color: var(--muted);
  margin: 32px 0 12px; }}
h3 {{ font-size: 15px; margin: 0 0 10px; }}
.eyebrow, .sub {{ color: var(--muted); font-size: 14px; margin: 0; }}
.badge {{ display: inline-block; padding: 1px 8px; border-radius: 999px; background: #e0e7ff; color: #3730a3;
  font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }}
.student {{ color: var(--student); }}
.teacher {{ color: var(--teacher); }}
.soft {{ color: var(--muted); font-weight: 400; }}
.headline {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)); gap: 14px;
  margin-top: 22px; }}
.stat, .card {{ background: #fff; border: 1px solid var(--line); border-radius: 14px;
  box-shadow: 0 1px 2px rgba(16, 24, 40, .05); }}
.stat {{ padding: 16px 18px; border-top: 4px solid var(--student); }}
.stat-label {{ font-size: 13px; color: var(--muted); font-weight: 600; }}
.stat-value {{ font-size: 34px; font-weight: 700; line-height: 1.15; color: var(--student);
  font-variant-numeric: tabular-nums; }}
.stat-value small {{ font-size: 15px; font-weight: 600; }}
.stat-teacher {{ margin-top: 4px; font-size: 14px; color: #9a3412; font-variant-numeric: tabular-nums; }}
.dot {{ display: inline-block; width: 8px; height: 8px; border-radius: 50%; background: var(--teacher);
  margin-right: 6px; }}
.delta {{ color: var(--muted); margin-left: 4px; white-space: nowrap; }}
.stat-note {{ margin-top: 6px; font-size: 12px; color: var(--muted); }}
.protocol-line {{ color: var(--muted); font-size: 13px; margin: 10px 2px 0; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 16px; }}
.card {{ padding: 16px 18px; min-width: 0; margin: 0; }}
.wide {{ grid-column: 1 / -1; }}
.legend {{ display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 13px; color: #374151;
  margin-bottom: 6px; }}
.key {{ display: inline-flex; align-items: center; gap: 6px; }}
.swatch {{ display: inline-block; width: 18px; height: 0; border-top: 3px solid var(--c); }}
.swatch.dash {{ border-top-style: dashed; }}
.swatch.box {{ width: 12px; height: 12px; border: 0; border-radius: 3px; background: var(--c); }}
svg.chart {{ display: block; width: 100%; height: auto; overflow: visible; }}
svg.chart.fixed {{ width: auto; max-width: none; }}
.chart text {{ font-size: 11px; fill: #4b5563; }}
.chart .axis-label {{ font-size: 12px; fill: #374151; }}
.chart .bar-value {{ font-size: 10px; fill: #1f2937; }}
.chart .gridline {{ stroke: #e9ecf1; stroke-width: 1; }}
.chart .axis {{ stroke: #9ca3af; stroke-width: 1; }}
.chart .marker {{ stroke: #6b7280; stroke-width: 1; stroke-dasharray: 2 3; }}
.chart .marker-label {{ font-size: 11px; fill: #374151; }}
.scroll {{ overflow-x: auto; max-width: 100%; }}
figcaption, .empty, .note {{ color: var(--muted); font-size: 13px; margin-top: 8px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 14px; }}
th, td {{ text-align: left; padding: 5px 8px; border-bottom: 1px solid #eef0f3; vertical-align: top; }}
thead th {{ font-size: 12px; color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--line); }}
tbody th {{ font-weight: 500; color: #374151; }}
table.num td {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
table.num thead th:not(:first-child) {{ text-align: right; }}
table.wrap td {{ overflow-wrap: break-word; }}
table.wrap code {{ overflow-wrap: anywhere; }}
table + table {{ margin-top: 10px; }}
.indent {{ padding-left: 14px; color: var(--muted); }}
code, pre {{ font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }}
pre {{ background: #f8fafc; border: 1px solid var(--line); border-radius: 8px; padding: 12px; overflow: auto;
  max-height: 520px; }}
summary {{ cursor: pointer; color: #1d4ed8; margin-top: 8px; }}
.footer {{ max-width: 1200px; margin: 0 auto; padding: 8px 24px 32px; color: var(--muted);
  font-size: 12.5px; }}
.footer p {{ margin: 4px 0; }}
@media print {{
  body {{ background: #fff; font-size: 12px; }}
  main {{ padding: 0; max-width: none; }}
  .stat, .card {{ box-shadow: none; break-inside: avoid; }}
  .scroll {{ overflow: visible; }}
  svg.chart.fixed {{ width: 100%; height: auto; }}
  .grid {{ grid-template-columns: 1fr 1fr; }}
}}
"""


def render_html(report: dict[str, Any]) -> str:
    """Render a report dictionary (the content of ``report.json``) as one self-contained HTML page.

    The page opens with a strip of headline numbers (student clean, PGD-20 and AutoAttack accuracy
    with the teacher's beside them, compression and speedup), then inline-SVG charts (training
    curves, accuracy under each attack, accuracy versus ε, per-class accuracy), then compact tables
    with everything else and a footer stating the protocol and the provenance. It uses no
    JavaScript and loads nothing from the network.

    Args:
        report: The report, following the ``gacd-report/1`` schema. Any value may be missing or
            ``null``; it is then shown as an em dash, or its chart is left out.

    Returns:
        The HTML document as a string. Every string taken from the report is HTML-escaped.
    """
    data = _dict(report)
    body = "".join([_header(data), _headline(data), _charts(data), _tables(data)])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(_page_title(data))}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main>{_footer(data)}</body></html>\n"
    )
