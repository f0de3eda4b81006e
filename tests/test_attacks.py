"""Attacks: the threat model is respected, the model is left as it was found, attacks are strong where
they should be, and AutoAttack runs the reference's standard configuration."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gacd_core.attacks import (
    CW,
    FGSM,
    PGD,
    AutoAttack,
    GuidedContrastiveAttack,
    KLAttack,
    kl_div,
    protocol_attack,
)
from gacd_core.attacks.autoattack import build, standard_config
from gacd_core.methods.contrastive import ContrastiveObjective
from gacd_core.models import create_model
from gacd_core.spec import GACDParams

pytestmark = pytest.mark.unit
EPS = 8 / 255


def _snapshot(model: torch.nn.Module) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


@pytest.fixture(scope="module")
def mixed_model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_model("tiny_resnet")
    m.train()
    m.layer2.eval()  # a model whose submodules are in mixed modes
    m.linear.bias.requires_grad_(False)  # and one frozen parameter
    return m


def _all_attacks(eps: float, steps: int, step_size: float, random_start: bool):
    return {
        "pgd": PGD(eps, steps, step_size, random_start),
        "fgsm": FGSM(eps),
        "cw": CW(eps, steps, step_size, kappa=50.0, random_start=random_start),
    }


@settings(max_examples=12, deadline=None)
@given(
    eps=st.floats(0.0, 16 / 255),
    steps=st.integers(1, 4),
    step_size=st.floats(0.5 / 255, 8 / 255),
    random_start=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_attacks_respect_ball_box_and_leave_model_untouched(mixed_model, eps, steps, step_size, random_start, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, 32, 32, generator=gen)
    x[0] = 0.0  # pixels on the box's edges
    x[1] = 1.0
    y = torch.randint(0, 10, (4,), generator=gen)
    before = _snapshot(mixed_model)
    for name, attack in _all_attacks(eps, steps, step_size, random_start).items():
        x_adv = attack(mixed_model, x, y)
        assert float((x_adv - x).abs().max()) <= eps + 1e-6, name
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0, name
        assert not x_adv.requires_grad
        assert _snapshot(mixed_model) == before, name
        assert all(p.grad is None for p in mixed_model.parameters()), name


def test_kl_and_guided_attacks_respect_ball_and_restore(mixed_model):
    torch.manual_seed(1)
    x = torch.rand(6, 3, 32, 32)
    before = _snapshot(mixed_model)
    teacher_logits = torch.randn(6, 10)
    x_kl = KLAttack(EPS, 3, 2 / 255)(mixed_model, x, teacher_logits)
    head = ContrastiveObjective(
        32,
        32,
        torch.arange(50) % 10,
        GACDParams(feat_dim=8, negatives="memory", n_negatives=16, critic_normalization="none"),
    )
    head.train()
    anchor = head.teacher_embed(torch.randn(6, 32))

    def embed(m, xa):
        return head.student_embed(m.forward_head(m.forward_features(xa), pre_logits=True))

    x_g = GuidedContrastiveAttack(EPS, 3, 2 / 255)(mixed_model, x, anchor, embed, head.log_h_positive, head=head)
    for x_adv in (x_kl, x_g):
        assert float((x_adv - x).abs().max()) <= EPS + 1e-6
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert _snapshot(mixed_model) == before
    assert head.training and all(p.requires_grad and p.grad is None for p in head.parameters())
    assert all(p.grad is None for p in mixed_model.parameters())


def test_guided_attack_pushes_student_off_the_teacher_anchor():
    torch.manual_seed(2)
    student = create_model("tiny_resnet").eval()
    head = ContrastiveObjective(
        32,
        32,
        torch.arange(50) % 10,
        GACDParams(feat_dim=8, negatives="memory", n_negatives=16, critic_normalization="none"),
    )
    x = torch.rand(16, 3, 32, 32)
    with torch.no_grad():
        anchor = head.teacher_embed(torch.randn(16, 32))

    def embed(m, xa):
        return head.student_embed(m.forward_head(m.forward_features(xa), pre_logits=True))

    x_adv = GuidedContrastiveAttack(EPS, 10, 2 / 255)(student, x, anchor, embed, head.log_h_positive, head=head)
    with torch.no_grad():
        clean = head.log_h_positive(anchor, embed(student, x))
        adv = head.log_h_positive(anchor, embed(student, x_adv))
    assert float(adv.mean()) < float(clean.mean()) - 0.05
    assert float((adv < clean).float().mean()) >= 0.9


@pytest.mark.slow
def test_kl_attack_increases_divergence_from_teacher(trained_model):
    student, x, _ = trained_model
    torch.manual_seed(3)
    with torch.no_grad():
        t_logits = student(x) + 0.1 * torch.randn(len(x), 2)  # a teacher that mostly agrees
    x_adv = KLAttack(EPS, 10, 2 / 255)(student, x, t_logits)
    with torch.no_grad():
        assert float(kl_div(t_logits, student(x_adv))) > 5 * float(kl_div(t_logits, student(x)))


# ---- strength on a trained model ------------------------------------------------------------------
def _synthetic(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes that differ by a faint brightness shift (about 5/255): learnable to ~100% but
    fragile to a worst-case perturbation of 8/255, robust to random noise of the same size."""
    y = torch.randint(0, 2, (n,), generator=gen)
    shift = (y.float() * 2 - 1) * (5 / 255)
    x = (0.5 + shift[:, None, None, None] + 0.08 * torch.randn(n, 3, 32, 32, generator=gen)).clamp(0, 1)
    return x, y


@pytest.fixture(scope="module")
def trained_model() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model("tiny_resnet", num_classes=2, mean=(0.5, 0.5, 0.5), std=(0.1, 0.1, 0.1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(60):
        x, y = _synthetic(64, gen)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    x, y = _synthetic(200, gen)
    return model, x, y


def _acc(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum()) / len(y)  # exact: 10 of 200 is 0.05, not 0.0500000007


@pytest.mark.slow
def test_pgd_hurts_a_trained_model_far_more_than_noise_of_the_same_size(trained_model):
    model, x, y = trained_model
    torch.manual_seed(1)  # the noise and the attacks' random starts do not depend on which tests ran before
    clean = _acc(model, x, y)
    noise = _acc(model, (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1), y)
    signs = _acc(model, (x + EPS * torch.randint(0, 2, x.shape).float().mul(2).sub(1)).clamp(0, 1), y)
    pgd = _acc(model, protocol_attack("pgd20", EPS)(model, x, y), y)
    fgsm = _acc(model, protocol_attack("fgsm", EPS)(model, x, y), y)
    cw = _acc(model, protocol_attack("cw", EPS)(model, x, y), y)
    assert clean >= 0.95
    assert noise >= clean - 0.05 and signs >= clean - 0.05  # random corners of the ball barely matter
    # the worst case in the same ball breaks it: PGD-20 and CW leave about 2-7% of 200 images (seeds 0-4)
    assert pgd <= 0.10 and cw <= 0.10 and clean - pgd >= 0.85
    assert pgd <= fgsm


def test_protocol_attack_parameters():
    assert protocol_attack("pgd20", EPS).params() == {
        "steps": 20,
        "step_size": pytest.approx(2 / 255),
        "random_start": True,
    }
    assert protocol_attack("cw", EPS).params() == {
        "steps": 30,
        "step_size": pytest.approx(2 / 255),
        "random_start": True,
        "kappa": 50.0,
    }
    assert protocol_attack("fgsm", EPS).params() == {"steps": 1, "step_size": pytest.approx(EPS), "random_start": False}
    with pytest.raises(KeyError):
        protocol_attack("pgd7", EPS)


# ---- AutoAttack -----------------------------------------------------------------------------------
# The standard version as the reference describes it (Croce & Hein 2020; fra31/auto-attack,
# autoattack.py _set_version('standard')), written out here rather than imported, so that a package
# update that changed any of it fails this test.
REFERENCE_STANDARD = {
    "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"],
    "apgd_ce": {"n_iter": 100, "n_restarts": 1, "loss": "ce"},
    "apgd_t": {"n_iter": 100, "n_restarts": 1, "n_target_classes": 9},
    "fab_t": {"n_iter": 100, "n_restarts": 1, "n_target_classes": 9},
    "square": {"n_queries": 5000, "n_restarts": 1, "p_init": 0.8},
}


def test_autoattack_is_the_reference_standard_configuration():
    model = create_model("tiny_resnet")
    aa = build(model, EPS, 10, seed=0, device=torch.device("cpu"))
    assert standard_config(aa) == REFERENCE_STANDARD
    assert aa.epsilon == pytest.approx(EPS) and aa.norm == "Linf"
    few = standard_config(build(model, EPS, 5, seed=0, device=torch.device("cpu")))
    assert few["apgd_t"]["n_target_classes"] == 4 and few["fab_t"]["n_target_classes"] == 4


@pytest.mark.slow
def test_autoattack_runs_and_is_at_least_as_strong_as_pgd(trained_model):
    model, x, y = trained_model
    x, y = x[:24], y[:24]
    pgd = _acc(model, protocol_attack("pgd20", EPS)(model, x, y), y)
    model.train()
    result = AutoAttack(EPS, num_classes=2, seed=0, batch_size=24).run(model, x, y)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    assert result.robust_acc <= pgd + 1e-9
    assert float((result.x_adv - x).abs().max()) <= EPS + 1e-6
    assert result.config["attacks"] == REFERENCE_STANDARD["attacks"]
    assert result.robust_acc == pytest.approx(_acc(model, result.x_adv, y))
