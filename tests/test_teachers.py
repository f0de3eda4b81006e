"""Teachers trained elsewhere load right, and every teacher is checked before it teaches.

1. The public layouts. The model definitions of the robust-training code whose checkpoints users bring
   are re-created below, in this file's own words, from reading the originals: the WideResNet of TRADES
   (``models/wideresnet.py``) and RobustBench (``robustbench/model_zoo/architectures/wide_resnet.py``),
   the CIFAR ResNet-18 and MobileNetV2 of kuangliu/pytorch-cifar (``models/resnet.py``,
   ``models/mobilenetv2.py``; ARD and RSLAD use them), and PreActResNet-18 as kuangliu has it and as
   RobustBench's ``PreActResNet18()`` has it (same keys, but its projection shortcut reads the raw block
   input). Their random weights (BatchNorm statistics randomised, so that a missing or misplaced layer
   shows) are saved the way those projects save them, loaded through our CLI path
   (:func:`gacd_core.jobs.load_teacher`) and our upload path (the API and a real worker's validation),
   and must compute the original function on the same [0, 1] inputs, given only the architecture.
2. The check. A small teacher is trained here on real CIFAR-10 with CIFAR-10 normalisation and saved as a
   plain state_dict, as the user's own code would; loaded with the default normalisation (none) it
   collapses to chance and is refused with ``teacher_unfit`` through the CLI (exit 2, nothing written)
   and through the HTTP API (the upload is marked unfit; a job using it fails before training).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _fakes import make_cifar10, make_npz
from _workers import ServiceEnv, wait_until
from torch import nn

from gacd_core.errors import TeacherLoadError, TeacherUnfitError
from gacd_core.jobs import check_job_teacher, load_teacher
from gacd_core.models import ImageClassifier, create_model, load_weights, save_weights
from gacd_core.normalization import CIFAR10_MEAN, CIFAR10_STD
from gacd_core.spec import TeacherSpec
from gacd_core.teacher_check import CLEAN_SUBSET, PGD_SUBSET, check_teacher, threshold

ROOT = Path(__file__).resolve().parent.parent
GACD = [sys.executable, "-m", "gacd_core.cli"]


# --------------------------------------------------------------------------------------------------
# The originals, retyped
# --------------------------------------------------------------------------------------------------
class WRNUnit(nn.Module):
    """A WRN basic unit as TRADES and RobustBench write it: when the widths differ, the input itself is
    replaced by its activation before both the residual branch and the 1x1 projection read it."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.same = cin == cout
        self.convShortcut = None if self.same else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            h = self.relu1(self.bn1(x))
        else:
            x = self.relu1(self.bn1(x))
            h = x
        h = self.conv2(self.relu2(self.bn2(self.conv1(h))))
        skip = x if self.convShortcut is None else self.convShortcut(x)
        return skip + h


class WRNGroup(nn.Module):
    def __init__(self, n: int, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[WRNUnit(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class PublicWideResNet(nn.Module):
    """WRN-depth-k. ``sub_block1``: TRADES builds a first group twice and never runs the copy.
    ``norm``: RobustBench-style ``mu``/``sigma`` buffers applied first."""

    def __init__(
        self, depth: int, k: int, sub_block1: bool = False, norm: tuple[list[float], list[float]] | None = None
    ) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * k, 32 * k, 64 * k]
        if norm is not None:
            self.register_buffer("mu", torch.tensor(norm[0]).view(1, 3, 1, 1))
            self.register_buffer("sigma", torch.tensor(norm[1]).view(1, 3, 1, 1))
        self.has_norm = norm is not None
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.block1 = WRNGroup(n, widths[0], widths[1], 1)
        if sub_block1:
            self.sub_block1 = WRNGroup(n, widths[0], widths[1], 1)
        self.block2 = WRNGroup(n, widths[1], widths[2], 2)
        self.block3 = WRNGroup(n, widths[2], widths[3], 2)
        self.bn1, self.relu = nn.BatchNorm2d(widths[3]), nn.ReLU(inplace=True)
        self.fc = nn.Linear(widths[3], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_norm:
            x = (x - self.mu) / self.sigma
        h = self.block3(self.block2(self.block1(self.conv1(x))))
        h = F.avg_pool2d(self.relu(self.bn1(h)), 8)
        return self.fc(h.flatten(1))


class KLBasic(nn.Module):
    """kuangliu's post-activation basic block."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + self.shortcut(x))


class KLPreAct(nn.Module):
    """A pre-activation block. ``raw``: the projection reads the raw input (RobustBench's PreActBlock);
    otherwise the activated one (kuangliu's)."""

    def __init__(self, cin: int, cout: int, stride: int, raw: bool) -> None:
        super().__init__()
        self.raw = raw
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        skip = (self.shortcut(x if self.raw else a)) if hasattr(self, "shortcut") else x
        return self.conv2(F.relu(self.bn2(self.conv1(a)))) + skip


class KLResNet18(nn.Module):
    """kuangliu's ResNet18 (``preact=False``) and PreActResNet18 (``preact=True``, no final BatchNorm)."""

    def __init__(self, preact: bool = False, raw: bool = False) -> None:
        super().__init__()
        self.preact = preact
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        if not preact:
            self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (cout, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            blocks = []
            for s in (stride, 1):
                blocks.append(KLPreAct(cin, cout, s, raw) if preact else KLBasic(cin, cout, s))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x) if self.preact else F.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.linear(F.avg_pool2d(h, 4).flatten(1))


class KLInvRes(nn.Module):
    def __init__(self, cin: int, cout: int, t: int, stride: int) -> None:
        super().__init__()
        mid = t * cin
        self.stride = stride
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride == 1 and cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        h = self.bn3(self.conv3(h))
        return h + self.shortcut(x) if self.stride == 1 else h


class KLMobileNetV2(nn.Module):
    """kuangliu's MobileNetV2 for CIFAR: stride-1 stem and second stage."""

    STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32)
        units, cin = [], 32
        for t, cout, n, stride in self.STAGES:
            for j in range(n):
                units.append(KLInvRes(cin, cout, t, stride if j == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*units)
        self.conv2, self.bn2 = nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(F.relu(self.bn1(self.conv1(x))))
        h = F.relu(self.bn2(self.conv2(h)))
        return self.linear(F.avg_pool2d(h, 4).flatten(1))


RB_NORM = ([0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616])


def _save_plain(model: nn.Module, path: Path) -> None:
    torch.save(model.state_dict(), path)


def _save_dataparallel(model: nn.Module, path: Path) -> None:
    torch.save(nn.DataParallel(model).state_dict(), path)  # keys gain "module."


def _save_wrapped(model: nn.Module, path: Path) -> None:
    torch.save({"state_dict": model.state_dict()}, path)


def _save_ard(model: nn.Module, path: Path) -> None:
    # ARD: torch.save({'net': net.state_dict(), 'acc': acc, 'epoch': epoch}, './checkpoint/ckpt.t7'),
    # with the network wrapped in DataParallel
    torch.save({"net": nn.DataParallel(model).state_dict(), "acc": 81.5, "epoch": 199}, path)


# (case, our architecture, original, how the project saves it, file name, normalisation source)
LAYOUTS: list[tuple[str, str, Callable[[], nn.Module], Callable[[nn.Module, Path], None], str, str]] = [
    (
        "trades-wrn-34-10",
        "wrn_34_10",
        lambda: PublicWideResNet(34, 10, sub_block1=True),
        _save_dataparallel,
        "model-wideres-epoch76.pt",
        "default",
    ),
    (
        "robustbench-wrn-28-10",
        "wrn_28_10",
        lambda: PublicWideResNet(28, 10, norm=RB_NORM),
        _save_wrapped,
        "Carmon2019Unlabeled.pt",
        "file",
    ),
    ("kuangliu-resnet18-rslad", "resnet18", KLResNet18, _save_plain, "rslad_resnet18.pth", "default"),
    # the name Hugging Face-style exports use: .bin is a state_dict on every path (gacd_core.artifacts)
    ("kuangliu-resnet18-bin", "resnet18", KLResNet18, _save_plain, "pytorch_model.bin", "default"),
    ("kuangliu-mobilenetv2-ard", "mobilenetv2", KLMobileNetV2, _save_ard, "ckpt.t7", "default"),
    (
        "kuangliu-preactresnet18",
        "preact_resnet18_nofinalbn",
        lambda: KLResNet18(preact=True),
        _save_plain,
        "preact.pt",
        "default",
    ),
    (
        "robustbench-preactresnet18",
        "preact_resnet18_robustbench",
        lambda: KLResNet18(preact=True, raw=True),
        _save_wrapped,
        "Wong2020Fast.pt",
        "default",
    ),
]


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """Random weights with random BatchNorm statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def layout_files(
    tmp_path_factory: pytest.TempPathFactory, inputs: torch.Tensor
) -> dict[str, tuple[Path, torch.Tensor]]:
    """Each layout saved as its project saves it, with the original module's logits on ``inputs``."""
    folder = tmp_path_factory.mktemp("layouts")
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # other jobs share the cores
    try:
        for i, (case, _, make, save, name, _) in enumerate(LAYOUTS):
            model = _randomised(make(), i)
            with torch.no_grad():
                logits = model(inputs)
            (folder / case).mkdir()
            save(model, folder / case / name)
            out[case] = (folder / case / name, logits)
            del model
    finally:
        torch.set_num_threads(threads)
    return out


def _logits(model: ImageClassifier, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _assert_same_function(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    scale = float(theirs.abs().max())
    assert scale > 1e-3  # the logits are not all ~0 (the comparison could then not fail)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6 * max(1.0, scale))


@pytest.mark.slow
@pytest.mark.unit
@pytest.mark.parametrize(("case", "arch", "source"), [(c, a, s) for c, a, _, _, _, s in LAYOUTS], ids=lambda v: str(v))
def test_public_layout_loads_through_the_cli_path(
    case: str, arch: str, source: str, layout_files: dict[str, tuple[Path, torch.Tensor]], inputs: torch.Tensor
) -> None:
    path, expected = layout_files[case]
    teacher = load_teacher(TeacherSpec(weights=str(path), arch=arch))  # nothing but the architecture
    assert teacher.num_classes == 10  # read from the classifier's shape
    norm = teacher.normalization()
    assert norm["source"] == source
    assert norm["name"] == ("cifar10" if source == "file" else "none")
    _assert_same_function(_logits(teacher, inputs), expected)


@pytest.mark.slow
@pytest.mark.unit
def test_the_two_preact_layouts_are_different_functions(
    layout_files: dict[str, tuple[Path, torch.Tensor]], inputs: torch.Tensor
) -> None:
    """Same keys, different shortcuts: loading one into the other gives other logits, and loading either
    into our own pre-activation ResNet (final BatchNorm) fails naming the missing keys."""
    path, expected = layout_files["kuangliu-preactresnet18"]
    crossed = load_teacher(TeacherSpec(weights=str(path), arch="preact_resnet18_robustbench"))
    assert (_logits(crossed, inputs) - expected).abs().max() > 1e-2 * expected.abs().max()
    with pytest.raises(
        TeacherLoadError, match=r"does not fit preact_resnet18 with 10 classes: 5 missing keys \(bn.weight"
    ) as info:
        load_teacher(TeacherSpec(weights=str(path), arch="preact_resnet18"))
    assert info.value.field == "teacher.weights"


@pytest.mark.slow
@pytest.mark.unit
def test_a_pt_without_arch_names_the_arch_field(layout_files: dict[str, tuple[Path, torch.Tensor]]) -> None:
    path, _ = layout_files["kuangliu-resnet18-rslad"]
    with pytest.raises(TeacherLoadError, match="give arch") as info:
        load_teacher(TeacherSpec(weights=str(path)))
    assert info.value.field == "teacher.arch"  # the CLI names --teacher-arch for it
    data = path.parent / "data"
    make_cifar10(data, n_train=20, n_test=10)
    out = subprocess.run(
        [*GACD, "distill", "--teacher", str(path), "--student-arch", "tiny_resnet", "--data-root", str(data),
         "--out", str(path.parent / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 2 and "teacher.arch (--teacher-arch)" in out.stderr, out.stderr
    assert not (path.parent / "o").exists()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("teacher", "field", "text"),
    [
        ({"normalization": "zca"}, "teacher.normalization", "Input should be"),
        ({"mean": [0.5, 0.5, 0.5]}, "teacher.std", "give both mean and std"),
        ({"normalization": "none", "mean": [0.5] * 3, "std": [0.2] * 3}, "teacher.normalization", "contradict"),
    ],
)
def test_bad_teacher_normalisation_names_the_field(teacher: dict[str, Any], field: str, text: str) -> None:
    from gacd_core.errors import SpecError
    from gacd_core.spec import parse_spec

    with pytest.raises(SpecError) as info:
        parse_spec({"method": "kd", "teacher": {"weights": "t.pt", "arch": "resnet18", **teacher}})
    assert info.value.field == field and text in info.value.message, info.value.message


@pytest.mark.unit
def test_cli_normalisation_flags_are_checked_and_named(tmp_path: Path) -> None:
    out = subprocess.run(
        [*GACD, "evaluate", "--weights", "w.safetensors", "--teacher", "t.pt", "--teacher-mean", "0.5,0.5",
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "--teacher-mean" in out.stderr and "three numbers" in out.stderr, out.stderr
    out = subprocess.run(
        [*GACD, "distill", "--teacher", "t.pt", "--teacher-arch", "resnet18", "--teacher-mean", "0.5,0.5,0.5",
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "teacher.std (--teacher-std): give both mean and std" in out.stderr, out.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------------
# The check, on its own
# --------------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_the_threshold_is_chance_plus_ten_points() -> None:
    assert threshold(10) == pytest.approx(0.2) and threshold(100) == pytest.approx(0.11)
    assert threshold(2) == pytest.approx(0.6)


@pytest.mark.unit
def test_cross_task_teachers_are_exempt_and_say_why() -> None:
    from gacd_core.data.base import ImageSet

    test = ImageSet(torch.zeros(20, 3, 32, 32, dtype=torch.uint8), torch.arange(20) % 5)
    teacher = create_model("tiny_resnet", 10)
    check = check_teacher(teacher, test, dataset="mine", num_classes=5, device=torch.device("cpu"))
    assert check.verdict == "exempt" and "teacher has 10 classes, mine has 5" in (check.exempt_reason or "")
    same = create_model("tiny_resnet", 5)
    check = check_teacher(same, test, dataset="mine", num_classes=5, device=torch.device("cpu"), cross_task=True)
    assert check.verdict == "exempt" and "cross_task" in (check.exempt_reason or "")


@pytest.mark.slow
@pytest.mark.unit
def test_the_check_leaves_the_jobs_random_state_alone() -> None:
    """PGD's random starts come from a forked generator, so a job trains the same with or without it."""
    from gacd_core.data.base import ImageSet

    test = ImageSet(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8), torch.arange(20) % 10)
    teacher = create_model("tiny_resnet", 10)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    check = check_teacher(teacher, test, dataset="noise", num_classes=10, device=torch.device("cpu"), pgd=True)
    assert check.pgd20_subset == 20 and check.clean_subset == 20
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------------------------------
# A real teacher, trained here on real CIFAR-10
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_teacher(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ResNet trained naturally for 3 epochs on 3000 CIFAR-10 images *with CIFAR-10 normalisation*
    (about a third right, where chance is a tenth), saved as a plain state_dict: the file does not say
    how it normalised, as the files of most training code do not."""
    from gacd_core.data import load_dataset
    from gacd_core.spec import DatasetSpec

    data = load_dataset(DatasetSpec(name="cifar10", root=str(cifar10_root), train_subset=3000))
    torch.manual_seed(0)
    model = create_model("tiny_resnet", 10, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(3):
        order = torch.randperm(len(data.train), generator=gen)
        for s in range(0, len(order), 64):
            idx = order[s : s + 64]
            x = data.train.images[idx].float().div(255)
            if s % 128 == 0:
                x = x.flip(3)
            loss = F.cross_entropy(model(x), data.train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    path = tmp_path_factory.mktemp("trained") / "teacher.pt"
    torch.save(model.eval().state_dict(), path)
    return path


def _cifar_test(cifar10_root: Path) -> Any:
    from gacd_core.data import load_dataset
    from gacd_core.spec import DatasetSpec

    return load_dataset(DatasetSpec(name="cifar10", root=str(cifar10_root), train_subset=10))


@pytest.mark.slow
def test_a_wrongly_normalised_real_teacher_is_refused_with_both_figures(
    trained_teacher: Path, cifar10_root: Path
) -> None:
    data = _cifar_test(cifar10_root)
    cpu = torch.device("cpu")
    wrong = load_teacher(TeacherSpec(weights=str(trained_teacher), arch="tiny_resnet"))
    with pytest.raises(TeacherUnfitError) as info:
        check_job_teacher(wrong, data, cpu, allow_weak=False)
    check = info.value.check
    assert info.value.code == "teacher_unfit"
    assert check["clean_subset"] == CLEAN_SUBSET and check["clean_acc"] < threshold(10)
    better = check["better_normalization"]
    assert better["name"] == "cifar10" and better["clean_acc"] >= 0.25, check
    message = info.value.message
    for part in ("at or near chance", "--teacher-normalization cifar10", "--allow-weak-teacher", "num_classes",
                 "architecture variant", f"{100 * better['clean_acc']:.1f}%"):  # fmt: skip
        assert part in message, (part, message)
    # the same file, told how it was trained, passes, with PGD-20 measured on its subset
    right = load_teacher(TeacherSpec(weights=str(trained_teacher), arch="tiny_resnet", normalization="cifar10"))
    ok = check_job_teacher(right, data, cpu, allow_weak=False)
    assert ok.verdict == "fit" and ok.clean_acc == pytest.approx(better["clean_acc"])
    assert ok.normalization["source"] == "user" and ok.pgd20_subset == PGD_SUBSET and ok.pgd20_acc is not None
    assert ok.better_normalization is None and ok.message is None
    # allowed anyway, it is kept and marked so
    weak = check_job_teacher(wrong, data, cpu, allow_weak=True)
    assert weak.verdict == "unfit" and weak.allowed_weak


def _gacd(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*GACD, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.e2e
def test_the_cli_refuses_it_before_training_and_evaluate_takes_a_foreign_teacher(
    trained_teacher: Path, cifar10_root: Path, tmp_path: Path
) -> None:
    data = ["--data-root", str(cifar10_root), "--device", "cpu"]
    out_dir = tmp_path / "distilled"
    refused = _gacd(
        "distill", "--method", "kd", "--teacher", str(trained_teacher), "--teacher-arch", "tiny_resnet",
        "--student-arch", "tiny_wrn", "--train-subset", "64", "--epochs", "1", "--out", str(out_dir), *data,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "gacd: error: teacher: the teacher is at or near chance on cifar10" in refused.stderr
    assert "--teacher-normalization cifar10" in refused.stderr and "--allow-weak-teacher" in refused.stderr
    assert "input normalisation none (mean 0, std 1; source: default)" in refused.stderr  # said at the start
    assert not out_dir.exists()  # nothing trained, nothing written

    # README step 3 with a teacher trained elsewhere: gacd evaluate takes it like gacd distill does
    student = save_weights(create_model("tiny_wrn", 10, mean=CIFAR10_MEAN, std=CIFAR10_STD), tmp_path / "s.safetensors")
    evaluated = tmp_path / "eval"
    out = _gacd(
        "evaluate", "--weights", str(student), "--teacher", str(trained_teacher), "--teacher-arch", "tiny_resnet",
        "--teacher-normalization", "cifar10", "--eval-subset", "20", "--set", "evaluation.eps_sweep=[]",
        "--set", "evaluation.throughput=false", "--set", "evaluation.attacks=[pgd20]", "--out", str(evaluated), *data,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "input normalisation cifar10" in out.stderr and "source: user" in out.stderr
    report = json.loads((evaluated / "report.json").read_text())
    teacher = report["teacher"]
    assert teacher["normalization"]["name"] == "cifar10" and teacher["normalization"]["source"] == "user"
    assert teacher["check"]["verdict"] == "fit" and teacher["check"]["clean_subset"] == CLEAN_SUBSET
    html = (evaluated / "report.html").read_text()
    assert "Teacher check (before anything ran)" in html and "given by the user" in html


# --------------------------------------------------------------------------------------------------
# Through the HTTP API and a real worker
# --------------------------------------------------------------------------------------------------
KEY = "teacher-tests-key-" + "t" * 20
QUEUE = "gacdteachers"


@pytest.fixture(scope="module")
def service(start_service: Callable[..., ServiceEnv], cifar10_root: Path) -> dict[str, Any]:
    """Redis, a worker whose data root holds the real CIFAR-10, and the API."""
    env = start_service("teachers-service", workers=["teachers-worker"], data_root=cifar10_root,
                        api_keys=f"{KEY}=tina", queue=QUEUE)  # fmt: skip
    return {"api": env.app(), "settings": env.settings, "log": env.log("teachers-worker")}


AUTH = {"Authorization": f"Bearer {KEY}"}


def _upload(svc: dict[str, Any], path: Path, **fields: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        r = svc["api"].post("/v1/teachers", headers=AUTH, data=fields, files={"file": (path.name, f)})
    assert r.status_code == 201, r.text
    return r.json()


def _settled(svc: dict[str, Any], kind: str, rid: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    def get() -> dict[str, Any] | None:
        rec = svc["api"].get(f"/v1/{kind}/{rid}", headers=AUTH).json()
        return rec if rec["status"] in statuses else None

    return wait_until(get, f"{kind} {rid} in {statuses}", timeout=600, log=svc["log"])


@pytest.fixture(scope="module")
def tiny_dataset(service: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A custom dataset with 10 test images, so that checking the big random layouts costs seconds."""
    npz = tmp_path_factory.mktemp("ds") / "ten.npz"
    make_npz(npz, n_train=20, n_test=10, num_classes=10, size=32)
    with open(npz, "rb") as f:
        r = service["api"].post("/v1/datasets", headers=AUTH, files={"file": (npz.name, f)})
    assert r.status_code == 201, r.text
    rec = _settled(service, "datasets", r.json()["id"], ("ready", "invalid"))
    assert rec["status"] == "ready", rec
    return str(rec["id"])


@pytest.mark.api
@pytest.mark.worker
@pytest.mark.e2e
@pytest.mark.parametrize(("case", "arch", "source"), [(c, a, s) for c, a, _, _, _, s in LAYOUTS], ids=lambda v: str(v))
def test_public_layout_loads_through_the_upload_path(
    case: str,
    arch: str,
    source: str,
    service: dict[str, Any],
    tiny_dataset: str,
    layout_files: dict[str, tuple[Path, torch.Tensor]],
    inputs: torch.Tensor,
) -> None:
    path, expected = layout_files[case]
    # random weights are at chance by construction: allow_weak keeps them so their function can be compared
    rec = _upload(service, path, arch=arch, dataset=tiny_dataset, allow_weak="true")
    assert rec["num_classes"] is None and rec["status"] == "validating"
    rec = _settled(service, "teachers", rec["id"], ("ready", "invalid"))
    assert rec["status"] == "ready", rec
    assert rec["num_classes"] == 10 and rec["normalization"]["source"] == source
    check = rec["checks"][tiny_dataset]
    assert check["clean_subset"] == 10 and check["allowed_weak"] == (check["verdict"] == "unfit")
    weights = Path(service["settings"]["artifact_root"]) / "tina" / "teachers" / rec["id"] / "weights.safetensors"
    _assert_same_function(_logits(load_weights(weights), inputs), expected)


@pytest.mark.api
@pytest.mark.worker
@pytest.mark.e2e
def test_a_timm_teacher_with_explicit_normalisation_validates_on_the_worker(
    service: dict[str, Any], tiny_dataset: str, tmp_path: Path, inputs: torch.Tensor
) -> None:
    """Issue 25: an uploaded ``timm:resnet18`` state_dict, normalised as the form says, is ready with its
    source, input size and normalisation recorded, and its rewritten weights compute the original."""
    import timm

    torch.manual_seed(11)
    bare = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in bare.state_dict().items()}}, path)
    mean, std = "[0.485, 0.456, 0.406]", "0.229,0.224,0.225"
    rec = _upload(service, path, arch="timm:resnet18", dataset=tiny_dataset, mean=mean, std=std, allow_weak="true")
    rec = _settled(service, "teachers", rec["id"], ("ready", "invalid"))
    assert rec["status"] == "ready", rec
    assert rec["source"] == "timm:resnet18" and rec["input_size"] == 32 and rec["num_classes"] == 10
    assert rec["normalization"]["source"] == "user" and rec["normalization"]["name"] == "imagenet"
    assert rec["licence"] is None and rec["non_commercial"] is False
    weights = Path(service["settings"]["artifact_root"]) / "tina" / "teachers" / rec["id"] / "weights.safetensors"
    with torch.no_grad():
        expected = bare((inputs - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))  # fmt: skip
    _assert_same_function(_logits(load_weights(weights), inputs), expected)


@pytest.mark.slow
@pytest.mark.api
@pytest.mark.worker
@pytest.mark.e2e
def test_the_api_refuses_a_wrongly_normalised_teacher(service: dict[str, Any], trained_teacher: Path) -> None:
    api = service["api"]
    # 1. uploaded as it is: measured on 500 CIFAR-10 test images, marked unfit, with both figures
    rec = _settled(service, "teachers", _upload(service, trained_teacher, arch="tiny_resnet", dataset="cifar10")["id"],
                   ("ready", "invalid"))  # fmt: skip
    assert rec["status"] == "invalid" and rec["error_code"] == "teacher_unfit", rec
    check = rec["checks"]["cifar10"]
    assert check["clean_subset"] == CLEAN_SUBSET and check["clean_acc"] < threshold(10)
    assert check["better_normalization"]["name"] == "cifar10" and check["better_normalization"]["clean_acc"] >= 0.25
    assert "normalization=cifar10 on upload" in rec["error"] and "allow_weak=true" in rec["error"]
    assert rec["normalization"]["source"] == "default"
    r = api.post("/v1/jobs", headers=AUTH, json=_job(rec["id"]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "teacher_unfit", r.text

    # 2. kept with allow_weak: a job that does not say allow_weak fails teacher_unfit before training
    weak = _settled(service, "teachers", _upload(service, trained_teacher, arch="tiny_resnet", dataset="cifar10",
                                                 allow_weak="true")["id"], ("ready", "invalid"))  # fmt: skip
    assert weak["status"] == "ready" and weak["checks"]["cifar10"]["allowed_weak"] and weak["warning"]
    r = api.post("/v1/jobs", headers=AUTH, json=_job(weak["id"]))
    assert r.status_code == 202, r.text
    job = _settled(service, "jobs", r.json()["id"], ("succeeded", "failed", "cancelled"))
    assert job["status"] == "failed" and job["error"]["code"] == "teacher_unfit", job["error"]
    assert job["error"]["check"]["clean_acc"] < threshold(10) and job["progress"]["epoch"] == 0
    assert job["artifacts"] == []
    events = [e["type"] for e in api.get(f"/v1/jobs/{job['id']}/events", headers=AUTH).json()["data"]]
    assert "epoch" not in events and events[-1] == "failed"
    out = Path(service["settings"]["artifact_root"]) / "tina" / "jobs" / job["id"]
    assert not [p for p in out.rglob("*") if p.is_file() and p.name != "train.log"]  # only the log of the refusal

    # 3. uploaded with the normalisation it was trained with: ready, with its figures and subset sizes
    good = _settled(service, "teachers", _upload(service, trained_teacher, arch="tiny_resnet", dataset="cifar10",
                                                 normalization="cifar10")["id"], ("ready", "invalid"))  # fmt: skip
    assert good["status"] == "ready", good
    assert good["normalization"]["name"] == "cifar10" and good["normalization"]["source"] == "user"
    c = good["checks"]["cifar10"]
    assert c["verdict"] == "fit" and c["clean_acc"] >= 0.25 and c["clean_subset"] == CLEAN_SUBSET
    assert c["pgd20_subset"] == PGD_SUBSET and 0.0 <= c["pgd20_acc"] <= c["clean_acc"]


def _job(teacher_id: str) -> dict[str, Any]:
    return {
        "method": "kd",
        "teacher": {"id": teacher_id},
        "student": {"arch": "tiny_wrn"},
        "dataset": {"name": "cifar10", "train_subset": 64},
        "hyperparameters": {"epochs": 1, "batch_size": 32},
        "evaluation": {"eps_sweep": [], "throughput": False},
    }
