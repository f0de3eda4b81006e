"""The committed RobustBench table (gacd_core/zoo/robustbench.json) and its reader.

Spot checks cite the RobustBench file that states each fact, at the commit the table was written from
(RB below: RobustBench/robustbench@78fcc9e48a07a861268f295a777b975f25155964).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from gacd_core import zoo
from gacd_core.zoo import COVERED_FAMILIES, ZooEntry, ZooEntryError, covered, entries, lookup

pytestmark = [pytest.mark.unit]

RB_COMMIT = "78fcc9e48a07a861268f295a777b975f25155964"
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))  # RB architectures/dm_wide_resnet.py
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))  # same file, CIFAR100_MEAN/STD
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # RB model_zoo/imagenet.py mu, sigma
WRN_FAMILIES = {"dm_wide_resnet", "wide_resnet"}


def _stats(e: ZooEntry) -> tuple:
    return (e.normalization.mean, e.normalization.std)


def test_table_loads_from_one_commit_without_torch() -> None:
    table = zoo.table()
    assert table.source_commit == RB_COMMIT
    assert {e.source_commit for e in entries()} == {RB_COMMIT}
    code = "import sys, gacd_core.zoo as z; z.entries(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_counts_per_dataset_and_family() -> None:
    # RB model_zoo/{cifar10,cifar100,imagenet}.py: the entries of each `linf` OrderedDict.
    per_dataset = Counter(e.dataset for e in entries())
    assert per_dataset == {"cifar10": 76, "cifar100": 38, "imagenet": 30}
    families = Counter((e.dataset, e.family) for e in entries())
    assert families["cifar10", "dm_wide_resnet"] == 20
    assert families["cifar10", "dm_preact_resnet"] == 4
    assert families["cifar100", "dm_wide_resnet"] == 9
    assert families["cifar100", "dm_preact_resnet"] == 2
    assert len(covered()) == 106


def test_names_are_unique_and_look_up_by_key() -> None:
    keys = [e.key for e in entries()]
    assert len(keys) == len(set(keys))
    for e in entries():
        assert lookup(e.key) is e
    assert lookup("cifar100/Linf/Gowal2020Uncovering").dataset == "cifar100"  # prefix optional
    assert lookup("robustbench:CIFAR10/linf/Standard").name == "Standard"  # dataset and threat case-free


def test_coverage_is_decided_by_family_and_stated_otherwise() -> None:
    for e in entries():
        if e.covered:
            assert e.family in COVERED_FAMILIES and e.not_covered_reason is None, e.key
        else:
            assert e.not_covered_reason and len(e.not_covered_reason) > 30, e.key
        if e.family == "other":
            assert not e.covered, e.key


@pytest.mark.parametrize("entry", [e for e in entries() if e.covered], ids=lambda e: e.key)
def test_covered_record_has_what_its_family_needs(entry: ZooEntry) -> None:
    a, n = entry.arch, entry.normalization
    assert a.num_classes == {"cifar10": 10, "cifar100": 100, "imagenet": 1000}[entry.dataset]
    assert n.mean is not None and n.std is not None and len(n.mean) == len(n.std) == 3
    assert all(s > 0 for s in n.std) and all(0 <= m < 1 for m in n.mean)
    if n.applied == "none":
        assert (n.mean, n.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    else:
        assert n.applied in ("model", "wrapper") and all(m > 0 for m in n.mean)
    side = 32 if entry.dataset.startswith("cifar") else entry.input_size[1]
    assert entry.input_size == (3, side, side) and side in (32, 224, 288)
    if entry.family in WRN_FAMILIES:
        assert a.depth is not None and a.width is not None and (a.depth - 4) % 6 == 0 and a.width > 0
        assert a.activation in ("relu", "swish")
    if entry.family == "dm_wide_resnet" or entry.family == "dm_preact_resnet":
        assert a.padding == 0 and a.activation_impl in ("Swish", "nn.SiLU") and a.activation == "swish"
    if entry.family == "wide_resnet":
        assert a.sub_block1 is not None and a.bias_last is True and a.activation == "relu"
    if entry.family == "dm_preact_resnet":
        assert (a.depth, a.width) == (18, 0)
    if entry.family == "preact_resnet":
        assert a.depth == 18 and a.shortcut_from in ("input", "activated") and a.final_bn is not None
    if entry.family == "resnet":
        assert (a.depth, a.block) in ((18, "basic"), (50, "bottleneck")) and a.stem == "cifar"
    if entry.family in ("torchvision", "timm"):
        assert a.library == entry.family and a.model_name
        assert entry.preprocessing.output_side == side
        assert entry.preprocessing.resize is None or entry.preprocessing.resize >= side
    else:
        assert entry.preprocessing.output_side is None  # CIFAR: 32x32 images as they are


def test_dm_entries_carry_the_statistics_of_their_dataset() -> None:
    # RB model_zoo/cifar10.py passes mean=CIFAR10_MEAN, std=CIFAR10_STD to every DM model, cifar100.py
    # the CIFAR-100 pair; the buffers are non-persistent, so only the table knows them.
    dm = [e for e in entries() if e.family in ("dm_wide_resnet", "dm_preact_resnet")]
    assert len(dm) == 35
    for e in dm:
        assert e.normalization.applied == "model"
        assert _stats(e) == (CIFAR10_STATS if e.dataset == "cifar10" else CIFAR100_STATS), e.key


def test_imagenet_preprocessing_presets() -> None:
    # RB robustbench/data.py PREPROCESSINGS: Res256Crop224 = Resize(256) + CenterCrop(224); the Bicubic
    # variant with bicubic interpolation; Crop288 = CenterCrop(288); Res224 = Resize([224, 224]).
    seen = {e.preprocessing.preset: e.preprocessing for e in entries() if e.preprocessing.declared}
    assert set(seen) == {"Res256Crop224", "BicubicRes256Crop224", "Crop288", "Res224"}
    assert (seen["Res256Crop224"].resize, seen["Res256Crop224"].crop, seen["Res256Crop224"].interpolation) == (
        256,
        224,
        "bilinear",
    )
    assert seen["BicubicRes256Crop224"].interpolation == "bicubic"
    assert (seen["Crop288"].resize, seen["Crop288"].crop) == (None, 288)
    assert (seen["Res224"].resize_mode, seen["Res224"].crop) == ("exact", None)
    for e in entries():
        assert e.preprocessing.declared == (e.preprocessing.preset is not None), e.key
        if e.dataset != "imagenet":
            assert not e.preprocessing.declared and e.preprocessing.resize is None


def test_licences_are_stated_or_explained() -> None:
    # RB LICENSE: Model Zoo weights MIT except a listed few.
    licences = Counter(e.licence for e in entries())
    assert set(licences) == {"MIT", "Apache-2.0", "CC-BY-NC-SA-4.0", None}
    unstated = [e for e in entries() if e.licence is None]
    assert [e.key for e in unstated] == ["robustbench:imagenet/Linf/Standard_R50"]
    assert all(e.licence_note for e in entries())
    assert [e.key for e in entries() if e.non_commercial] == ["robustbench:cifar10/Linf/Ding2020MMA"]
    for e in entries():
        google = e.name.startswith(("Gowal2020Uncovering", "Rebuffi2021Fixing", "Gowal2021Improving"))
        if e.dataset != "imagenet" and google:
            assert e.licence == "Apache-2.0", e.key
    assert lookup("robustbench:cifar10/Linf/Hendrycks2019Using").licence == "Apache-2.0"
    assert lookup("robustbench:cifar100/Linf/Hendrycks2019Using").licence == "MIT"  # LICENSE lists CIFAR-10 only
    assert lookup("robustbench:cifar10/Linf/Pang2020Boosting").licence == "Apache-2.0"


def test_unknown_entry_names_suggestions() -> None:
    with pytest.raises(ValueError, match="did you mean: robustbench:cifar10/Linf/Wang2023Better_WRN-28-10") as info:
        lookup("robustbench:cifar10/Linf/Wang2023Better_WRN-28-1")
    assert isinstance(info.value, ZooEntryError)
    assert info.value.suggestions[0] == "robustbench:cifar10/Linf/Wang2023Better_WRN-28-10"
    with pytest.raises(ZooEntryError) as info:
        lookup("robustbench:cifar10/Linf/Wang2023Better")
    assert info.value.suggestions[:2] == [
        "robustbench:cifar10/Linf/Wang2023Better_WRN-28-10",
        "robustbench:cifar10/Linf/Wang2023Better_WRN-70-16",
    ]
    with pytest.raises(ZooEntryError, match="exists as robustbench:cifar100/Linf/Bai2023Improving_trades"):
        lookup("robustbench:cifar10/Linf/Bai2023Improving_trades")
    with pytest.raises(ZooEntryError, match="malformed"):
        lookup("robustbench:Wang2023Better_WRN-28-10")
    with pytest.raises(ZooEntryError, match="dataset 'mnist'"):
        lookup("robustbench:mnist/Linf/Standard")
    with pytest.raises(ZooEntryError, match=r"threat model 'L2'.*Linf"):
        lookup("robustbench:cifar10/L2/Standard")


# --- facts read by hand, each from the file named -------------------------------------------------


def test_wang2023better_wrn_28_10() -> None:
    # RB model_zoo/cifar10.py: DMWideResNet(num_classes=10, depth=28, width=10, activation_fn=nn.SiLU,
    # mean=CIFAR10_MEAN, std=CIFAR10_STD); model_info/cifar10/Linf/Wang2023Better_WRN-28-10.json.
    e = lookup("robustbench:cifar10/Linf/Wang2023Better_WRN-28-10")
    assert (e.family, e.arch.depth, e.arch.width, e.arch.activation, e.arch.activation_impl) == (
        "dm_wide_resnet",
        28,
        10,
        "swish",
        "nn.SiLU",
    )
    assert _stats(e) == CIFAR10_STATS and e.normalization.applied == "model" and e.covered
    lb = e.leaderboard
    assert (lb.clean_acc, lb.autoattack_acc, lb.eps, lb.venue, lb.architecture) == (
        92.44,
        67.31,
        "8/255",
        "ICML 2023",
        "WideResNet-28-10",
    )
    assert lb.eps_value == pytest.approx(8 / 255)
    assert e.weights.ids == ("1-6MYKJdECDVGaWjj6GgqvaT95BGKhUvI",)


def test_spot_checks_cifar() -> None:
    # RB model_zoo/cifar100.py: DMWideResNet(num_classes=100, depth=70, width=16, activation_fn=nn.SiLU,
    # mean=CIFAR100_MEAN, std=CIFAR100_STD).
    e = lookup("robustbench:cifar100/Linf/Wang2023Better_WRN-70-16")
    assert (e.arch.depth, e.arch.width, e.arch.num_classes) == (70, 16, 100) and _stats(e) == CIFAR100_STATS
    # RB model_zoo/cifar10.py: Bartoldson2024 WRN-94-16 and WRN-82-8, nn.SiLU; Gowal2020 WRN-70-16 with Swish.
    assert (
        lookup("cifar10/Linf/Bartoldson2024Adversarial_WRN-94-16").arch.depth,
        lookup("cifar10/Linf/Bartoldson2024Adversarial_WRN-82-8").arch.width,
    ) == (94, 8)
    assert lookup("cifar10/Linf/Gowal2020Uncovering_70_16").arch.activation_impl == "Swish"
    # RB model_zoo/cifar10.py: DMPreActResNet(depth=18, width=0, activation_fn=Swish, CIFAR-10 stats).
    e = lookup("cifar10/Linf/Rebuffi2021Fixing_R18_ddpm")
    assert (e.family, e.arch.depth, e.arch.activation) == ("dm_preact_resnet", 18, "swish")
    # RB model_zoo/cifar10.py: WideResNet(34, 10, sub_block1=False): positional depth and num_classes.
    e = lookup("cifar10/Linf/Sehwag2021Proxy")
    assert (e.family, e.arch.depth, e.arch.width, e.arch.sub_block1) == ("wide_resnet", 34, 10, False)
    assert e.normalization.applied == "none"
    # RB model_zoo/cifar10.py: Carmon2019Unlabeled is WideResNet(depth=28, widen_factor=10, sub_block1=True).
    assert lookup("cifar10/Linf/Carmon2019Unlabeled").arch.sub_block1 is True
    # RB model_zoo/cifar10.py Hendrycks2019UsingNet.forward: x = 2x - 1, i.e. mean 0.5, std 0.5.
    assert _stats(lookup("cifar10/Linf/Hendrycks2019Using")) == ((0.5,) * 3, (0.5,) * 3)
    # RB model_zoo/cifar10.py Engstrom2019RobustnessNet: ResNet(Bottleneck, [3, 4, 6, 3]), std 0.2023...
    e = lookup("cifar10/Linf/Engstrom2019Robustness")
    assert (e.family, e.arch.depth, e.arch.block, e.normalization.std) == (
        "resnet",
        50,
        "bottleneck",
        (0.2023, 0.1994, 0.2010),
    )
    # RB architectures/resnet.py PreActBlock (shortcut of x) vs cifar100.py Rice2020OverfittingNet
    # (out_shortcut=True, bn_before_fc=True).
    a = lookup("cifar10/Linf/Andriushchenko2020Understanding").arch
    assert (a.shortcut_from, a.final_bn) == ("input", False)
    a = lookup("cifar100/Linf/Rice2020Overfitting").arch
    assert (a.shortcut_from, a.final_bn) == ("activated", True)
    # RB model_zoo/cifar10.py Ding2020MMANet.forward: per-image standardisation; LICENSE: CC BY-NC-SA 4.0.
    e = lookup("cifar10/Linf/Ding2020MMA")
    assert (e.family, e.covered, e.normalization.applied) == ("wide_resnet", False, "per_image")
    # RB model_zoo/cifar10.py: Chen2020AdversarialNet averages the softmax of three branches.
    e = lookup("cifar10/Linf/Chen2020Adversarial")
    assert not e.covered and "ensemble" in (e.not_covered_reason or "") and len(e.weights.ids) == 3


def test_spot_checks_imagenet() -> None:
    # RB model_zoo/imagenet.py: normalize_model(pt_models.resnet50(), mu, sigma), 'preprocessing': 'Crop288'.
    e = lookup("robustbench:imagenet/Linf/Wong2020Fast")
    assert (e.family, e.arch.model_name, e.normalization.applied) == ("torchvision", "resnet50", "wrapper")
    assert _stats(e) == IMAGENET_STATS and e.input_size == (3, 288, 288) and e.preprocessing.preset == "Crop288"
    # RB model_zoo/imagenet.py: timm swin_base_patch4_window7_224 in the wrapper, BicubicRes256Crop224.
    e = lookup("imagenet/Linf/Liu2023Comprehensive_Swin-B")
    assert (e.family, e.arch.model_name, e.preprocessing.preset) == (
        "timm",
        "swin_base_patch4_window7_224",
        "BicubicRes256Crop224",
    )
    # RB model_zoo/imagenet.py: pt_models.resnet50(width_per_group=64 * 2) with no normalize_model, and
    # utils.py load_model lists it among the files loaded without the wrapper's 'model.' prefix.
    e = lookup("imagenet/Linf/Chen2024Data_WRN_50_2")
    assert (e.arch.model_kwargs, e.normalization.applied) == ({"width_per_group": 128}, "none")
    # RB model_zoo/imagenet.py: Mo2022When_ViT-B is timm vit_base_patch16_224 with 'Res224'.
    e = lookup("imagenet/Linf/Mo2022When_ViT-B")
    assert (e.arch.model_name, e.preprocessing.resize, e.preprocessing.resize_mode) == (
        "vit_base_patch16_224",
        224,
        "exact",
    )
    # RB architectures/xcit.py registers the ImageNet XCiT-S12 with timm's xcit_small_12_p16_224 arguments
    # and no normalisation layer; timm's XCiT cfg (crop_pct 1.0, bicubic) gives its preprocessing.
    e = lookup("imagenet/Linf/Debenedetti2022Light_XCiT-S12")
    assert (e.covered, e.arch.model_name, e.normalization.applied) == (True, "xcit_small_12_p16_224", "none")
    assert (e.preprocessing.declared, e.preprocessing.resize, e.preprocessing.interpolation) == (False, 224, "bicubic")
    # RB architectures/convstem_models.py replaces the stem of timm models: not a plain timm model.
    assert not lookup("imagenet/Linf/Singh2023Revisiting_ConvNeXt-T-ConvStem").covered
    assert lookup("imagenet/Linf/Standard_R50").weights.host == "torchvision"
