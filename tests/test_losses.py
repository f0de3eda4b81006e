"""Golden values for every loss: fixed tiny inputs, expected numbers computed independently in float64
with numpy (the formulas of GACD.md and the cited papers), compared at float32 precision."""

from __future__ import annotations

import pytest
import torch

from gacd_core.attacks import ce_loss, cw_margin_loss, kl_div
from gacd_core.methods.contrastive import ContrastiveObjective, reliability_weights
from gacd_core.spec import GACDParams

pytestmark = pytest.mark.unit

LOGITS = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, -0.2]])
LABELS = torch.tensor([0, 2])
TEACHER = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])

GOLDEN = {
    "ce": [0.4643687841079449, 1.3859393176684556],
    "cw_kappa50": [-51.0, -49.5],
    "cw_kappa0": [-1.0, 0.0],
    "kl_t1": [0.011747533078, 0.00464957596],
    "kl_t2": [0.004986965346, 0.001140696722],
    # contrastive, tau = 0.5, N = 2, M = 10, Z = 1, weights (1.5, 0.5)
    "nce_pos": 0.0672551963020819,
    "nce_neg": 2.3902500852228146,
    "log_h_pos": [-0.028899742805, -0.182321556794],
    "in_batch_weighted": 0.8553948881071414,
    # reliability weights for teacher logits T_W, labels Y_W
    "soft_b1": [1.23715913911, 0.333176728577, 1.429664132313],
    "soft_b2": [1.24587627041, 0.090359349949, 1.663764379641],
    "soft_cross": [1.038904472757, 0.760534973111, 1.200560554133],
    "hard": [1.5, 0.0, 1.5],
}
T_W = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
Y_W = torch.tensor([0, 0, 2])


def close(a: torch.Tensor, b: list[float] | float) -> bool:
    return torch.allclose(a.double(), torch.as_tensor(b, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_cross_entropy_golden():
    assert close(ce_loss(LOGITS, LABELS), GOLDEN["ce"])


def test_cw_margin_golden():
    assert close(cw_margin_loss(LOGITS, LABELS, kappa=50.0), GOLDEN["cw_kappa50"])
    assert close(cw_margin_loss(LOGITS, LABELS, kappa=0.0), GOLDEN["cw_kappa0"])


def test_kl_golden_sum_over_classes_mean_over_batch():
    assert close(kl_div(TEACHER, LOGITS, 1.0, reduction="none"), GOLDEN["kl_t1"])
    assert close(kl_div(TEACHER, LOGITS, 2.0, reduction="none"), GOLDEN["kl_t2"])
    assert close(kl_div(TEACHER, LOGITS, 1.0), sum(GOLDEN["kl_t1"]) / 2)
    assert float(kl_div(LOGITS, LOGITS)) == pytest.approx(0.0, abs=1e-7)


def _objective(mode: str = "memory") -> ContrastiveObjective:
    params = GACDParams(
        feat_dim=2,
        nce_temperature=0.5,
        n_negatives=2,
        critic_normalization="none",
        negatives=mode,
        other_class_negatives=False,
    )
    obj = ContrastiveObjective(4, 4, torch.arange(10) % 5, params)
    if mode == "memory":
        obj.memory[:4] = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.6, -0.8], [0.0, -1.0]])
    obj.sample_negatives = lambda y, idx: torch.tensor([[0, 1], [2, 3]])  # type: ignore[method-assign]
    return obj


T_EMB = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
S_EMB = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
W = torch.tensor([1.5, 0.5])


def test_contrastive_memory_loss_golden():
    obj = _objective()
    assert obj.n_negatives == 2 and obj.train_size == 10
    loss, parts = obj.loss(T_EMB, S_EMB, torch.tensor([0, 1]), torch.tensor([4, 5]), W)
    assert close(parts["nce_pos"], GOLDEN["nce_pos"])
    assert close(parts["nce_neg"], GOLDEN["nce_neg"])
    assert close(loss, GOLDEN["nce_pos"] + GOLDEN["nce_neg"])
    assert close(obj.log_h_positive(T_EMB, S_EMB), GOLDEN["log_h_pos"])


def test_contrastive_in_batch_loss_golden():
    obj = _objective("in_batch")
    loss, _ = obj.loss(T_EMB, S_EMB, torch.tensor([0, 1]), torch.tensor([4, 5]), W)
    assert close(loss, GOLDEN["in_batch_weighted"])


def test_in_batch_masks_same_class_candidates():
    params = GACDParams(feat_dim=2, negatives="in_batch", other_class_negatives=True, nce_temperature=0.5)
    obj = ContrastiveObjective(4, 4, torch.arange(10) % 5, params)
    # samples 0 and 1 share a class: each is the other's only candidate besides itself, so with the
    # mask the loss is -log(1) = 0 for both
    loss, _ = obj.loss(T_EMB, S_EMB, torch.tensor([3, 3]), torch.tensor([0, 5]))
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    loss_other, _ = obj.loss(T_EMB, S_EMB, torch.tensor([3, 4]), torch.tensor([0, 5]))
    assert float(loss_other) > 0.1


def test_reliability_weights_golden():
    assert torch.equal(reliability_weights(T_W, Y_W, "none"), torch.ones(3))
    assert close(reliability_weights(T_W, Y_W, "soft", beta=1.0), GOLDEN["soft_b1"])
    assert close(reliability_weights(T_W, Y_W, "soft", beta=2.0), GOLDEN["soft_b2"])
    assert close(reliability_weights(T_W, Y_W, "soft", cross_task=True), GOLDEN["soft_cross"])
    assert close(reliability_weights(T_W, Y_W, "hard"), GOLDEN["hard"])
    for mode in ("soft", "hard"):
        assert float(reliability_weights(T_W, Y_W, mode).mean()) == pytest.approx(1.0)


def test_hard_weights_all_wrong_and_cross_task():
    wrong = torch.tensor([1, 0, 0])  # the teacher predicts 0, 1, 2
    assert torch.equal(reliability_weights(T_W, wrong, "hard"), torch.zeros(3))
    with pytest.raises(ValueError, match="teacher's labels"):
        reliability_weights(T_W, Y_W, "hard", cross_task=True)


@pytest.mark.parametrize("bank, n_neg", [(200, 50), (2000, 10)])  # the whole bank scored; negatives gathered
def test_negative_scores_both_paths_match_the_definition_and_survive_a_bank_update(bank, n_neg):
    torch.manual_seed(0)
    params = GACDParams(feat_dim=8, negatives="memory", n_negatives=n_neg, other_class_negatives=True)
    obj = ContrastiveObjective(4, 4, torch.arange(bank) % 10, params)
    y, idx = torch.tensor([0, 3, 7]), torch.tensor([0, 13, 57])
    neg_idx = obj.sample_negatives(y, idx)
    s = torch.nn.functional.normalize(torch.randn(3, 8), dim=1).requires_grad_()
    expected = torch.stack([obj.memory[neg_idx[i]] @ s[i] for i in range(3)])
    (expected_grad,) = torch.autograd.grad(expected.sum(), s)
    got = obj.negative_scores(s, neg_idx)
    obj.update_memory(torch.nn.functional.normalize(torch.randn(3, 8), dim=1), idx)  # as a training step does
    got.sum().backward()
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(s.grad, expected_grad, atol=1e-6)
