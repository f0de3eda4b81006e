"""Each method: one real training step on tiny models; the frozen teacher stays frozen; label-set
rules; the memory bank's sampling and update; the critic's normalisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gacd_core.errors import SpecError
from gacd_core.methods import METHODS, ContrastiveObjective, MethodContext
from gacd_core.models import create_model
from gacd_core.spec import GACDParams, TrainAttackSpec, method_names, parse_spec

pytestmark = pytest.mark.unit
TEACHER_METHODS = method_names(needs_teacher=True)


def build(
    method: str, teacher_classes: int = 10, student_classes: int = 10, params: dict | None = None, n_train: int = 200
):
    torch.manual_seed(0)
    doc = {"method": method, "hyperparameters": {"method_params": params or {}}}
    if method in TEACHER_METHODS:
        doc["teacher"] = {"weights": "unused"}
    spec = parse_spec(doc)
    labels = torch.arange(n_train) % student_classes
    teacher = create_model("tiny_wrn", num_classes=teacher_classes) if method in TEACHER_METHODS else None
    student = create_model("tiny_resnet", num_classes=student_classes)
    ctx = MethodContext(student_classes, labels, TrainAttackSpec(steps=2))
    return METHODS.get(method)(student, teacher, spec.params, ctx), labels


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_one_training_step(name):
    method, labels = build(name)
    method.train()
    x = torch.rand(16, 3, 32, 32)
    idx = torch.arange(16) * 3
    out = method.training_step(x, labels[idx], idx)
    assert out.loss.ndim == 0 and math.isfinite(float(out.loss.detach()))
    assert out.logits.shape == (16, 10)
    assert all(v.ndim == 0 and not v.requires_grad for v in out.parts.values())
    out.loss.backward()
    grads = [p.grad for p in method.student.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    if name in ("crd", "gacd"):
        assert all(p.grad is not None for p in method.extras.parameters())
    if method.teacher is not None:
        assert not method.teacher.training
        assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())


def test_teacher_stays_in_eval_mode():
    method, _ = build("gacd")
    method.train()
    assert method.student.training and not method.teacher.training
    assert all(not m.training for m in method.teacher.modules())


@pytest.mark.parametrize("name", ["kd", "ard", "rslad"])
def test_soft_label_methods_need_one_label_set(name):
    with pytest.raises(SpecError) as err:
        build(name, teacher_classes=5, student_classes=10)
    assert err.value.field == "teacher" and "5 classes" in str(err.value)


def test_gacd_across_tasks():
    with pytest.raises(SpecError) as err:
        build("gacd", teacher_classes=5, student_classes=10)
    assert err.value.field == "hyperparameters.method_params.lambda_kd"
    method, labels = build("gacd", teacher_classes=5, student_classes=10, params={"lambda_kd": 0})
    assert method.cross_task
    method.train()
    out = method.training_step(torch.rand(8, 3, 32, 32), labels[:8], torch.arange(8))
    assert "kd_adv" not in out.parts and math.isfinite(float(out.loss.detach()))
    with pytest.raises(SpecError) as err:
        build("gacd", teacher_classes=5, student_classes=10, params={"lambda_kd": 0, "reweight": "hard"})
    assert err.value.field == "hyperparameters.method_params.reweight"


def test_gacd_ce_attack_ablation_and_in_batch_mode_run():
    for params in ({"attack": "ce"}, {"negatives": "in_batch"}):
        method, labels = build("gacd", params=params)
        method.train()
        out = method.training_step(torch.rand(8, 3, 32, 32), labels[:8], torch.arange(8))
        assert math.isfinite(float(out.loss.detach()))


def test_gacd_mixed_attack_is_guided_at_zero_and_follows_ce_when_ce_dominates():
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(5))  # not the global stream

    def adversarial(g: float, attack: str = "guided") -> torch.Tensor:
        method, labels = build("gacd", params={"attack": attack, "attack_ce_weight": g})  # same weights each time
        method.train()
        y = labels[:8]
        t_emb = method.contrast.teacher_embed(method.teacher_outputs(x)[0])
        method.contrast.maybe_estimate_z(t_emb, y, torch.arange(8))  # draws negatives once: before the seed
        torch.manual_seed(1)  # the same random start for every attack
        return method.adversarial_examples(x, y, torch.arange(8), t_emb)

    guided = adversarial(0.0)
    ce = adversarial(0.0, attack="ce")
    mixed_small = adversarial(1e-6)
    mixed_large = adversarial(100.0)
    assert torch.equal(mixed_small, guided)  # a negligible CE term changes no gradient sign
    # with CE weighted 100 most sign steps are CE's: mostly the CE attack's examples, not the guided ones
    same_as_ce = {name: float((adv == ce).float().mean()) for name, adv in (("mixed", mixed_large), ("guided", guided))}
    assert same_as_ce["mixed"] > 0.8 and same_as_ce["guided"] < 0.5, same_as_ce
    with pytest.raises(ValueError, match="attack_ce_weight"):
        GACDParams(attack="ce", attack_ce_weight=1.0)


# ---- memory bank ----------------------------------------------------------------------------------
def _objective(labels: torch.Tensor, **kw) -> ContrastiveObjective:
    return ContrastiveObjective(8, 8, labels, GACDParams(feat_dim=4, negatives="memory", **kw))


def test_other_class_negatives_never_share_the_anchor_class_and_cover_the_pool():
    torch.manual_seed(0)
    labels = torch.tensor([0] * 30 + [1] * 50 + [2] * 20)
    obj = _objective(labels, n_negatives=50)
    y = torch.tensor([0, 1, 2, 1])
    neg = torch.cat([obj.sample_negatives(y, torch.tensor([0, 30, 80, 31])) for _ in range(80)], dim=1)
    assert neg.shape == (4, 4000)
    for i in range(4):
        assert not bool((labels[neg[i]] == y[i]).any())
    # anchor of class 1: the pool is the 50 samples of classes 0 and 2, each drawn about 80 times
    counts = torch.bincount(neg[1], minlength=100)
    pool = labels != 1
    assert int((counts[pool] == 0).sum()) == 0 and int(counts[~pool].sum()) == 0
    assert float(counts[pool].float().std() / counts[pool].float().mean()) < 0.25


def test_negatives_cap_and_self_exclusion():
    labels = torch.tensor([0] * 30 + [1] * 50 + [2] * 20)
    assert _objective(labels, n_negatives=16384).n_negatives == 50  # smallest other-class pool: 100 - 50
    obj = _objective(labels, n_negatives=16384, other_class_negatives=False)
    assert obj.n_negatives == 99
    idx = torch.tensor([0, 57, 99])
    neg = obj.sample_negatives(labels[idx], idx)
    assert all(not bool((neg[i] == idx[i]).any()) for i in range(3))
    assert int(neg.min()) >= 0 and int(neg.max()) <= 99


def test_memory_update_is_momentum_then_renormalise():
    torch.manual_seed(0)
    labels = torch.arange(20) % 4
    obj = _objective(labels, memory_momentum=0.5)
    old = obj.memory.clone()
    emb = F.normalize(torch.randn(3, 4), dim=1)
    idx = torch.tensor([2, 7, 11])
    obj.update_memory(emb, idx)
    expect = F.normalize(0.5 * old[idx] + 0.5 * emb, dim=1)
    assert torch.allclose(obj.memory[idx], expect, atol=1e-6)
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(obj.memory[untouched], old[untouched])
    assert torch.allclose(obj.memory.norm(dim=1), torch.ones(20), atol=1e-5)


def test_memory_bank_and_partition_constant_are_in_the_state_dict():
    labels = torch.arange(40) % 4
    obj = _objective(labels, n_negatives=16)
    assert math.isnan(float(obj.log_z))
    emb = F.normalize(torch.randn(4, 4), dim=1)
    obj.loss(emb, emb, labels[:4], torch.arange(4))
    assert math.isfinite(float(obj.log_z))
    state = obj.state_dict()
    assert {"memory", "log_z", "labels"} <= set(state)
    other = _objective(labels, n_negatives=16)
    other.load_state_dict(state)
    assert float(other.log_z) == float(obj.log_z) and torch.equal(other.memory, obj.memory)
    assert other._offset() == obj._offset()


@pytest.mark.slow
def test_literal_critic_scales_with_n_and_crd_normalisation_does_not():
    """Why critic_normalization defaults to "crd" (docs/method.md): with Z = 1, each of the N negative
    terms is about log(1 + N/M) at initialisation, so the loss grows linearly in N."""
    torch.manual_seed(0)
    labels = torch.arange(50_000) % 10
    s = F.normalize(torch.randn(32, 128), dim=1)
    t = F.normalize(torch.randn(32, 128), dim=1)
    y, idx = labels[:32], torch.arange(32)
    neg = {}
    for norm in ("none", "crd"):
        for n in (1024, 16384):
            obj = ContrastiveObjective(
                8, 8, labels, GACDParams(negatives="memory", n_negatives=n, critic_normalization=norm)
            )
            _, parts = obj.loss(t, s, y, idx)
            neg[norm, n] = float(parts["nce_neg"])
    assert neg["none", 16384] > 10_000 and neg["none", 16384] / neg["none", 1024] > 5
    assert 0.5 < neg["crd", 16384] < 2.0 and 0.5 < neg["crd", 1024] < 2.0


# ---- the defects of the last review -------------------------------------------------------------
def test_lambda_nce_zero_still_trains_the_heads_but_not_the_student_through_them():
    # Only the contrastive term left (lambda_kd = lambda_ce = 0), at lambda_nce = 0: the heads learn
    # from it (so the guided attack does not run through random projections), the student does not.
    method, labels = build("gacd", params={"lambda_nce": 0, "lambda_kd": 0, "lambda_ce": 0})
    method.train()
    out = method.training_step(torch.rand(8, 3, 32, 32), labels[:8], torch.arange(8))
    out.loss.backward()
    assert float(out.loss.detach()) > 0
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in method.student.parameters())
    head_grads = [p.grad for p in method.extras.parameters()]
    assert all(g is not None for g in head_grads) and all(float(g.abs().sum()) > 0 for g in head_grads)
    # with lambda_nce > 0 the same term reaches the student
    method, labels = build("gacd", params={"lambda_nce": 0.1, "lambda_kd": 0, "lambda_ce": 0})
    method.train()
    method.training_step(torch.rand(8, 3, 32, 32), labels[:8], torch.arange(8)).loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in method.student.parameters())


def test_declared_cross_task_with_equal_class_counts_is_cross_task():
    method, _ = build("gacd", params={"cross_task": True, "lambda_kd": 0})
    assert method.cross_task  # 10 and 10 classes, but the job says the label sets differ
    method, _ = build("crd", params={"cross_task": True})
    assert method.cross_task  # crd declares it too: features only, no class-by-class term
    with pytest.raises(SpecError, match="lambda_kd"):
        build("crd", params={"cross_task": True, "lambda_kd": 1.0})
    method, _ = build("gacd")
    assert not method.cross_task
    method, _ = build("gacd", teacher_classes=5, params={"cross_task": False})
    assert not method.cross_task  # an explicit answer wins over the class counts


def test_in_batch_guided_attack_masks_the_same_candidates_as_the_loss():
    method, _ = build("gacd", params={"negatives": "in_batch", "other_class_negatives": True})
    obj = method.contrast
    torch.manual_seed(3)
    t_emb = F.normalize(torch.randn(6, 128), dim=1)
    s_emb = F.normalize(torch.randn(6, 128), dim=1)
    y = torch.tensor([0, 0, 1, 1, 2, 3])
    loss, _ = obj.loss(t_emb, s_emb, y, torch.arange(6))
    attacked = -obj.log_h_positive(t_emb, s_emb, y)  # what the guided attack maximises, per sample
    assert float(attacked.mean()) == pytest.approx(float(loss), rel=1e-6)
    assert float((-obj.log_h_positive(t_emb, s_emb)).mean()) != pytest.approx(float(loss), rel=1e-3)
    # and the attack inside a training step is given the labels
    seen = []
    original = obj.log_h_positive

    def spy(a, s, labels=None):
        seen.append(labels)
        return original(a, s, labels)

    obj.log_h_positive = spy
    method.train()
    batch_y = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5])
    method.training_step(torch.rand(8, 3, 32, 32), batch_y, torch.arange(8))
    assert seen and all(s is not None and torch.equal(s, batch_y) for s in seen)


@pytest.mark.slow
def test_declared_cross_task_gets_no_teacher_accuracy_or_label_metrics(tmp_path):
    # Two tasks with ten classes each: the teacher's logits must not be scored against the student's labels.
    from _fakes import make_cifar10

    from gacd_core.jobs import run_job
    from gacd_core.models import save_weights

    make_cifar10(tmp_path / "data", n_train=40, n_test=20)
    torch.manual_seed(0)
    teacher_file = save_weights(create_model("tiny_wrn", num_classes=10), tmp_path / "teacher.safetensors")
    doc = {
        "method": "gacd",
        "teacher": {"weights": str(teacher_file)},
        "student": {"arch": "tiny_resnet"},
        "dataset": {"name": "cifar10", "root": str(tmp_path / "data")},
        "hyperparameters": {
            "epochs": 1,
            "batch_size": 20,
            "attack": {"steps": 1},
            "method_params": {"cross_task": True, "lambda_kd": 0, "n_negatives": 8},
        },
        "evaluation": {"attacks": ["fgsm"], "eps_sweep": [0.0], "throughput": False},
        "device": "cpu",
    }
    report = run_job(parse_spec(doc), tmp_path / "out").to_dict()
    assert report["teacher_metrics"] is None
    assert report["agreement"] is None
    assert report["structure"]["logit_corr_diff"] is None and report["structure"]["cka_clean"] is not None
