"""Golden values of the ``trades`` and ``iad`` losses: tiny logits written out here, the expected numbers
computed independently in plain Python (math.exp / math.log, no torch), and the methods' steps (the
TRADES attack's target, IAD's warm-up and its buffer)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gacd_core.method_params import IADParams
from gacd_core.methods import METHODS, MethodContext
from gacd_core.methods.iad import iad_loss
from gacd_core.methods.trades import trades_loss
from gacd_core.models import create_model
from gacd_core.spec import TrainAttackSpec, parse_spec

pytestmark = pytest.mark.unit

# two samples, three classes
S_CLEAN = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]]
S_ADV = [[0.5, 0.7, 0.1], [1.2, -0.4, 0.9]]
T_CLEAN = [[3.0, 0.0, -2.0], [-1.0, 2.5, 0.0]]
T_ADV = [[1.0, 1.5, -0.5], [0.2, 0.1, 2.0]]
Y = [0, 1]


def softmax(z: list[float], tau: float = 1.0) -> list[float]:
    e = [math.exp(v / tau) for v in z]
    return [v / sum(e) for v in e]


def kl(p_logits: list[float], q_logits: list[float], tau: float = 1.0) -> float:
    p, q = softmax(p_logits, tau), softmax(q_logits, tau)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def ce(z: list[float], y: int) -> float:
    return -math.log(softmax(z)[y])


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("beta", [6.0, 1.0, 0.0])
def test_trades_loss_golden(beta):
    expected_ce = sum(ce(z, y) for z, y in zip(S_CLEAN, Y, strict=True)) / 2
    expected_kl = sum(kl(a, b) for a, b in zip(S_CLEAN, S_ADV, strict=True)) / 2  # KL(clean || adv), batchmean
    loss, parts = trades_loss(t(S_CLEAN), t(S_ADV), torch.tensor(Y), beta)
    assert float(parts["ce"]) == pytest.approx(expected_ce, rel=1e-5)
    assert float(parts["kl_adv"]) == pytest.approx(expected_kl, rel=1e-5)
    assert float(loss) == pytest.approx(expected_ce + beta * expected_kl, rel=1e-5)
    # the numbers themselves, so that a change of both sides together still fails
    assert expected_ce == pytest.approx(0.432143, abs=1e-5) and expected_kl == pytest.approx(0.508137, abs=1e-5)


def test_trades_loss_is_the_official_line():
    """``loss_natural + beta * (1/B) * KLDivLoss(size_average=False)(log_softmax(adv), softmax(nat))``, and the
    gradient reaches both the clean and the adversarial logits (the clean one is not detached)."""
    nat, adv = t(S_CLEAN).requires_grad_(True), t(S_ADV).requires_grad_(True)
    official = F.cross_entropy(nat, torch.tensor(Y)) + 6.0 * (1 / 2) * F.kl_div(
        F.log_softmax(adv, 1), F.softmax(nat, 1), reduction="sum"
    )
    ours, _ = trades_loss(nat, adv, torch.tensor(Y), 6.0)
    assert float(ours.detach()) == pytest.approx(float(official.detach()), rel=1e-6)
    g_ours = torch.autograd.grad(ours, [nat, adv])
    g_off = torch.autograd.grad(official, [nat, adv])
    for a, b in zip(g_ours, g_off, strict=True):
        assert torch.allclose(a, b, atol=1e-6) and float(a.abs().sum()) > 0


def _iad_expected(weighting: str, beta: float, tau: float, alpha: float, introspect: bool = True) -> float:
    total = 0.0
    for tc, ta, sc, sa, y in zip(T_CLEAN, T_ADV, S_CLEAN, S_ADV, Y, strict=True):
        kd = tau**2 * kl(tc, sa, tau)
        if not introspect:
            total += kd
            continue
        w = softmax(ta)[y] ** beta
        w_t = w if weighting == "confidence" else 1.0
        total += w_t * kd + (1 - w) * kl(sc, sa)
    out = alpha * total / 2
    if alpha < 1:
        out += (1 - alpha) * sum(ce(z, y) for z, y in zip(S_CLEAN, Y, strict=True)) / 2
    return out


@pytest.mark.parametrize(
    ("weighting", "beta", "tau", "alpha"),
    [("confidence", 0.1, 1.0, 1.0), ("one", 0.1, 1.0, 1.0), ("confidence", 1.0, 4.0, 0.5)],
)
def test_iad_loss_golden(weighting, beta, tau, alpha):
    p = IADParams(beta=beta, temperature=tau, alpha=alpha, weight_teacher_term=weighting)
    loss, parts = iad_loss(t(T_CLEAN), t(T_ADV), t(S_CLEAN), t(S_ADV), torch.tensor(Y), p)
    assert float(loss) == pytest.approx(_iad_expected(weighting, beta, tau, alpha), rel=1e-5)
    w = [softmax(ta)[y] ** beta for ta, y in zip(T_ADV, Y, strict=True)]
    assert float(parts["trust"]) == pytest.approx(sum(w) / 2, rel=1e-5)
    assert ("ce" in parts) == (alpha < 1)


def test_iad_golden_numbers_and_warmup():
    p = IADParams()  # the authors' beta 0.1, tau 1, alpha 1; the paper's weighting
    loss, _ = iad_loss(t(T_CLEAN), t(T_ADV), t(S_CLEAN), t(S_ADV), torch.tensor(Y), p)
    assert float(loss) == pytest.approx(1.150749, abs=1e-5)
    # the authors' script: the teacher term unweighted
    loss_one, _ = iad_loss(
        t(T_CLEAN), t(T_ADV), t(S_CLEAN), t(S_ADV), torch.tensor(Y), p.model_copy(update={"weight_teacher_term": "one"})
    )
    assert float(loss_one) == pytest.approx(_iad_expected("one", 0.1, 1.0, 1.0), rel=1e-5)
    assert float(loss_one) > float(loss)  # weights < 1 on the larger teacher term
    warm, parts = iad_loss(t(T_CLEAN), t(T_ADV), t(S_CLEAN), t(S_ADV), torch.tensor(Y), p, introspect=False)
    assert float(warm) == pytest.approx(_iad_expected("confidence", 0.1, 1.0, 1.0, introspect=False), rel=1e-5)
    assert "introspection" not in parts


def _method(name: str, epochs: int, n_train: int = 32, params: dict | None = None):
    torch.manual_seed(0)
    doc: dict = {"method": name, "hyperparameters": {"method_params": params or {}}}
    if name == "iad":
        doc["teacher"] = {"weights": "unused"}
    spec = parse_spec(doc)
    teacher = create_model("tiny_wrn") if name == "iad" else None
    labels = torch.arange(n_train) % 10
    ctx = MethodContext(10, labels, TrainAttackSpec(steps=2), epochs)
    return METHODS.get(name)(create_model("tiny_resnet"), teacher, spec.params, ctx), labels


def test_iad_warms_up_for_its_fraction_of_the_epochs_then_introspects():
    method, labels = _method("iad", epochs=10, params={"warmup_fraction": 0.2})  # 2 epochs of 32 images
    method.train()
    x = torch.rand(16, 3, 32, 32)
    seen = []
    for _ in range(6):
        out = method.training_step(x, labels[:16], torch.arange(16))
        seen.append("introspection" in out.parts)
    assert seen == [False, False, False, False, True, True]  # 64 images of warm-up, in steps of 16
    assert int(method.extras.state_dict()["seen.count"]) == 96  # in the checkpoint, so a resume continues it
    unknown, _ = _method("iad", epochs=0)
    assert unknown.introspecting  # no epoch count: introspection from the start


def test_trades_attack_stays_in_the_ball_and_restores_train_mode():
    method, labels = _method("trades", epochs=1)
    method.train()
    x = torch.rand(8, 3, 32, 32)
    target = method.student(x).detach()
    x_adv = method.kl_adversary(method.student, x, target)
    assert float((x_adv - x).abs().max()) <= 8 / 255 + 1e-6 and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    out = method.training_step(x, labels[:8], torch.arange(8))
    assert method.student.training
    assert set(out.parts) == {"ce", "kl_adv"} and float(out.parts["kl_adv"]) >= 0
