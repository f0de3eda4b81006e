"""Architectures beyond our registry (issue 25, item 1): RobustBench entries, timm and torchvision models.

Weights are recreated here with random values (every BatchNorm statistic and affine parameter random),
saved as their projects save them (bare state_dicts, with and without ``mean``/``std`` entries), loaded
through :func:`gacd_core.models.io.load_model_file` by name, and must give the original logits and
pooled features (relative difference < 1e-4):

- the DeepMind models against the functional reference of ``tests/test_deepmind_models.py``, which
  reads the checkpoint's keys and applies CIFAR-10's normalisation, as RobustBench's ``DMWideResNet``
  does for the CIFAR-10 entries (their files carry no normalisation: the entry must decide it);
- timm and torchvision models against the bare library model on normalised input.

The real ``Wang2023Better_WRN-28-10`` (36M parameters) is slow to randomise and run on a CPU, so that
test swaps the record the builder reads (``gacd_core.models.library.zoo_entry``) for the same record at
depth 10 and width 2: the name, the loader, the normalisation and the builder are the real ones, only
the record's ``depth``/``width`` differ. ``Rebuffi2021Fixing_R18_ddpm`` runs at its real depth.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from test_deepmind_models import _randomise, _ref_preact, _ref_wrn
from torch import nn

from gacd_core import catalog, zoo
from gacd_core.errors import SpecError, UnknownNameError, WeightsError
from gacd_core.models import create_model, load_model_file, load_weights, save_weights
from gacd_core.models import library as library_mod
from gacd_core.normalization import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from gacd_core.spec import parse_spec

pytestmark = [pytest.mark.unit]

WRN_ENTRY = "robustbench:cifar10/Linf/Wang2023Better_WRN-28-10"  # DMWideResNet, nn.SiLU, CIFAR-10 stats
PREACT_ENTRY = "robustbench:cifar10/Linf/Rebuffi2021Fixing_R18_ddpm"  # DMPreActResNet-18, Swish


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative difference of the values and of their variation over the batch (random networks'
    outputs are dominated by a part shared by every image; the per-image part is the function)."""
    a, b = a.detach(), b.detach()
    centred = float((a - a.mean(0) - b + b.mean(0)).norm() / (b - b.mean(0)).norm())
    return max(float((a - b).norm() / b.norm()), centred)


def _random_bn(net: nn.Module, seed: int) -> nn.Module:
    """Every BatchNorm statistic and affine parameter random (library models keep their own init)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return net.eval()


def _write(state: dict[str, torch.Tensor], path: Path, norm: tuple | None) -> Path:
    """``state`` as a bare state_dict file, with ``mean``/``std`` entries when ``norm`` is given (the
    DeepMind files before RobustBench d2d996d carried them as (1, 3, 1, 1) buffers)."""
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    if norm is not None:
        state["mean"] = torch.tensor(norm[0]).view(1, 3, 1, 1)
        state["std"] = torch.tensor(norm[1]).view(1, 3, 1, 1)
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def _images(n: int, side: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        feats, logits = model.forward_all(x)  # type: ignore[operator]
        assert _rel(model(x), logits) < 1e-6  # forward and forward_all agree
    return feats, logits


# --------------------------------------------------------------------------------------------------
# RobustBench entries of the DeepMind family
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def small_wrn_record(monkeypatch: pytest.MonkeyPatch) -> zoo.ZooEntry:
    """The real WRN-28-10 record at depth 10, width 2 (see the module's docstring)."""
    real = zoo.lookup(WRN_ENTRY)
    assert (real.family, real.arch.depth, real.arch.width, real.arch.activation_impl) == (
        "dm_wide_resnet", 28, 10, "nn.SiLU"
    )  # fmt: skip
    small = real.model_copy(update={"arch": real.arch.model_copy(update={"depth": 10, "width": 2})})
    monkeypatch.setattr(library_mod, "zoo_entry", lambda name: small if name == WRN_ENTRY else zoo.lookup(name))
    return small


@pytest.mark.parametrize("with_norm", [False, True], ids=["no-mean-std", "mean-std"])
def test_dm_wideresnet_entry_gives_the_original_function(
    small_wrn_record: zoo.ZooEntry, with_norm: bool, tmp_path: Path
) -> None:
    source = create_model(WRN_ENTRY)  # the builder the loader uses, at the record's depth
    assert (source.depth, source.width, source.activation) == (10, 2, "swish")
    state = _randomise(source, seed=3)
    path = _write(state, tmp_path / "wrn.safetensors", (CIFAR10_MEAN, CIFAR10_STD) if with_norm else None)
    model = load_model_file(path, arch=WRN_ENTRY)
    x = _images(4, 32)
    feats, logits = _outputs(model, x)
    ref_feats, ref_logits = _ref_wrn(x, state, n=1, swish=True)
    assert _rel(feats, ref_feats) < 1e-4 and _rel(logits, ref_logits) < 1e-4
    # the entry's normalisation when the file has none: never the identity (the DeepMind trap)
    assert model.normalization()["name"] == "cifar10"
    assert model.normalization()["source"] == ("file" if with_norm else "entry")
    assert model.provenance["source"] == WRN_ENTRY and model.provenance["licence"] == "MIT"
    assert model.input_size == 32
    # the trap itself: the same weights without the entry's normalisation compute another function
    bare = create_model("robustbench:cifar10/Linf/Wang2023Better_WRN-28-10", mean=(0, 0, 0), std=(1, 1, 1))
    bare.load_state_dict(model.state_dict())
    assert _rel(_outputs(bare, x)[1], ref_logits) > 0.05


def test_a_normalisation_that_contradicts_the_entry_is_refused(small_wrn_record: zoo.ZooEntry, tmp_path: Path) -> None:
    path = _write(_randomise(create_model(WRN_ENTRY), seed=4), tmp_path / "wrn.pt", None)
    with pytest.raises(WeightsError) as info:
        load_model_file(path, arch=WRN_ENTRY, normalization="none")
    assert info.value.field == "normalization" and "leave the normalisation out" in info.value.message
    agreed = load_model_file(path, arch=WRN_ENTRY, normalization="cifar10")  # the entry's own: accepted
    assert agreed.normalization()["source"] == "user"


@pytest.mark.parametrize("with_norm", [False, True], ids=["no-mean-std", "mean-std"])
def test_dm_preact_resnet18_entry_gives_the_original_function(with_norm: bool, tmp_path: Path) -> None:
    entry = zoo.lookup(PREACT_ENTRY)
    assert (entry.family, entry.arch.depth, entry.arch.activation) == ("dm_preact_resnet", 18, "swish")
    state = _randomise(create_model(PREACT_ENTRY), seed=5)
    path = _write(state, tmp_path / "r18.pt", (CIFAR10_MEAN, CIFAR10_STD) if with_norm else None)
    model = load_model_file(path, arch=PREACT_ENTRY)
    x = _images(2, 32)
    feats, logits = _outputs(model, x)
    ref_feats, ref_logits = _ref_preact(x, state, swish=True)
    assert _rel(feats, ref_feats) < 1e-4 and _rel(logits, ref_logits) < 1e-4
    assert model.normalization()["source"] == ("file" if with_norm else "entry")
    assert model.provenance["licence"] == "Apache-2.0" and model.provenance["non_commercial"] is False
    # saved by us and loaded from the file alone: same function, the entry's origin kept
    again = load_weights(save_weights(model, tmp_path / "again.safetensors"))
    assert _rel(_outputs(again, x)[1], ref_logits) < 1e-4
    assert again.arch == PREACT_ENTRY and again.normalization()["origin"] == model.normalization_source


def test_every_covered_cifar_entry_builds_from_its_record() -> None:
    """Each distinct CIFAR architecture of the covered entries builds at its record's depth and width
    with its record's classes (on the meta device: shapes without memory; the functions are tested
    above), and the WideResNets have the parameter count of their depth and width."""
    seen: set[tuple] = set()
    for e in zoo.covered():
        a = e.arch
        key = (e.family, a.depth, a.width, a.activation, a.block, a.shortcut_from, a.final_bn, a.num_classes)
        if e.dataset == "imagenet" or key in seen:
            continue
        seen.add(key)
        with torch.device("meta"):
            model = create_model(e.key)
        assert model.num_classes == a.num_classes and model.input_size == 32, e.key
        assert model.classifier.out_features == a.num_classes, e.key
        if e.family in ("wide_resnet", "dm_wide_resnet"):
            assert model.depth == a.depth and model.width == a.width, e.key
        params = sum(p.numel() for p in model.parameters())
        if (a.depth, a.width) == (28, 10):  # WRN-28-10: 36.5M parameters
            assert 36.4e6 < params < 36.6e6, (e.key, params)
    assert len(seen) >= 20


# --------------------------------------------------------------------------------------------------
# timm and torchvision models
# --------------------------------------------------------------------------------------------------
def _bare_timm(name: str, num_classes: int, seed: int, **kw: object) -> nn.Module:
    import timm

    torch.manual_seed(seed)
    return _random_bn(timm.create_model(name, pretrained=False, num_classes=num_classes, **kw), seed)


def _normalised(x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("with_norm", [False, True], ids=["explicit", "mean-std-in-file"])
def test_timm_resnet18_gives_the_original_function(with_norm: bool, tmp_path: Path) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    bare = _bare_timm("resnet18", 10, seed=6)
    path = _write(bare.state_dict(), tmp_path / "r18.safetensors", (mean, std) if with_norm else None)
    kw = {} if with_norm else {"mean": mean, "std": std}
    model = load_model_file(path, arch="timm:resnet18", input_size=64, **kw)
    x = _images(2, 64)
    feats, logits = _outputs(model, x)
    with torch.no_grad():
        xn = _normalised(x, mean, std)
        ref_feats = bare.forward_head(bare.forward_features(xn), pre_logits=True)
        ref_logits = bare(xn)
    assert _rel(feats, ref_feats) < 1e-4 and _rel(logits, ref_logits) < 1e-4
    assert model.normalization()["source"] == ("file" if with_norm else "user")
    assert model.num_classes == 10 and model.num_features == 512 and model.input_size == 64
    assert model.provenance["source"] == "timm:resnet18" and model.provenance["licence"] is None


def test_torchvision_resnet50_gives_the_original_function(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(7)
    bare = _random_bn(torchvision.models.resnet50(weights=None, num_classes=10), seed=7)
    path = _write(bare.state_dict(), tmp_path / "r50.pt", None)
    model = load_model_file(path, arch="torchvision:resnet50", normalization="imagenet", input_size=64)
    x = _images(2, 64)
    feats, logits = _outputs(model, x)
    with torch.no_grad():
        xn = _normalised(x, IMAGENET_MEAN, IMAGENET_STD)
        ref_feats = torch.flatten(nn.Sequential(*list(bare.children())[:-1])(xn), 1)  # pooled, before fc
        ref_logits = bare(xn)
    assert _rel(feats, ref_feats) < 1e-4 and _rel(logits, ref_logits) < 1e-4
    assert model.num_features == 2048 and model.normalization()["name"] == "imagenet"


def test_timm_convnext_at_64px_with_imagenet_normalisation(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(8)
    bare = timm.create_model("convnext_atto", pretrained=False, num_classes=10).eval()
    with torch.no_grad():  # LayerNorm affine and the layer scales random too
        for p in bare.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn_like(p))
    path = _write(bare.state_dict(), tmp_path / "cnx.safetensors", None)
    model = load_model_file(path, arch="timm:convnext_atto", mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=64)
    x = _images(2, 64)
    feats, logits = _outputs(model, x)
    with torch.no_grad():
        xn = _normalised(x, IMAGENET_MEAN, IMAGENET_STD)
        ref_feats = bare.forward_head(bare.forward_features(xn), pre_logits=True)
        ref_logits = bare(xn)
    assert _rel(feats, ref_feats) < 1e-4 and _rel(logits, ref_logits) < 1e-4
    assert model.normalization() == {**model.normalization(), "name": "imagenet", "source": "user"}


def test_a_vit_is_built_for_its_input_size_and_resizes_other_sides(tmp_path: Path) -> None:
    bare = _bare_timm("vit_tiny_patch16_224", 10, seed=9, img_size=64).eval()
    path = _write(bare.state_dict(), tmp_path / "vit.pt", None)
    model = load_model_file(path, arch="timm:vit_tiny_patch16_224", input_size=64)
    assert model.input_size == 64 and tuple(model.model.patch_embed.img_size) == (64, 64)
    x = _images(2, 64)
    feats, logits = _outputs(model, x)
    with torch.no_grad():
        assert _rel(logits, bare(x)) < 1e-4
        assert _rel(feats, bare.forward_head(bare.forward_features(x), pre_logits=True)) < 1e-4
    # one pixel space per job: 32-px images are resized inside the model, differentiably
    small = _images(2, 32).requires_grad_(True)
    out = model(small)
    with torch.no_grad():
        expected = bare(F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False))
    assert _rel(out, expected) < 1e-4 and model.resized_from == 32
    out.sum().backward()
    assert small.grad is not None and bool(small.grad.abs().sum() > 0)
    with pytest.raises(WeightsError, match="does not fit"):  # a file for 64 px does not load at 224
        load_model_file(path, arch="timm:vit_tiny_patch16_224", input_size=224)


def test_torchvision_features_are_the_input_of_the_last_linear() -> None:
    model = create_model("torchvision:mobilenet_v3_small", 7, input_size=32).eval()
    x = _images(2, 32)
    feats, logits = _outputs(model, x)
    assert feats.shape == (2, 1024) and logits.shape == (2, 7)
    assert _rel(model.model(model.normalize(x)), logits) < 1e-6


def test_the_allow_lists_hold_the_names_the_issue_asks_for() -> None:
    wanted = [
        "timm:resnet18", "timm:resnet34", "timm:resnet50", "timm:wide_resnet50_2", "timm:convnext_atto",
        "timm:convnext_femto", "timm:convnext_pico", "timm:convnext_nano", "timm:convnext_tiny",
        "timm:efficientnet_b0", "timm:mobilenetv3_small_100", "timm:mobilenetv3_large_100",
        "timm:vit_tiny_patch16_224", "timm:vit_small_patch16_224", "timm:vit_base_patch16_224",
        "timm:swin_tiny_patch4_window7_224", "timm:deit_tiny_patch16_224", "torchvision:resnet18",
        "torchvision:resnet34", "torchvision:resnet50", "torchvision:wide_resnet50_2",
        "torchvision:efficientnet_b0", "torchvision:mobilenet_v3_small", "torchvision:mobilenet_v3_large",
    ]  # fmt: skip
    assert set(wanted) <= set(catalog.ARCHITECTURES)
    covered = [e for e in zoo.covered() if e.family in ("timm", "torchvision")]
    for e in covered:  # every covered ImageNet entry's library model is allowed
        assert f"{e.arch.library}:{e.arch.model_name}" in catalog.ARCHITECTURES, e.key
    assert {e.key for e in zoo.covered()} <= set(catalog.ARCHITECTURES)
    assert not {e.key for e in zoo.entries() if not e.covered} & set(catalog.ARCHITECTURES)


def test_imagenet_entries_build_from_their_records() -> None:
    """The wrapped torchvision ResNet-50 of width 128 per group has wide_resnet50_2's layout."""
    e = zoo.lookup("robustbench:imagenet/Linf/Chen2024Data_WRN_50_2")
    model = create_model(e.key)
    tv = create_model("torchvision:wide_resnet50_2", 1000)
    assert model.input_size == 224 and model.num_classes == 1000
    assert {k: v.shape for k, v in model.model.state_dict().items()} == {
        k: v.shape for k, v in tv.model.state_dict().items()
    }
    assert model.normalization()["source"] == "entry" and model.normalization()["name"] == "none"


# --------------------------------------------------------------------------------------------------
# Refusals name the valid choices
# --------------------------------------------------------------------------------------------------
def test_unknown_names_are_refused_naming_the_valid_choices(tmp_path: Path) -> None:
    path = _write(create_model("tiny_resnet").state_dict(), tmp_path / "w.pt", None)
    uncovered = next(e for e in zoo.entries() if not e.covered)
    cases = [
        ("timm:resnet19", "timm models allowed here are resnet18, resnet34"),
        ("torchvision:vgg16", "torchvision models allowed here are resnet18"),
        ("robustbench:cifar10/Linf/Wang2023", "did you mean: robustbench:cifar10/Linf/Wang2023Better_WRN-28-10"),
        ("robustbench:cifar10/L2/Wang2023Better_WRN-28-10", "unknown RobustBench threat model 'L2'"),
        (uncovered.key, f"not covered: {uncovered.not_covered_reason}"),
    ]
    for name, text in cases:
        with pytest.raises(UnknownNameError) as info:
            load_model_file(path, arch=name)
        assert text in info.value.message, info.value.message
        with pytest.raises(SpecError) as spec_info:
            parse_spec({"method": "at", "student": {"arch": name}})
        assert spec_info.value.errors[0][0] == "student.arch" and text in spec_info.value.errors[0][1]
    with pytest.raises(SpecError) as spec_info:
        parse_spec({"method": "kd", "teacher": {"weights": str(path), "arch": "vgg16"}})
    loc, msg = spec_info.value.errors[0]
    assert loc == "teacher.arch" and "timm:resnet18" in msg and "robustbench:<dataset>/<threat>/<entry>" in msg


def test_a_job_names_library_and_zoo_models() -> None:
    spec = parse_spec(
        {
            "method": "kd",
            "teacher": {"weights": "t.pt", "arch": WRN_ENTRY},
            "student": {"arch": "timm:resnet18"},
        }
    )
    assert spec.student.arch == "timm:resnet18" and spec.teacher is not None and spec.teacher.arch == WRN_ENTRY


@pytest.mark.e2e
def test_a_job_trains_a_timm_student_and_its_file_reloads(tmp_path: Path) -> None:
    """``gacd train --arch timm:resnet18``: the job's student is the library model at the data's side,
    the report says where it comes from, and the saved student rebuilds from its file alone."""
    import json
    import subprocess
    import sys

    from _fakes import make_cifar10

    data = tmp_path / "data"
    make_cifar10(data, n_train=64, n_test=16)
    out_dir = tmp_path / "run"
    args = [
        "train", "--method", "natural", "--arch", "timm:resnet18", "--data-root", str(data), "--epochs", "1",
        "--batch-size", "32", "--device", "cpu", "--out", str(out_dir),
        "--set", 'evaluation.attacks=["fgsm"]', "--set", "evaluation.eps_sweep=[0]",
    ]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "gacd_core.cli", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((out_dir / "report.json").read_text())
    student = report["student"]
    assert student["arch"] == "timm:resnet18" and student["source"] == "timm:resnet18"
    assert student["input_size"] == 32 and "resized_from" not in student
    model = load_weights(out_dir / "student.safetensors")
    assert model.arch == "timm:resnet18" and model.input_size == 32 and model.num_classes == 10
    assert model.normalization()["origin"] == "dataset"


@pytest.mark.parametrize("name", [n for n in catalog.ARCHITECTURES if n.startswith(("timm:", "torchvision:"))])
def test_every_allowed_library_name_builds(name: str) -> None:
    """Each allow-listed name builds (on the meta device: no memory, no forward) with the requested classes."""
    with torch.device("meta"):
        model = create_model(name, 7, input_size=64)
    assert model.classifier.out_features == 7 and model.num_features > 0, name


def test_an_old_timm_swin_layout_loads_through_timms_filter(tmp_path: Path) -> None:
    """The Swin entries' files are in timm's older layout (a stage's downsampling at the end of the
    stage before, the classifier as ``head``): timm's own ``checkpoint_filter_fn`` maps them."""
    import re

    bare = _bare_timm("swin_tiny_patch4_window7_224", 10, seed=12).eval()
    old = {}
    for key, value in bare.state_dict().items():
        m = re.match(r"layers\.(\d+)\.downsample(.*)", key)
        key = f"layers.{int(m.group(1)) - 1}.downsample{m.group(2)}" if m else key.replace("head.fc.", "head.")
        old[key] = value
    assert set(old) != set(bare.state_dict())
    path = _write(old, tmp_path / "swin.pt", None)
    model = load_model_file(path, arch="timm:swin_tiny_patch4_window7_224", input_size=224)
    x = _images(2, 224)
    with torch.no_grad():
        assert _rel(model.eval()(x), bare(x)) < 1e-4


def test_the_engstrom_resnet50_has_the_kuangliu_bottleneck_layout() -> None:
    """RobustBench's ``Engstrom2019RobustnessNet`` is kuangliu's ResNet(Bottleneck, [3, 4, 6, 3]) with the
    CIFAR stem: its keys (conv1..conv3, bn1..bn3, shortcut.0/1, linear) and 23.5M parameters."""
    model = create_model("robustbench:cifar10/Linf/Engstrom2019Robustness")
    keys = set(model.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv3.weight", "layer1.0.bn3.weight",
            "layer1.0.shortcut.0.weight", "layer1.0.shortcut.1.running_mean", "layer4.2.conv1.weight",
            "linear.weight"} <= keys  # fmt: skip
    assert "layer1.1.shortcut.0.weight" not in keys and model.linear.in_features == 2048
    assert 23.4e6 < sum(p.numel() for p in model.parameters()) < 23.6e6
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert model.normalization()["std"] == pytest.approx([0.2023, 0.1994, 0.201], abs=1e-6)  # the entry's
    assert model.normalization()["source"] == "entry"


def test_the_report_says_where_a_model_comes_from_and_that_it_resized() -> None:
    from gacd_core.report import model_origin
    from gacd_core.report_model import TeacherSection

    model = create_model("robustbench:cifar100/Linf/Rebuffi2021Fixing_R18_ddpm").eval()
    assert model_origin(model) == {
        "source": "robustbench:cifar100/Linf/Rebuffi2021Fixing_R18_ddpm",
        "input_size": 32,
        "licence": "Apache-2.0",
        "licence_note": model.provenance["licence_note"],
        "non_commercial": False,
    }
    with torch.no_grad():
        model(_images(1, 64))  # a job's 64-px images: resized to the entry's 32 inside the model
    section = TeacherSection.model_validate(model_origin(model))
    assert section.resized_from == 64 and section.input_size == 32
    assert model_origin(create_model("tiny_resnet")) == {}  # ours: no new keys in the report
    # a non-commercial licence (the table's one is Ding2020MMA, not covered) is flagged through the same path
    ding = zoo.lookup("robustbench:cifar10/Linf/Ding2020MMA")
    assert ding.non_commercial and ding.licence == "CC-BY-NC-SA-4.0"
    entry = zoo.lookup(PREACT_ENTRY).model_copy(update={"licence": ding.licence})
    flagged = library_mod.build_zoo_entry(entry, 10, CIFAR10_MEAN, CIFAR10_STD)
    assert model_origin(flagged)["non_commercial"] is True


def test_gacd_list_names_library_models_and_zoo_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gacd_core.cli import main

    assert main(["list", "--json"]) == 0
    tables = json.loads(capsys.readouterr().out)
    library = tables["library models (your weights file; pretrained=False)"]
    covered = tables["robustbench entries (download the entry's weights file, name the entry)"]
    missing = tables["robustbench entries not covered"]
    assert "timm:resnet18" in library and "torchvision:resnet50" in library
    assert len(covered) + len(missing) == len(zoo.entries()) and WRN_ENTRY in covered
    assert all(reason for reason in missing.values())
