"""The fast path: bf16 detection, the measured choice of setting, the probe leaving the job untouched,
the in-place PGD loop computing the same numbers, the batch augmentation drawing from the same
distribution as torchvision's per-sample transforms, and the choice surviving a resume."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from gacd_core import fastpath
from gacd_core.attacks.core import PGDConfig, pgd, project, random_perturb, step
from gacd_core.attacks.losses import ce_loss
from gacd_core.data import ImageSet
from gacd_core.data.loader import random_crop_flip
from gacd_core.fastpath import Setting
from gacd_core.methods import METHODS, MethodContext
from gacd_core.models import create_model
from gacd_core.models.base import COMPILED_BODIES
from gacd_core.spec import parse_spec
from gacd_core.trainer import CHECKPOINT_NAME, Trainer

pytestmark = pytest.mark.unit

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


# --------------------------------------------------------------------------------------------------
# Detection and candidates
# --------------------------------------------------------------------------------------------------
def test_bf16_is_detected_from_cpu_flags_not_assumed() -> None:
    assert not fastpath.cpu_has_bf16(AVX2_ONLY, capability="AVX2")
    assert not fastpath.cpu_has_bf16(AVX2_ONLY.replace("avx2", "avx2 avx512f avx512bw"), capability="AVX512")
    assert fastpath.cpu_has_bf16(SAPPHIRE, capability="AVX2")
    assert fastpath.cpu_has_bf16("", capability="AMX")  # no /proc/cpuinfo: torch's capability decides
    assert fastpath.cpu_flags("no flags line here") == set()


def test_candidates_depend_on_the_device_and_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: False)
    assert fastpath.candidates(cpu, "auto") == [Setting("fp32", False), Setting("fp32", True)]
    assert fastpath.candidates(cpu, "auto", channels_last=False) == [Setting("fp32", False)]
    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: True)
    assert [s.name for s in fastpath.candidates(cpu, "auto")] == [
        "fp32",
        "fp32+channels_last",
        "bf16",
        "bf16+channels_last",
    ]
    assert fastpath.candidates(cpu, "bf16", channels_last=True) == [Setting("bf16", True)]


# --------------------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------------------
def _method(method: str = "gacd", n: int = 64, arch: str = "resnet10_w8"):
    torch.manual_seed(0)
    doc = {"method": method, "hyperparameters": {"attack": {"steps": 1}, "method_params": {}}}
    teacher = None
    if method not in ("natural", "at"):
        doc["teacher"] = {"weights": "unused"}
        # GACD with its memory bank: the most state a probe could disturb (bank rows, partition constant)
        doc["hyperparameters"]["method_params"] = {"n_negatives": 16, "negatives": "memory"} if method == "gacd" else {}
        teacher = create_model("tiny_resnet")
    spec = parse_spec(doc)
    labels = torch.arange(n) % 10
    m = METHODS.get(method)(
        create_model(arch), teacher, spec.params, MethodContext(10, labels, spec.hyperparameters.attack)
    )
    return m, spec


def _batch(n: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.arange(n) % 10, torch.arange(n)


class FakeClock:
    """Each setting's steps 'take' a fixed time: the probe must pick the cheapest."""

    def __init__(self, cost: dict[str, float]) -> None:
        self.cost, self.now, self.current = cost, 0.0, ""

    def __call__(self) -> float:
        return self.now

    def step(self, method: nn.Module, setting: Setting, batch) -> None:
        x, y, idx = batch
        assert x.is_contiguous(memory_format=torch.channels_last) == setting.channels_last
        with fastpath.autocast(torch.device("cpu"), setting):
            out = method.training_step(x, y, idx)
        out.loss.backward()
        self.now += self.cost[setting.name]


@pytest.mark.slow
def test_probe_picks_the_fastest_and_changes_nothing_the_job_computes() -> None:
    method, _ = _method("gacd")
    before = copy.deepcopy(method.state_dict())
    rng_before = torch.get_rng_state()
    clock = FakeClock({"fp32": 3.0, "fp32+channels_last": 2.0})
    settings = [Setting("fp32", False), Setting("fp32", True)]
    result = fastpath.probe(
        method, clock.step, [_batch(), _batch(seed=2)], settings, torch.device("cpu"), steps=1, rounds=3, clock=clock
    )
    assert result.chosen == Setting("fp32", True)
    assert result.seconds_per_step == {"fp32": 3.0, "fp32+channels_last": 2.0}  # the median of 3 rounds
    assert "fp32+channels_last 2000 ms/step" in fastpath.describe(result)
    # The job's own weights, statistics, memory bank and partition constant, and its random stream.
    after = method.state_dict()
    same = {k: torch.allclose(before[k], after[k], rtol=0, atol=0, equal_nan=True) for k in before}
    assert [k for k, ok in same.items() if not ok] == []
    assert torch.isnan(method.contrast.log_z)  # not estimated by the probe's copies
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(p.grad is None for p in method.parameters())
    assert method.student.conv1.weight.is_contiguous()  # the memory format of the copies only


def test_channels_last_is_not_tried_on_the_cpu_for_narrow_models_over_32_px() -> None:
    """resnet10_w8's 8-to-16 shortcut corrupts torch 2.14.1's CPU heap channels-last at 64 px (a job on a
    64-px folder died so): over 32 px, 16 channels at least; wide models keep channels-last."""
    cpu = torch.device("cpu")
    assert fastpath.channels_last_safe(create_model("resnet10_w8"), cpu, 32)
    assert not fastpath.channels_last_safe(create_model("resnet10_w8"), cpu, 64)
    assert fastpath.channels_last_safe(create_model("resnet10_w16"), cpu, 224)
    assert fastpath.candidates(cpu, "fp32", None, create_model("resnet10_w8"), 64) == [Setting("fp32", False)]
    assert Setting("fp32", True) in fastpath.candidates(cpu, "fp32", None, create_model("resnet10_w8"), 32)


def test_channels_last_is_not_tried_on_the_cpu_for_models_narrower_than_8_channels() -> None:
    cpu = torch.device("cpu")
    assert not fastpath.channels_last_safe(create_model("tiny_resnet"), cpu)  # 4 channels: torch corrupts its heap
    assert fastpath.channels_last_safe(create_model("resnet10_w8"), cpu)
    assert fastpath.channels_last_safe(create_model("tiny_resnet"), torch.device("cuda"))
    assert fastpath.candidates(cpu, "fp32", None, create_model("tiny_resnet")) == [Setting("fp32", False)]
    method, spec = _method("at", arch="tiny_resnet")
    t = Trainer(method, _data(), spec.hyperparameters, device=cpu, precision="fp32", channels_last=True)
    assert t.setting == Setting("fp32", False)


def test_a_forced_setting_is_not_probed() -> None:
    method, _ = _method("at")
    result = fastpath.probe(method, lambda *a: pytest.fail("probed"), [_batch()], [Setting("fp32", False)], "cpu")
    assert result.chosen == Setting("fp32", False) and result.reason == "forced"


# --------------------------------------------------------------------------------------------------
# The in-place PGD loop
# --------------------------------------------------------------------------------------------------
def _pgd_by_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: PGDConfig) -> torch.Tensor:
    """The loop as it was written before: a new tensor per step from ``project(step(...))``."""
    model.eval()
    x_adv = random_perturb(x, cfg.eps)
    for _ in range(cfg.steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(ce_loss(model(x_adv), y).sum(), x_adv)
        x_adv = project(step(x_adv.detach(), grad, cfg.step_size), x, cfg.eps)
    return x_adv.detach()


def test_in_place_pgd_gives_the_numbers_of_the_step_by_step_loop() -> None:
    torch.manual_seed(0)
    model = create_model("tiny_resnet")
    x, y, _ = _batch(8)
    x[0] = 0.0  # pixels at the box's edges: the clipping must agree there too
    x[1] = 1.0
    cfg = PGDConfig(8 / 255, 5, 2 / 255)
    torch.manual_seed(5)
    ours = pgd(model, x, lambda m, xa: ce_loss(m(xa), y), cfg)
    torch.manual_seed(5)
    reference = _pgd_by_steps(model, x, y, cfg)
    assert torch.equal(ours, reference)
    assert float((ours - x).abs().max()) <= cfg.eps + 1e-7 and float(ours.min()) >= 0 and float(ours.max()) <= 1
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# Augmentation: the same distribution as torchvision's RandomCrop(padding=4) + RandomHorizontalFlip
# --------------------------------------------------------------------------------------------------
SIZE, PAD = 32, 4


def _coded_image() -> torch.Tensor:
    """Channel 0 holds the row + 1, channel 1 the column + 1: a crop's offsets can be read off it."""
    r = torch.arange(1, SIZE + 1, dtype=torch.uint8)
    return torch.stack(
        [r[:, None].expand(SIZE, SIZE), r[None, :].expand(SIZE, SIZE), torch.zeros(SIZE, SIZE, dtype=torch.uint8)]
    )


def _decode(out: torch.Tensor) -> tuple[int, int, bool]:
    """(row offset, column offset, flipped) of one (3, 32, 32) output, from its centre pixels."""
    c = SIZE // 2
    flipped = int(out[1, c, c + 1]) < int(out[1, c, c])
    dy = int(out[0, c, c]) - 1 - (c - PAD)
    dx = int(out[1, c, c]) - 1 - ((SIZE - 1 - c) if flipped else c) + PAD
    return dy, dx, flipped


def _chi2(counts: torch.Tensor) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


def _chi2_two_sample(a: torch.Tensor, b: torch.Tensor) -> float:
    """Homogeneity statistic of two histograms of equal totals."""
    keep = (a + b) > 0
    a, b = a[keep].double(), b[keep].double()
    return float(((a - b) ** 2 / (a + b)).sum())


def test_batch_augmentation_draws_crops_and_flips_like_torchvision() -> None:
    tv = pytest.importorskip("torchvision.transforms")
    n = 4000
    image = _coded_image()
    ours = random_crop_flip(image.expand(n, -1, -1, -1).contiguous(), torch.Generator().manual_seed(0), pad=PAD)
    torch.manual_seed(0)
    per_sample = tv.Compose([tv.RandomCrop(SIZE, padding=PAD), tv.RandomHorizontalFlip()])
    theirs = torch.stack([per_sample(image) for _ in range(n)])
    hist = {}
    for name, outs in (("ours", ours), ("torchvision", theirs)):
        draws = [_decode(o) for o in outs]
        assert all(0 <= dy <= 2 * PAD and 0 <= dx <= 2 * PAD for dy, dx, _ in draws)
        cells = torch.tensor([(dy * (2 * PAD + 1) + dx) * 2 + int(f) for dy, dx, f in draws])
        hist[name] = torch.bincount(cells, minlength=(2 * PAD + 1) ** 2 * 2).double()
        dy = torch.bincount(torch.tensor([d[0] for d in draws]), minlength=2 * PAD + 1).double()
        dx = torch.bincount(torch.tensor([d[1] for d in draws]), minlength=2 * PAD + 1).double()
        flips = sum(d[2] for d in draws)
        # Uniform offsets (chi-square, 8 d.o.f., p = 0.001 at 26.1) and a fair coin (4 sigma).
        assert _chi2(dy) < 26.1 and _chi2(dx) < 26.1, (name, dy, dx)
        assert abs(flips - n / 2) < 4 * (n / 4) ** 0.5, (name, flips)
        assert len(set(draws)) == 162  # every one of the 9 x 9 x 2 cases occurs
    # The joint histograms agree (161 d.o.f.: p = 0.001 at about 218).
    assert _chi2_two_sample(hist["ours"], hist["torchvision"]) < 218


# --------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------
def _data(n: int = 32) -> ImageSet:
    g = torch.Generator().manual_seed(123)
    return ImageSet(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10)


def _trainer(ckpt: Path | None, epochs: int = 1, **kw) -> Trainer:
    method, spec = _method("at")
    hyper = spec.hyperparameters.model_copy(update={"epochs": epochs, "batch_size": 16})
    return Trainer(method, _data(), hyper, device=torch.device("cpu"), seed=3, checkpoint_dir=ckpt, **kw)


@pytest.mark.slow
def test_auto_probes_once_and_reports_the_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: False)
    t = _trainer(None, precision="auto", probe_steps=1)
    result = t.fit()
    assert t.probe_result is not None and set(t.probe_result.seconds_per_step) == {"fp32", "fp32+channels_last"}
    assert all(v > 0 for v in t.probe_result.seconds_per_step.values())
    fast = result.fast_path
    assert fast is not None and fast["requested"] == "auto" and fast["precision"] == "fp32"
    assert fast["channels_last"] == t.probe_result.chosen.channels_last
    conv = t.method.student.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) == fast["channels_last"]


def test_a_resumed_job_keeps_the_setting_of_its_checkpoint(tmp_path: Path) -> None:
    first = _trainer(tmp_path, precision="fp32", channels_last=False)
    first.fit()
    path = tmp_path / CHECKPOINT_NAME
    state = torch.load(path, weights_only=True)
    assert state["fast_path"] == {"precision": "fp32", "channels_last": False}
    state["fast_path"] = {"precision": "fp32", "channels_last": True}  # as if the probe had chosen it
    torch.save(state, path)
    resumed = _trainer(tmp_path, precision="auto")  # would probe, but the checkpoint decides
    result = resumed.fit(resume_from=path)
    assert resumed.probe_result is None and resumed.setting == Setting("fp32", True)
    assert result.fast_path is not None and result.fast_path["channels_last"] is True
    assert resumed.method.student.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert resumed.batches.channels_last


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        _trainer(None, precision="fp16")


def test_jobs_default_to_auto_and_accept_only_known_precisions() -> None:
    from gacd_core.errors import SpecError

    assert parse_spec({"method": "at"}).precision == "auto"
    assert parse_spec({"method": "at", "precision": "bf16"}).precision == "bf16"
    with pytest.raises(SpecError) as err:
        parse_spec({"method": "at", "precision": "fp16"})
    assert "precision" in str(err.value)


# --------------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow  # compiles C++ (minutes with a cold compiler cache)
def test_compile_runs_training_through_the_compiled_body_and_leaves_the_model_eager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def spy_compile(fn):  # stands in for torch.compile: counts the calls that reach the "compiled" body
        def compiled(x):
            calls.append(x.shape[0])
            return fn(x)

        return compiled

    monkeypatch.setattr(fastpath.torch, "compile", spy_compile)
    data = _data()
    val = _data(20)
    method, spec = _method("at")
    hyper = spec.hyperparameters.model_copy(update={"epochs": 1, "batch_size": 16})
    t = Trainer(method, data, hyper, device=torch.device("cpu"), precision="fp32", val=val, compile=True)
    result = t.fit()
    steps = t.steps_per_epoch
    # every training step: the inner PGD-1 (one pass) and the update (one pass), all at the batch size;
    # the validation monitor (batches of 20) stayed eager
    assert calls == [16] * (2 * steps), calls
    assert result.fast_path is not None and result.fast_path["compile"] is True
    n = len(calls)
    method.student.eval()
    with torch.no_grad():
        method.student(torch.rand(4, 3, 32, 32))  # after training: eager again
    assert len(calls) == n and not COMPILED_BODIES
    with fastpath.compiled(create_model("tiny_resnet")):
        assert not COMPILED_BODIES  # under 8 channels: kept eager on the CPU


def test_compile_without_a_cpp_compiler_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match=r"compile: .*C\+\+ compiler"):
        _trainer(None, precision="fp32", compile=True)
    assert parse_spec({"method": "at"}).compile is False


@pytest.mark.slow
def test_the_compiled_body_computes_what_the_eager_one_does() -> None:
    torch.manual_seed(0)
    model = create_model("resnet10_w8").eval()  # >= 8 channels: see channels_last_safe
    x = torch.rand(8, 3, 32, 32, requires_grad=True)
    y = torch.arange(8)
    (g_eager,) = torch.autograd.grad(ce_loss(model(x), y).sum(), x)
    logits_eager = model(x).detach()
    with fastpath.compiled(model):
        (g_comp,) = torch.autograd.grad(ce_loss(model(x), y).sum(), x)
        logits_comp = model(x).detach()
    torch.testing.assert_close(logits_comp, logits_eager, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_comp, g_eager, rtol=1e-3, atol=1e-7)
