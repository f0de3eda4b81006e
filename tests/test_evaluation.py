"""The protocol's bookkeeping and the structural metrics."""

from __future__ import annotations

import pytest
import torch

from gacd_core.attacks import AutoAttack
from gacd_core.data import ImageSet
from gacd_core.errors import EvaluationStopped, TrainingStopped
from gacd_core.evaluation import (
    EvalProgress,
    class_correlation,
    compression,
    evaluate_model,
    evaluation_set,
    linear_cka,
    logit_corr_diff,
    protocol_description,
)
from gacd_core.models import create_model
from gacd_core.spec import EvaluationSpec

pytestmark = pytest.mark.unit


def test_linear_cka_properties_and_golden_value():
    torch.manual_seed(0)
    x = torch.randn(200, 16)
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0)  # orthogonal, isotropic scale, shift
    assert linear_cka(x, torch.randn(200, 16)) < 0.2
    # golden: X = [[1,0],[0,1],[0,0]], Y = [[1],[2],[3]], computed by hand with centred columns
    gx = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    gy = torch.tensor([[1.0], [2.0], [3.0]])
    # Xc = [[2/3,-1/3],[-1/3,2/3],[-1/3,-1/3]], Yc = [[-1],[0],[1]]: Yc'Xc = [-1, 0], so the numerator
    # is 1; Xc'Xc = [[6/9,-3/9],[-3/9,6/9]] has Frobenius norm sqrt(10/9); Yc'Yc = [[2]]
    assert linear_cka(gx, gy) == pytest.approx(1 / (2 * (10 / 9) ** 0.5))


def test_logit_correlation_difference():
    torch.manual_seed(1)
    z = torch.randn(500, 5)
    assert logit_corr_diff(z, z) == pytest.approx(0.0, abs=1e-12)
    assert logit_corr_diff(z, 2 * z + 1) == pytest.approx(0.0, abs=1e-6)  # correlation ignores scale
    c = class_correlation(z)
    assert torch.allclose(torch.diagonal(c), torch.ones(5, dtype=torch.float64))
    mixed = z.clone()
    mixed[:, 1] = z[:, 0] + 0.1 * torch.randn(500)  # classes 0 and 1 become strongly correlated
    assert logit_corr_diff(z, mixed) > 0.05


def _set(n: int = 40) -> ImageSet:
    gen = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen), torch.arange(n) % 10)


def test_evaluation_subset_is_stratified_and_protocol_is_described():
    ev = EvaluationSpec(subset=20, autoattack=True, autoattack_subset=10)
    data = evaluation_set(_set(), ev)
    assert len(data) == 20 and torch.bincount(data.labels).tolist() == [2] * 10
    desc = protocol_description(ev, len(data), 10)
    assert desc["eps_255"] == pytest.approx(8.0) and desc["norm"] == "Linf"
    assert desc["attacks"] == ["fgsm", "pgd20", "cw", "autoattack"]
    assert desc["attack_params"]["pgd20"]["steps"] == 20 and desc["attack_params"]["cw"]["kappa"] == 50.0
    assert desc["autoattack_size"] == 10 and desc["precision"] == "fp32"
    assert desc["attack_params"]["autoattack"]["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]


@pytest.mark.slow
def test_evaluate_model_metrics_are_consistent_and_reproducible():
    torch.manual_seed(0)
    model = create_model("tiny_resnet")
    model.train()
    ev = EvaluationSpec(eps_sweep=[0.0, 2 / 255, 8 / 255], batch_size=16)
    data = _set()
    a = evaluate_model(model, data, ev, torch.device("cpu"), keep_adv=True)
    b = evaluate_model(model, data, ev, torch.device("cpu"))
    assert model.training  # restored
    m = a.metrics
    assert m == {**b.metrics, "seconds": m["seconds"]}  # seeded random starts: the same numbers again
    for key in ("clean_acc", "fgsm_acc", "pgd20_acc", "cw_acc"):
        assert 0.0 <= m[key] <= 1.0
    assert m["pgd20_acc"] <= m["clean_acc"] and m["autoattack_acc"] is None
    assert [p["eps"] for p in m["eps_sweep"]] == pytest.approx([0.0, 2 / 255, 8 / 255])
    assert m["eps_sweep"][0]["acc"] == m["clean_acc"] and m["eps_sweep"][-1]["acc"] == m["pgd20_acc"]
    assert len(m["per_class"]["clean"]) == 10
    per_class_mean = sum(m["per_class"]["clean"]) / 10  # 4 images per class
    assert per_class_mean == pytest.approx(m["clean_acc"])
    assert a.adv_inputs is not None and a.adv_inputs.shape == (40, 3, 32, 32)
    assert float((a.adv_inputs - data.images.float() / 255).abs().max()) <= 8 / 255 + 1e-6
    assert a.clean_feats.shape == (40, model.num_features) and a.clean_logits.shape == (40, 10)


def test_compression_counts_and_speed():
    student, teacher = create_model("tiny_resnet"), create_model("resnet10_w8")
    out = compression(student, teacher, torch.device("cpu"), 32, 8)
    assert (
        out["params_ratio"] == pytest.approx(out["teacher_params"] / out["student_params"]) and out["params_ratio"] > 3
    )
    assert out["macs_ratio"] > 3
    assert out["speedup"] == pytest.approx(out["student_images_per_second"] / out["teacher_images_per_second"])
    assert out["speedup"] > 0


def test_evaluation_runs_in_true_fp32_and_restores_the_tf32_flags(monkeypatch):
    # PyTorch lets cuDNN use TF32 by default on recent GPUs; evaluation labelled fp32 must turn it off.
    from gacd_core import evaluation as E

    seen = []
    real = E._predict

    def spy(model, x):
        seen.append(E.tf32_enabled())
        return real(model, x)

    monkeypatch.setattr(E, "_predict", spy)
    switches = E._tf32_switches()
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in switches]
    try:
        for obj, name, _ in switches:  # TF32 on, as PyTorch allows it for convolutions by default
            setattr(obj, name, "tf32" if name == "fp32_precision" else True)
        assert E.tf32_enabled()
        torch.manual_seed(0)
        data = ImageSet(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 10)
        ev = EvaluationSpec(attacks=["fgsm"], eps_sweep=[0.0])
        evaluate_model(create_model("tiny_resnet"), data, ev, torch.device("cpu"))
        assert seen and not any(seen)
        assert E.tf32_enabled()  # restored
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
    assert protocol_description(EvaluationSpec(), 8, 10)["tf32"] is False


@pytest.mark.slow
def test_evaluation_on_the_validation_split_never_touches_the_test_split(tmp_path):
    # Choosing hyperparameters on validation data: the protocol runs on the held-out training images.
    from _fakes import make_cifar10

    from gacd_core.errors import SpecError
    from gacd_core.jobs import run_job
    from gacd_core.report_html import render_html
    from gacd_core.spec import parse_spec

    make_cifar10(tmp_path / "data", n_train=60, n_test=20)
    doc = {
        "method": "natural",
        "student": {"arch": "tiny_resnet"},
        "dataset": {"name": "cifar10", "root": str(tmp_path / "data"), "val_size": 30},
        "hyperparameters": {"epochs": 1, "batch_size": 10},
        "evaluation": {"split": "val", "attacks": ["fgsm"], "eps_sweep": [0.0], "throughput": False},
        "device": "cpu",
    }
    report = run_job(parse_spec(doc), tmp_path / "out")
    assert report.protocol is not None and report.dataset is not None
    assert report.protocol.split == "val" and report.dataset.evaluated_split == "val"
    assert report.protocol.test_size == 30  # the 30 held-out images, not the 20 test images
    assert "30 validation images" in render_html(report)
    del doc["dataset"]["val_size"]
    with pytest.raises(SpecError) as err:
        parse_spec(doc)
    assert err.value.field == "evaluation.split"


def test_evaluation_reports_each_attack_with_a_fraction_and_an_eta_and_stops_when_asked():
    torch.manual_seed(0)
    model = create_model("tiny_resnet")
    ev = EvaluationSpec(attacks=["fgsm", "pgd20"], eps_sweep=[0.0, 2 / 255, 8 / 255], batch_size=5)
    seen: list[EvalProgress] = []
    evaluate_model(model, _set(10), ev, torch.device("cpu"), on_progress=seen.append)
    # per batch: clean, the protocol attacks, then the sweep's extra radius (8/255 is pgd20's own)
    per_batch = ["clean", "fgsm", "pgd20", "pgd20@2/255"]
    assert [p.attack for p in seen] == per_batch * 2 + ["pgd20@2/255"]  # and the end
    fractions = [p.fraction for p in seen]
    assert fractions[0] == 0.0 and fractions == sorted(fractions) and fractions[-1] == 1.0
    # in forward-backward passes per image: clean 1, fgsm 2, pgd20 21, the sweep's pgd20 21 (45 in all)
    assert seen[1].fraction == pytest.approx(5 / (10 * 45), abs=1e-5)  # fgsm of batch 1: the clean pass done
    assert seen[3].fraction == pytest.approx((5 + 5 * 2 + 5 * 21) / (10 * 45), abs=1e-5)
    assert seen[4].fraction == pytest.approx(0.5, abs=1e-5)  # batch 2 starts half way
    assert all(p.eta_seconds is not None and p.eta_seconds >= 0 for p in seen[1:])
    assert seen[-1].eta_seconds == 0.0

    # A stop request in the middle of an attack: raised before the attack's next forward pass.
    seen2: list[EvalProgress] = []
    model.train()
    with pytest.raises(EvaluationStopped) as err:
        evaluate_model(
            model, _set(10), ev, torch.device("cpu"), on_progress=seen2.append,
            should_stop=lambda: any(p.attack == "pgd20" for p in seen2),
        )  # fmt: skip
    assert isinstance(err.value, TrainingStopped) and "pgd20" in str(err.value)
    assert [p.attack for p in seen2] == ["clean", "fgsm", "pgd20"]  # the first batch, nothing after
    assert model.training  # the model's mode is restored


def test_autoattack_reports_its_batches_and_stops_between_them():
    torch.manual_seed(0)
    model = create_model("tiny_resnet")
    images = _set(12)
    x = images.images.float() / 255
    with torch.no_grad():
        y = model.eval()(x).argmax(1)  # every point starts correct, so the attacks have work to do
    model.train()
    reports: list[tuple[str, float]] = []

    def stop_after_a_batch(attack: str, fraction: float) -> None:
        reports.append((attack, fraction))
        if fraction > 0:
            raise EvaluationStopped(attack)

    with pytest.raises(EvaluationStopped):
        AutoAttack(8 / 255, 10, seed=0, batch_size=6).run(model, x, y, on_progress=stop_after_a_batch)
    # the start of APGD-CE, then its first batch of two: half of the first of four attacks
    assert reports == [("apgd-ce", 0.0), ("apgd-ce", 0.125)]
    assert model.training  # the mode is restored after the stop
