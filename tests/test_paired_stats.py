"""benchmarks/paired_stats.py on hand-computed cases (McNemar exact and chi-square, the sign test, the
Student-t interval, the SE of a gap), gacd_core/per_image.py's bits, and one McNemar statistic recomputed
from committed per-image files of two real tiny runs (tests/data/per_image, made by its generate.py)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import paired_stats as ps  # noqa: E402

from gacd_core import per_image  # noqa: E402

pytestmark = pytest.mark.unit
FIXTURES = Path(__file__).resolve().parent / "data" / "per_image"


def test_mcnemar_exact_binomial_for_few_discordant_images():
    t = ps.mcnemar(10, 2, n=500)
    # 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert t.exact and t.statistic is None and t.p == pytest.approx(158 / 4096, rel=1e-12)
    assert ps.mcnemar(2, 10).p == t.p  # two-sided: symmetric
    assert ps.mcnemar(5, 5).p == 1.0 and ps.mcnemar(0, 0).p == 1.0
    assert ps.mcnemar(6, 0).p == pytest.approx(2 / 64)  # all six discordant images one way


def test_mcnemar_chi_square_with_continuity_correction_above_25():
    t = ps.mcnemar(30, 10)
    assert not t.exact and t.statistic == pytest.approx((20 - 1) ** 2 / 40)  # 9.025
    assert t.p == pytest.approx(0.0026636, rel=1e-3)  # P(chi2_1 > 9.025)
    edge = ps.mcnemar(20, 5)  # b + c = 25: still exact
    assert edge.exact and edge.p == pytest.approx(2 * sum(math.comb(25, k) for k in range(6)) / 2**25)


def test_mcnemar_from_bits_counts_the_discordant_pairs():
    a = [True, True, False, True, False, True]
    b = [True, False, False, False, True, True]
    t = ps.mcnemar_bits(a, b)
    assert (t.b, t.c, t.n) == (2, 1, 6) and t.p == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same images"):
        ps.mcnemar_bits(a, b[:-1])


def test_sign_test_across_seeds():
    assert ps.sign_test([0.01, 0.02, 0.005]).p == pytest.approx(0.25)  # 3 of 3: the smallest p 3 seeds allow
    assert ps.sign_test([0.01] * 5).p == pytest.approx(0.0625)
    assert ps.sign_test([0.01] * 6).p == pytest.approx(0.03125)
    t = ps.sign_test([0.01, -0.02, 0.0])
    assert (t.positive, t.negative, t.ties, t.p) == (1, 1, 1, 1.0)


def test_confidence_interval_and_standard_error_of_a_gap():
    m, lo, hi = ps.mean_ci([0.30, 0.32, 0.34])
    half = 4.303 * 0.02 / math.sqrt(3)
    assert (m, lo, hi) == pytest.approx((0.32, 0.32 - half, 0.32 + half))
    assert math.isnan(ps.mean_ci([0.3])[1])
    assert ps.t975(4) == 2.776 and ps.t975(100) == 1.96
    se = ps.se_difference([0.30, 0.32, 0.34], [0.20, 0.20, 0.23])
    assert se == pytest.approx(math.sqrt(0.0004 / 3 + 0.0003 / 3))


@pytest.mark.parametrize("n", [1, 7, 8, 9, 10_000])
def test_per_image_bits_round_trip_and_stay_small(n):
    bits = np.random.default_rng(n).random(n) < 0.4
    text = per_image.pack(bits)
    assert (per_image.unpack(text, n) == bits).all()
    assert len(text) == 4 * math.ceil(math.ceil(n / 8) / 3)  # base64 of n/8 bytes: 1,668 characters at 10,000


def test_per_image_document_keeps_autoattack_on_its_positions():
    labels = np.arange(10) % 3
    correct = {"clean": labels == 0, "pgd20": labels == 1}
    doc = per_image.document("test", labels, correct, [True, False, True], [1, 4, 7])
    back = per_image.PerImage(json.loads(json.dumps(doc)))
    assert back.names == ["clean", "pgd20", "autoattack"]
    assert (back.bits("pgd20") == (labels == 1)).all()
    assert back.bits("autoattack").tolist() == [True, False, True]
    assert back.autoattack_positions().tolist() == [1, 4, 7]
    with pytest.raises(ValueError, match="3 bits for 10 images"):
        per_image.document("test", labels, {"clean": [True, False, True]})


def test_mcnemar_recomputed_from_committed_per_image_bits_of_two_real_runs():
    """tests/data/per_image/{natural,at}.json come from two real tiny jobs (generate.py there; committed, not
    regenerated at test time): the same 200 test images in the same order; here McNemar's counts on the
    per-image PGD-20 correctness are recomputed from their bits."""
    nat, at = (per_image.PerImage.load(FIXTURES / f"{m}.json") for m in ("natural", "at"))
    assert nat.labels_sha256 == at.labels_sha256 and nat.n == at.n == 200
    assert nat.names == at.names == ["clean", "fgsm", "pgd20"]
    a, b = nat.bits("pgd20"), at.bits("pgd20")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())  # counted here with numpy, independently
    test = ps.mcnemar_bits(a.tolist(), b.tolist())
    assert (test.b, test.c, test.n) == (only_a, only_b, 200)
    assert (test.b, test.c) == EXPECTED_PGD20  # the counts when the files were committed
    assert test.p == pytest.approx(EXPECTED_PGD20_P, rel=1e-3)
    # the bits agree with the accuracies the runs reported
    assert a.mean() == pytest.approx(EXPECTED_PGD20_ACC[0]) and b.mean() == pytest.approx(EXPECTED_PGD20_ACC[1])


EXPECTED_PGD20 = (0, 37)  # 37 discordant images: the chi-square form
EXPECTED_PGD20_P = 3.2516e-9  # (37 - 1)^2 / 37 = 35.03 on 1 degree of freedom
EXPECTED_PGD20_ACC = (0.22, 0.405)  # natural, at
