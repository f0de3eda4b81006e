"""Formatting report values for the HTML page. Every formatter returns HTML-safe text, and takes any
value: a ``null`` or non-numeric one is shown as an em dash (:data:`DASH`).

The display names of attacks and methods are those the catalog declares (:mod:`gacd_core.catalog`).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from typing import Any

from gacd_core import catalog

DASH = "—"
ATTACK_LABELS = {name: a.label for name, a in catalog.ACCURACIES.items()}
ACCURACY_LABELS = {a.key: a.label for a in catalog.ACCURACIES.values()}


def esc(value: Any) -> str:
    """Any value as text safe in HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def num(value: Any) -> float | None:
    """A finite number as float; ``None`` for null, booleans, strings, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def pct(value: Any) -> str:
    """A fraction as a percentage with one decimal: ``0.5312`` -> ``53.1%``."""
    v = num(value)
    return DASH if v is None else f"{v * 100:.1f}%"


def pp(student: Any, teacher: Any) -> str:
    """The gap between two fractions in percentage points, with a real minus sign."""
    s, t = num(student), num(teacher)
    if s is None or t is None:
        return DASH
    delta = (s - t) * 100
    return f"{'+' if delta >= 0 else '−'}{abs(delta):.1f} pp"


def integer(value: Any) -> str:
    """A whole number with thousands separators: ``50000`` -> ``50,000``."""
    v = num(value)
    return DASH if v is None else f"{v:,.0f}"


def fixed(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals."""
    v = num(value)
    return DASH if v is None else f"{v:.{digits}f}"


def ratio(value: Any) -> str:
    """A ratio with two decimals and a times sign: ``4.86×``."""
    v = num(value)
    return DASH if v is None else f"{v:.2f}×"


def si(value: Any) -> str:
    """A large count with an SI prefix and three significant figures: ``2296922`` -> ``2.30 M``."""
    v = num(value)
    if v is None:
        return DASH
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            x = v / scale
            digits = 2 if abs(x) < 10 else 1 if abs(x) < 100 else 0
            return f"{x:.{digits}f} {prefix}"
    return f"{v:g}"


def duration(value: Any) -> str:
    """Seconds in the largest fitting units: ``42.0 s``, ``3 min 05 s``, ``2 h 07 min``."""
    v = num(value)
    if v is None:
        return DASH
    if v < 60:
        return f"{v:.1f} s"
    if v < 3600:
        return f"{int(v // 60)} min {int(v % 60):02d} s"
    return f"{int(v // 3600)} h {int(v % 3600 // 60):02d} min"


def text(value: Any) -> str:
    """Any report value as escaped text: lists joined by commas, booleans as yes/no, null as a dash."""
    if value is None or value == "":
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value) if value else DASH
    if isinstance(value, Mapping):
        return esc(json.dumps(value, default=str, ensure_ascii=False))
    if isinstance(value, float):
        return esc(f"{value:g}")
    return esc(value)


def is_linf(norm: Any) -> bool:
    """Whether ``norm`` names the L-inf norm (a missing norm is the protocol's L-inf)."""
    return norm is None or str(norm).lower() in {"linf", "l_inf", "inf", "l∞"}


def eps(value: Any, norm: Any = "Linf") -> str:
    """An L-inf radius in units of 1/255 (``0.03137`` -> ``8/255``); other norms as plain numbers."""
    v = num(value)
    if v is None:
        return DASH
    if not is_linf(norm):
        return f"{v:g}"
    n = v * 255
    if abs(n) < 1e-9:
        return "0"
    if abs(n - round(n)) < 0.02:
        return f"{round(n)}/255"
    return f"{n:.1f}/255"


def norm_name(norm: Any) -> str:
    """The norm as a symbol: ``ℓ∞``, ``ℓ2``, ``ℓ1``."""
    if is_linf(norm):
        return "ℓ∞"
    return {"l2": "ℓ2", "l1": "ℓ1"}.get(str(norm).lower(), esc(norm))


def attack_name(name: Any) -> str:
    """An attack's display name, as the catalog declares it (``pgd20`` -> ``PGD-20``)."""
    return esc(ATTACK_LABELS.get(str(name).lower(), name))


def split_word(split: Any) -> str:
    """Which images the protocol ran on (its ``split``): the test split, or the validation images held
    out of training."""
    return "validation" if split == "val" else "test"


def accuracy_label(key: str) -> str:
    """The display name (plain text) of an accuracy the catalog declares, by its report key
    (``pgd20_acc`` -> ``PGD-20``)."""
    return ACCURACY_LABELS[key]


def method_name(method: Any) -> str:
    """A method's display name, as its declaration gives it (``natural`` -> ``natural training``)."""
    entry = catalog.METHODS.get(str(method).lower())
    return esc(entry.label if entry is not None else method)


def tick(value: float) -> str:
    """A chart tick value, four significant figures."""
    return f"{value:.4g}"


def percent(value: float) -> str:
    """A value already in percent, one decimal: ``53.12`` -> ``53.1%``."""
    return f"{value:.1f}%"
