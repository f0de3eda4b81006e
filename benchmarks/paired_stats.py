"""The statistics of the comparison (benchmarks/compare.py), plain Python: McNemar's test on per-image
correctness of two models on the same images, the sign test across seeds, Student-t confidence intervals
of a mean over seeds, and the standard error of a difference of means.

- McNemar (1947): of the images where exactly one model is right, b where only A is and c where only B
  is. Under "equally accurate" each discordant image is A's with probability 1/2. With b + c <=
  :data:`EXACT_BELOW` the two-sided p-value is the exact binomial one, ``min(1, 2 P(X <= min(b, c)))`` for
  X ~ Bin(b + c, 1/2); above, the chi-square form with Edwards' continuity correction, ``(|b - c| - 1)^2 /
  (b + c)`` on 1 degree of freedom.
- Sign test: per seed the sign of A - B; ties dropped; two-sided exact binomial on the positives. With
  3 seeds its smallest p-value is 0.25 and with 5 it is 0.0625: across seeds it can only say "consistent
  in sign", never "significant at 0.05", below 6 seeds.
- 95% interval of a mean over n seeds: mean +- t_{0.975, n-1} * sd / sqrt(n).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

EXACT_BELOW = 25  # b + c up to this: the exact binomial form

# t_{0.975, df}, df = 1..30 (two-sided 95%); above 30 the normal 1.96 is within 2%
T975 = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
]  # fmt: skip


def binomial_two_sided(k: int, n: int) -> float:
    """Two-sided exact p-value of k successes of n at probability 1/2: min(1, 2 P(X <= min(k, n - k)))."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class McNemar:
    """McNemar's test of A against B on the same images."""

    n: int  # images
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    statistic: float | None  # chi-square (continuity-corrected); None in the exact form
    p: float
    exact: bool

    @property
    def text(self) -> str:
        form = "exact binomial" if self.exact else f"chi2 = {self.statistic:.2f}"
        return f"b = {self.b}, c = {self.c} of {self.n}; {form}, p = {self.p:.3g}"


def mcnemar(b: int, c: int, n: int | None = None) -> McNemar:
    """McNemar's test from the discordant counts (``n``, the images, only for the record)."""
    d = b + c
    if d <= EXACT_BELOW:
        return McNemar(n or d, b, c, None, binomial_two_sided(b, d), True)
    chi2 = (abs(b - c) - 1) ** 2 / d
    return McNemar(n or d, b, c, chi2, math.erfc(math.sqrt(chi2 / 2)), False)


def mcnemar_bits(a: Sequence[bool], b: Sequence[bool]) -> McNemar:
    """McNemar's test of two models' per-image correctness on the same images, in the same order."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} images: McNemar pairs the same images")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    return mcnemar(only_a, only_b, len(a))


@dataclass(frozen=True)
class SignTest:
    positive: int
    negative: int
    ties: int
    p: float

    @property
    def text(self) -> str:
        return (
            f"{self.positive} of {self.positive + self.negative} seeds in favour ({self.ties} ties), p = {self.p:.3g}"
        )


def sign_test(differences: Sequence[float]) -> SignTest:
    """Two-sided sign test of per-seed differences A - B (ties dropped)."""
    pos = sum(1 for d in differences if d > 0)
    neg = sum(1 for d in differences if d < 0)
    return SignTest(pos, neg, len(differences) - pos - neg, binomial_two_sided(pos, pos + neg))


def t975(df: int) -> float:
    if df < 1:
        raise ValueError("a confidence interval needs at least 2 values")
    return T975[df - 1] if df <= len(T975) else 1.96


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% Student-t interval of the mean (low and high NaN for one value)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan, math.nan
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def se_difference(a: Sequence[float], b: Sequence[float]) -> float:
    """Standard error of mean(a) - mean(b) over independent seeds: sqrt(sd_a^2 / n_a + sd_b^2 / n_b)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
