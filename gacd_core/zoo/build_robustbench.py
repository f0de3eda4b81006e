"""Write ``robustbench.json`` from a RobustBench checkout and the facts below (maintainers only).

The table is ours: the architecture, normalisation, preprocessing and licence of each L-inf entry
were read by hand from RobustBench's model zoo (``robustbench/model_zoo/{cifar10,cifar100,
imagenet}.py``, ``robustbench/model_zoo/architectures/``, ``robustbench/data.py``,
``robustbench/utils.py``, ``LICENSE``) and are stated here in our own terms; this script only adds
the leaderboard numbers of ``model_info/<dataset>/Linf/<entry>.json`` and the weight file ids, and
checks that the entry names it was given are exactly the zoo's, in the zoo's order. RobustBench is
not imported (it is not a dependency); its files are read as text from a bare git directory.

Usage::

    python -m gacd_core.zoo.build_robustbench --git-dir /path/to/robustbench.git [--commit REV]

Refreshing for a newer RobustBench commit means re-reading the model-zoo files for new or changed
entries, updating the facts below, and re-running this script; it fails on any name it has no facts
for.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("robustbench.json")

# --- normalisation constants, as the model-zoo files state them -----------------------------------
C10 = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))  # dm_wide_resnet.CIFAR10_MEAN/STD
C10_ENGSTROM = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))  # Engstrom2019RobustnessNet
C100_DM = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))  # dm_wide_resnet.CIFAR100_MEAN/STD
C100_4DP = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))  # cifar100 Chen2020EfficientNet; xcit.py
C100_LONG = (
    (0.5070751592371323, 0.48654887331495095, 0.4409178433670343),
    (0.2673342858792401, 0.2564384629170883, 0.27615047132568404),
)  # cifar100 Wu2020AdversarialNet, Rice2020OverfittingNet
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # forward computes 2x - 1
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # imagenet.py mu, sigma
IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def norm(stats: tuple | None, applied: str, note: str | None = None) -> dict[str, Any]:
    mean, std = (list(stats[0]), list(stats[1])) if stats is not None else (None, None)
    return {"mean": mean, "std": std, "applied": applied, "note": note}


NONE = norm(IDENTITY, "none", "the model takes [0, 1] pixels as they are")
DM_NOTE = (
    "applied in forward() from buffers registered with persistent=False, so checkpoint files carry no "
    "mean/std: the entry decides them"
)


def inside(stats: tuple, note: str | None = None) -> dict[str, Any]:
    return norm(stats, "model", note)


def wrapper(stats: tuple = IMAGENET) -> dict[str, Any]:
    return norm(
        stats,
        "wrapper",
        "RobustBench wraps the model in a normalisation layer (keys normalize.mean/std, model.<...>); "
        "the checkpoint holds the bare model's keys",
    )


UNKNOWN = norm(None, "unknown", "not determined: custom architecture, not read further")

# --- families -------------------------------------------------------------------------------------


def dm(depth: int, width: int, act: str, stats: tuple) -> dict[str, Any]:
    return {
        "family": "dm_wide_resnet",
        "arch": {
            "constructor": "DMWideResNet",
            "depth": depth,
            "width": width,
            "activation": "swish" if act in ("Swish", "nn.SiLU") else "relu",
            "activation_impl": act,
            "padding": 0,
        },
        "normalization": inside(stats, DM_NOTE),
    }


def dmp(act: str, stats: tuple) -> dict[str, Any]:
    return {
        "family": "dm_preact_resnet",
        "arch": {
            "constructor": "DMPreActResNet",
            "depth": 18,
            "width": 0,
            "activation": "swish" if act in ("Swish", "nn.SiLU") else "relu",
            "activation_impl": act,
            "padding": 0,
        },
        "normalization": inside(stats, DM_NOTE),
    }


def wrn(depth: int, width: int, sub_block1: bool, n: dict | None = None, constructor: str = "WideResNet") -> dict:
    return {
        "family": "wide_resnet",
        "arch": {
            "constructor": constructor,
            "depth": depth,
            "width": width,
            "activation": "relu",
            "sub_block1": sub_block1,
            "bias_last": True,
        },
        "normalization": n or NONE,
    }


def preact(shortcut_from: str, final_bn: bool, n: dict | None = None, constructor: str = "PreActResNet") -> dict:
    """shortcut_from: which tensor a projection shortcut reads, 'input' (the block's raw input) or
    'activated' (relu(bn1(x)))."""
    return {
        "family": "preact_resnet",
        "arch": {
            "constructor": constructor,
            "depth": 18,
            "block": "basic",
            "activation": "relu",
            "shortcut_from": shortcut_from,
            "final_bn": final_bn,
        },
        "normalization": n or NONE,
    }


def resnet(depth: int, n: dict | None = None, constructor: str = "ResNet") -> dict:
    return {
        "family": "resnet",
        "arch": {
            "constructor": constructor,
            "depth": depth,
            "block": "basic" if depth in (18, 34) else "bottleneck",
            "activation": "relu",
            "stem": "cifar",
        },
        "normalization": n or NONE,
    }


def tv(model: str, n: dict, kwargs: dict | None = None) -> dict:
    return {
        "family": "torchvision",
        "arch": {
            "constructor": f"torchvision.models.{model}",
            "library": "torchvision",
            "model_name": model,
            "model_kwargs": kwargs or {},
            "activation": "relu",
        },
        "normalization": n,
    }


def tm(model: str | None, n: dict, kwargs: dict | None = None, constructor: str | None = None) -> dict:
    return {
        "family": "timm",
        "arch": {
            "constructor": constructor or f"timm.create_model('{model}')",
            "library": "timm",
            "model_name": model,
            "model_kwargs": kwargs or {},
        },
        "normalization": n,
    }


def other(constructor: str, reason: str, n: dict = UNKNOWN, **arch: Any) -> dict:
    return {"family": "other", "arch": {"constructor": constructor, **arch}, "normalization": n, "reason": reason}


def blocked(spec: dict, reason: str) -> dict:
    """A record of a buildable family that still cannot be used as the table describes it."""
    return {**spec, "reason": reason}


# --- recurring reasons ----------------------------------------------------------------------------
ENSEMBLE_SOFTMAX = (
    "ensemble: averages the softmax outputs of {n} networks (one weight file each), not logits of one model"
)
XCIT_CIFAR = (
    "timm XCiT whose patch embedding is altered after construction (strides of its first convolutions set "
    "to 1, patch size 16 -> 4: adapt_model_patches in architectures/xcit.py), then wrapped in a normalisation "
    "layer; it exists only as the timm name '{timm}' that RobustBench registers, not in timm itself"
)
MEANSPARSE = (
    "MeanSparse: extra per-channel sparsification operators inserted after the layers of {base} (architectures/{file})"
)
COMPOSITE = (
    "composite classifier (architectures/comp_model.py): mixes the outputs of an accurate and a robust "
    "network through a learned policy network with its own BatchNorm; three weight files"
)
MIXEDNUTS = (
    "MixedNUTS (architectures/comp_model.py): a non-linear mixture of the outputs of a standard and a "
    "robust classifier, with per-dataset constants from architectures/optimal_spca.yaml"
)

S, SILU = "Swish", "nn.SiLU"

# --- CIFAR-10 L-inf, in the zoo's order -----------------------------------------------------------
CIFAR10: dict[str, dict] = {
    "Andriushchenko2020Understanding": preact("input", False)
    | {"checkpoint_note": "the file holds {'last': ..., 'best': ...}; RobustBench loads 'last'"},
    "Carmon2019Unlabeled": wrn(28, 10, True),
    "Sehwag2020Hydra": wrn(28, 10, True),
    "Wang2020Improving": wrn(28, 10, True),
    "Hendrycks2019Using": wrn(28, 10, False, inside(HALF, "forward() computes 2x - 1"), "Hendrycks2019UsingNet"),
    "Rice2020Overfitting": wrn(34, 20, False, inside(C10), "Rice2020OverfittingNet"),
    "Zhang2019Theoretically": wrn(34, 10, True),
    "Engstrom2019Robustness": resnet(50, inside(C10_ENGSTROM), "Engstrom2019RobustnessNet"),
    "Chen2020Adversarial": other(
        "Chen2020AdversarialNet",
        ENSEMBLE_SOFTMAX.format(n=3) + "; each branch is a ResNet-50 with a custom pre-activated bottleneck "
        "(BottleneckChen2020AdversarialNet)",
        inside(IMAGENET),
    ),
    "Huang2020Self": wrn(34, 10, True),
    "Pang2020Boosting": other(
        "BoostingWideResNet",
        "TRADES WRN-34-20 (sub_block1) with a hypersphere head: forward() L2-normalises the pooled features "
        "and the rows of the bias-free fc weight before the product",
        inside(C10),
        depth=34,
        width=20,
    ),
    "Wong2020Fast": preact("input", False, inside(C10), "Wong2020FastNet"),
    "Ding2020MMA": blocked(
        wrn(
            28,
            4,
            False,
            norm(
                None,
                "per_image",
                "forward() standardises each image by its own mean and std (std floored at 1/sqrt(C*H*W))",
            ),
            "Ding2020MMANet",
        ),
        "normalisation is per-image standardisation computed in forward(), not a fixed mean/std a "
        "Normalize layer can hold",
    ),
    "Zhang2019You": wrn(34, 10, True),
    "Zhang2020Attacks": wrn(34, 10, True),
    "Wu2020Adversarial_extra": wrn(28, 10, True),
    "Wu2020Adversarial": wrn(34, 10, False),
    "Gowal2020Uncovering_70_16": dm(70, 16, S, C10),
    "Gowal2020Uncovering_70_16_extra": dm(70, 16, S, C10),
    "Gowal2020Uncovering_34_20": dm(34, 20, S, C10),
    "Gowal2020Uncovering_28_10_extra": dm(28, 10, S, C10),
    "Sehwag2021Proxy": wrn(34, 10, False),
    "Sehwag2021Proxy_R18": resnet(18, constructor="ResNet18"),
    "Sehwag2021Proxy_ResNest152": other(
        "ResNest152", "ResNeSt-152 (split-attention blocks, radix 4, deep stem; architectures/resnest.py)", NONE
    ),
    "Sitawarin2020Improving": wrn(34, 10, True),
    "Chen2020Efficient": wrn(34, 10, True, inside(C10), "Chen2020EfficientNet"),
    "Cui2020Learnable_34_20": wrn(34, 20, True),
    "Cui2020Learnable_34_10": wrn(34, 10, True),
    "Zhang2020Geometry": wrn(28, 10, True),
    "Rebuffi2021Fixing_28_10_cutmix_ddpm": dm(28, 10, S, C10),
    "Rebuffi2021Fixing_106_16_cutmix_ddpm": dm(106, 16, S, C10),
    "Rebuffi2021Fixing_70_16_cutmix_ddpm": dm(70, 16, S, C10),
    "Rebuffi2021Fixing_70_16_cutmix_extra": dm(70, 16, S, C10),
    "Sridhar2021Robust": wrn(28, 10, True),
    "Sridhar2021Robust_34_15": wrn(34, 15, True),
    "Rebuffi2021Fixing_R18_ddpm": dmp(S, C10),
    "Rade2021Helper_R18_extra": dmp(S, C10),
    "Rade2021Helper_R18_ddpm": dmp(S, C10),
    "Rade2021Helper_extra": dm(34, 10, S, C10),
    "Rade2021Helper_ddpm": dm(28, 10, S, C10),
    "Huang2021Exploring": other(
        "RobustWideResNet",
        "WideResNet with per-stage widths 320/640/512 and 5 blocks per stage (channel_configs "
        "[16, 320, 640, 512]), a stem named stem_conv and stages in a ModuleList: no depth/width pair describes it",
        NONE,
    ),
    "Huang2021Exploring_ema": other(
        "RobustWideResNet",
        "WideResNet with per-stage widths 320/640/512 and 5 blocks per stage (channel_configs "
        "[16, 320, 640, 512]), a stem named stem_conv and stages in a ModuleList: no depth/width pair describes it",
        NONE,
    ),
    "Addepalli2021Towards_RN18": resnet(18, constructor="ResNet18"),
    "Addepalli2021Towards_WRN34": wrn(34, 10, True),
    "Gowal2021Improving_70_16_ddpm_100m": dm(70, 16, S, C10),
    "Dai2021Parameterizing": other(
        "pssilu_wrn_28_10",
        "WRN-28-10 with a learnable parametric activation (PSSiLU: parameters alpha and beta shared by the "
        "network; architectures/paf_wide_resnet.py)",
        NONE,
    ),
    "Gowal2021Improving_28_10_ddpm_100m": dm(28, 10, S, C10),
    "Gowal2021Improving_R18_ddpm_100m": dmp(S, C10),
    "Chen2021LTD_WRN34_10": wrn(34, 10, False),
    "Chen2021LTD_WRN34_20": wrn(34, 20, False),
    "Standard": wrn(28, 10, False),
    "Kang2021Stable": other(
        "rebuffi_sodef",
        "DM WRN-70-16 whose logits layer is replaced by an orthogonal MLP and a neural-ODE block (SODEF; "
        "architectures/sodef_layers.py)",
        inside(C10, DM_NOTE),
    ),
    "Jia2022LAS-AT_34_10": wrn(34, 10, False),
    "Jia2022LAS-AT_70_16": wrn(70, 16, False),
    "Pang2022Robustness_WRN28_10": dm(28, 10, S, C10),
    "Pang2022Robustness_WRN70_16": dm(70, 16, S, C10),
    "Addepalli2022Efficient_RN18": resnet(18, constructor="ResNet18"),
    "Addepalli2022Efficient_WRN_34_10": wrn(34, 10, False),
    "Debenedetti2022Light_XCiT-S12": other(
        "timm XCiT-S12 (patched)",
        XCIT_CIFAR.format(timm="debenedetti2022light_xcit_s12_cifar10_linf"),
        wrapper(C10),
    ),
    "Debenedetti2022Light_XCiT-M12": other(
        "timm XCiT-M12 (patched)",
        XCIT_CIFAR.format(timm="debenedetti2022light_xcit_m12_cifar10_linf"),
        wrapper(C10),
    ),
    "Debenedetti2022Light_XCiT-L12": other(
        "timm XCiT-L12 (patched)",
        XCIT_CIFAR.format(timm="debenedetti2022light_xcit_l12_cifar10_linf"),
        wrapper(C10),
    ),
    "Huang2022Revisiting_WRN-A4": other(
        "robust_resnet.get_model('WRN-A4')",
        "WRN-A4: pre-activation network with per-stage depths 27/28/13 and width multipliers 10/14/6, SiLU "
        "(architectures/robust_resnet.py)",
        inside(C10, "mu/sigma buffers applied in forward() (pre_process=True)"),
    ),
    "Wang2023Better_WRN-28-10": dm(28, 10, SILU, C10),
    "Wang2023Better_WRN-70-16": dm(70, 16, SILU, C10),
    "Xu2023Exploring_WRN-28-10": dm(28, 10, SILU, C10),
    "Cui2023Decoupled_WRN-28-10": dm(28, 10, SILU, C10),
    "Cui2023Decoupled_WRN-34-10": wrn(34, 10, False),
    "Bai2023Improving_edm": other("get_composite_model('edm', 'cifar10')", COMPOSITE),
    "Peng2023Robust": other(
        "robustarch get_model('ra_wrn70_16')",
        "RaWideResNet-70-16 (architectures/robustarch_wide_resnet.py): stage widths 216/432/864, "
        "squeeze-and-excitation, SiLU, 96-channel stem",
        inside(C10),
    ),
    "Bai2024MixedNUTS": other("get_nonlin_mixed_classifier('cifar10')", MIXEDNUTS),
    "Chen2024Data_WRN_34_10": wrn(34, 10, False),
    "Chen2024Data_WRN_34_20": wrn(34, 20, False),
    "Amini2024MeanSparse_Ra_WRN_70_16": other(
        "get_sparse_model('ra_wrn_70_16', 'cifar-10-Linf')",
        MEANSPARSE.format(base="RaWideResNet-70-16", file="sparsified_model.py, Meansparse_ra_wrn_70_16.py"),
        inside(C10),
    ),
    "Amini2024MeanSparse_S-WRN-94-16": other(
        "get_sparse_model('wrn_94_16', 'cifar-10-Linf')",
        MEANSPARSE.format(base="a DM WRN-94-16 (SiLU)", file="Meansparse_wrn_94_16.py"),
        inside(C10),
    ),
    "Bartoldson2024Adversarial_WRN-94-16": dm(94, 16, SILU, C10),
    "Bartoldson2024Adversarial_WRN-82-8": dm(82, 8, SILU, C10),
}

# --- CIFAR-100 L-inf ------------------------------------------------------------------------------
CIFAR100: dict[str, dict] = {
    "Gowal2020Uncovering": dm(70, 16, S, C100_DM),
    "Gowal2020Uncovering_extra": dm(70, 16, S, C100_DM),
    "Cui2020Learnable_34_20_LBGAT6": wrn(34, 20, True),
    "Cui2020Learnable_34_10_LBGAT0": wrn(34, 10, True),
    "Cui2020Learnable_34_10_LBGAT6": wrn(34, 10, True),
    "Chen2020Efficient": wrn(34, 10, True, inside(C100_4DP), "Chen2020EfficientNet"),
    "Wu2020Adversarial": wrn(34, 10, False, inside(C100_LONG), "Wu2020AdversarialNet"),
    "Sehwag2021Proxy": wrn(34, 10, False),
    "Sitawarin2020Improving": wrn(34, 10, True),
    "Hendrycks2019Using": wrn(28, 10, False, inside(HALF, "forward() computes 2x - 1"), "Hendrycks2019UsingNet"),
    "Rice2020Overfitting": preact("activated", True, inside(C100_LONG), "Rice2020OverfittingNet"),
    "Rebuffi2021Fixing_70_16_cutmix_ddpm": dm(70, 16, S, C100_DM),
    "Rebuffi2021Fixing_28_10_cutmix_ddpm": dm(28, 10, S, C100_DM),
    "Rebuffi2021Fixing_R18_ddpm": dmp(S, C100_DM),
    "Rade2021Helper_R18_ddpm": dmp(S, C100_DM),
    "Addepalli2021Towards_PARN18": preact("activated", True),
    "Addepalli2021Towards_WRN34": wrn(34, 10, True),
    "Chen2021LTD_WRN34_10": wrn(34, 10, True),
    "Pang2022Robustness_WRN28_10": dm(28, 10, S, C100_DM),
    "Pang2022Robustness_WRN70_16": dm(70, 16, S, C100_DM),
    "Jia2022LAS-AT_34_10": wrn(34, 10, True),
    "Jia2022LAS-AT_34_20": wrn(34, 20, False),
    "Addepalli2022Efficient_RN18": resnet(18),
    "Addepalli2022Efficient_WRN_34_10": wrn(34, 10, False),
    "Debenedetti2022Light_XCiT-S12": other(
        "timm XCiT-S12 (patched)",
        XCIT_CIFAR.format(timm="debenedetti2022light_xcit_s12_cifar100_linf"),
        wrapper(C100_4DP),
    ),
    "Debenedetti2022Light_XCiT-M12": other(
        "timm XCiT-M12 (patched)",
        XCIT_CIFAR.format(timm="debenedetti2022light_xcit_m12_cifar100_linf"),
        wrapper(C100_4DP),
    ),
    "Debenedetti2022Light_XCiT-L12": other(
        "timm XCiT-L12 (patched)",
        XCIT_CIFAR.format(timm="debenedetti2022light_xcit_l12_cifar100_linf"),
        wrapper(C100_4DP),
    ),
    "Cui2020Learnable_34_10_LBGAT9_eps_8_255": wrn(34, 10, False),
    "Wang2023Better_WRN-28-10": dm(28, 10, SILU, C100_DM),
    "Wang2023Better_WRN-70-16": dm(70, 16, SILU, C100_DM),
    "Bai2023Improving_edm": other("get_composite_model('edm')", COMPOSITE),
    "Bai2023Improving_trades": other("get_composite_model('trades')", COMPOSITE),
    "Cui2023Decoupled_WRN-28-10": dm(28, 10, SILU, C100_DM),
    "Cui2023Decoupled_WRN-34-10": wrn(34, 10, False),
    "Cui2023Decoupled_WRN-34-10_autoaug": wrn(34, 10, False),
    "Bai2024MixedNUTS": other("get_nonlin_mixed_classifier('cifar100')", MIXEDNUTS),
    "Chen2024Data_WRN_34_10": wrn(34, 10, False),
    "Amini2024MeanSparse_S-WRN-70-16": other(
        "get_sparse_model('wrn_70_16', 'cifar-100-Linf')",
        MEANSPARSE.format(base="a DM WRN-70-16 (SiLU)", file="Meansparse_wrn_70_16.py"),
        inside(C100_DM),
    ),
}

# --- ImageNet L-inf -------------------------------------------------------------------------------
SWIN_NOTE = "RobustBench passes the file through timm's swin checkpoint_filter_fn (older timm key layout)"
XCIT_IN_NOTE = (
    "RobustBench loads it through timm.create_model('{timm}') registered in architectures/xcit.py, "
    "which returns the bare Xcit: no normalisation layer"
)
CONVSTEM = "timm {base} whose stem is replaced by a convolutional stem (ConvStem, architectures/convstem_models.py)"

IMAGENET_ENTRIES: dict[str, dict] = {
    "Wong2020Fast": tv("resnet50", wrapper()) | {"preprocessing": "Crop288", "input": 288},
    "Engstrom2019Robustness": tv("resnet50", wrapper()) | {"preprocessing": "Res256Crop224"},
    "Salman2020Do_R50": tv("resnet50", wrapper()) | {"preprocessing": "Res256Crop224"},
    "Salman2020Do_R18": tv("resnet18", wrapper()) | {"preprocessing": "Res256Crop224"},
    "Salman2020Do_50_2": tv("wide_resnet50_2", wrapper()) | {"preprocessing": "Res256Crop224"},
    "Standard_R50": tv("resnet50", wrapper())
    | {
        "preprocessing": "Res256Crop224",
        "checkpoint_note": "no RobustBench file: the weights are torchvision's pretrained ResNet-50 (pretrained=True)",
    },
    "Debenedetti2022Light_XCiT-S12": tm(
        "xcit_small_12_p16_224",
        norm(IDENTITY, "none", XCIT_IN_NOTE.format(timm="debenedetti2022light_xcit_s12_imagenet_linf")),
        {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 8, "eta": 1.0, "tokens_norm": True},
        constructor="timm xcit._create_xcit(**model_kwargs)",
    )
    | {"preprocessing": None, "derived": "timm_xcit_cfg"},
    "Debenedetti2022Light_XCiT-M12": blocked(
        tm(
            None,
            norm(IDENTITY, "none", XCIT_IN_NOTE.format(timm="debenedetti2022light_xcit_m12_imagenet_linf")),
            {"patch_size": 16, "embed_dim": 512, "depth": 12, "num_heads": 8, "eta": 1.0, "tokens_norm": True},
            constructor="timm xcit._create_xcit(**model_kwargs)",
        ),
        "timm's Xcit class at a configuration no timm model name registers (embed 512, depth 12; timm's "
        "xcit_medium_24 has depth 24 and eta 1e-5): not reachable through a name allow-list",
    )
    | {"preprocessing": None, "derived": "timm_xcit_cfg"},
    "Debenedetti2022Light_XCiT-L12": blocked(
        tm(
            None,
            norm(IDENTITY, "none", XCIT_IN_NOTE.format(timm="debenedetti2022light_xcit_l12_imagenet_linf")),
            {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 16, "eta": 1.0, "tokens_norm": True},
            constructor="timm xcit._create_xcit(**model_kwargs)",
        ),
        "timm's Xcit class at a configuration no timm model name registers (embed 768, depth 12; timm's "
        "xcit_large_24 has depth 24 and eta 1e-5): not reachable through a name allow-list",
    )
    | {"preprocessing": None, "derived": "timm_xcit_cfg"},
    "Singh2023Revisiting_ViT-S-ConvStem": other(
        "get_convstem_models('vit_s_cvst')",
        CONVSTEM.format(base="deit_small_patch16_224 (patch embedding)"),
        wrapper(),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
    "Singh2023Revisiting_ViT-B-ConvStem": other(
        "get_convstem_models('vit_b_cvst')",
        CONVSTEM.format(base="vit_base_patch16_224 (patch embedding)"),
        norm(IDENTITY, "none", "no normalisation layer (RobustBench loads it without its wrapper)"),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
    "Singh2023Revisiting_ConvNeXt-T-ConvStem": other(
        "get_convstem_models('convnext_t_cvst')",
        CONVSTEM.format(base="convnext_tiny"),
        norm(IDENTITY, "none", "no normalisation layer (RobustBench loads it without its wrapper)"),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
    "Singh2023Revisiting_ConvNeXt-S-ConvStem": other(
        "get_convstem_models('convnext_s_cvst')",
        CONVSTEM.format(base="convnext_small"),
        norm(IDENTITY, "none", "no normalisation layer (RobustBench loads it without its wrapper)"),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
    "Singh2023Revisiting_ConvNeXt-B-ConvStem": other(
        "get_convstem_models('convnext_b_cvst')",
        CONVSTEM.format(base="convnext_base"),
        norm(IDENTITY, "none", "no normalisation layer (RobustBench loads it without its wrapper)"),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
    "Singh2023Revisiting_ConvNeXt-L-ConvStem": other(
        "get_convstem_models('convnext_l_cvst')",
        CONVSTEM.format(base="convnext_large"),
        norm(IDENTITY, "none", "no normalisation layer (RobustBench loads it without its wrapper)"),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
    "Liu2023Comprehensive_ConvNeXt-B": tm("convnext_base", wrapper()) | {"preprocessing": "BicubicRes256Crop224"},
    "Liu2023Comprehensive_ConvNeXt-L": tm("convnext_large", wrapper()) | {"preprocessing": "BicubicRes256Crop224"},
    "Liu2023Comprehensive_Swin-B": tm("swin_base_patch4_window7_224", wrapper())
    | {"preprocessing": "BicubicRes256Crop224", "checkpoint_note": SWIN_NOTE},
    "Liu2023Comprehensive_Swin-L": tm("swin_large_patch4_window7_224", wrapper())
    | {"preprocessing": "BicubicRes256Crop224", "checkpoint_note": SWIN_NOTE},
    "Peng2023Robust": other(
        "robustarch get_model('ra_wrn101_2')",
        "RaWideResNet-101-2 (architectures/robustarch_wide_resnet.py): configurable bottleneck network with "
        "squeeze-and-excitation, SiLU and a patchified 96-channel stem",
        inside(IMAGENET),
    )
    | {"preprocessing": "Res256Crop224"},
    "Bai2024MixedNUTS": other("get_nonlin_mixed_classifier('imagenet')", MIXEDNUTS)
    | {"preprocessing": "BicubicRes256Crop224"},
    "Chen2024Data_WRN_50_2": tv(
        "resnet50",
        norm(IDENTITY, "none", "torchvision resnet50 built without RobustBench's normalisation wrapper"),
        {"width_per_group": 128},
    )
    | {
        "preprocessing": "Res256Crop224",
        "checkpoint_note": "resnet50(width_per_group=128) has torchvision's wide_resnet50_2 layout",
    },
    "Mo2022When_Swin-B": tm("swin_base_patch4_window7_224", wrapper())
    | {"preprocessing": "Res224", "checkpoint_note": SWIN_NOTE},
    "Mo2022When_ViT-B": tm("vit_base_patch16_224", wrapper()) | {"preprocessing": "Res224"},
    "Amini2024MeanSparse_ConvNeXt-L": other(
        "get_sparse_model(convnext_large, 'imagenet-Linf')",
        MEANSPARSE.format(base="timm convnext_large", file="sparsified_model.py"),
        wrapper(),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
    "Amini2024MeanSparse_Swin-L": other(
        "get_sparse_model('swin-l', 'imagenet-Linf')",
        MEANSPARSE.format(base="Swin-L", file="Meansparse_swin_L.py"),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
    "RodriguezMunoz2024Characterizing_Swin-B": tm("swin_base_patch4_window7_224", wrapper())
    | {"preprocessing": "BicubicRes256Crop224", "checkpoint_note": SWIN_NOTE},
    "RodriguezMunoz2024Characterizing_Swin-L": tm("swin_large_patch4_window7_224", wrapper())
    | {"preprocessing": "BicubicRes256Crop224", "checkpoint_note": SWIN_NOTE},
    "Xu2024MIMIR_Swin-B": other(
        "build_swin_base",
        "its own SwinTransformer implementation (architectures/MIMIR_swin_transformer.py), not timm's module "
        "layout (embed 128, depths 2/2/18/2, window 7)",
        norm(IDENTITY, "none", "no normalisation layer"),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
    "Xu2024MIMIR_Swin-L": other(
        "build_swin_large",
        "its own SwinTransformer implementation (architectures/MIMIR_swin_transformer.py), not timm's module "
        "layout (embed 192, depths 2/2/18/2, window 14 at 224 px)",
        norm(IDENTITY, "none", "no normalisation layer"),
    )
    | {"preprocessing": "BicubicRes256Crop224"},
}

# Preset names as robustbench/data.py PREPROCESSINGS defines them (torchvision Resize's default
# interpolation is bilinear).
PRESETS: dict[str | None, dict[str, Any]] = {
    "Res256Crop224": {"resize": 256, "resize_mode": "shorter_side", "crop": 224, "interpolation": "bilinear"},
    "BicubicRes256Crop224": {"resize": 256, "resize_mode": "shorter_side", "crop": 224, "interpolation": "bicubic"},
    "Crop288": {"resize": None, "resize_mode": None, "crop": 288, "interpolation": None},
    "Res224": {"resize": 224, "resize_mode": "exact", "crop": None, "interpolation": "bilinear"},
}
TIMM_XCIT_CFG = {  # timm xcit._cfg (crop_pct 1.0, bicubic, 224) through robustbench data.get_timm_model_preprocessing
    "resize": 224,
    "resize_mode": "shorter_side",
    "crop": 224,
    "interpolation": "bicubic",
}

COVERED_FAMILIES = {
    "dm_wide_resnet",
    "dm_preact_resnet",
    "wide_resnet",
    "preact_resnet",
    "resnet",
    "torchvision",
    "timm",
}

# --- licences: robustbench/LICENSE ---------------------------------------------------------------
LICENCE_DEFAULT = (
    "MIT",
    "RobustBench LICENSE: Model Zoo weights are MIT unless listed otherwise; this entry is not listed",
)
LICENCE_LISTED: list[tuple[str, str, str, str]] = [
    # (dataset or '*', name prefix, licence, copyright as LICENSE states it)
    ("cifar10", "Hendrycks2019Using", "Apache-2.0", "Copyright (c) 2019, Dan Hendrycks"),
    ("cifar10", "Pang2020Boosting", "Apache-2.0", "Copyright (c) 2020, Tianyu Pang, Xiao Yang"),
    ("*cifar", "Gowal2020Uncovering", "Apache-2.0", "Copyright (c) 2021, Google"),
    ("cifar10", "Ding2020MMA", "CC-BY-NC-SA-4.0", "Copyright (c) 2020, Borealis AI"),
    ("*cifar", "Rebuffi2021Fixing", "Apache-2.0", "Copyright (c) 2021, Google"),
    ("*cifar", "Gowal2021Improving", "Apache-2.0", "Copyright (c) 2021, Google"),
]
EXTRA_LICENCE_NOTES = {
    ("cifar100", "Hendrycks2019Using"): " (LICENSE lists only the CIFAR-10 Hendrycks2019Using as Apache-2.0)",
    ("cifar100", "Bai2023Improving_trades"): (
        "; one of its three files is the file of cifar100/Gowal2020Uncovering_extra (same Google Drive id), "
        "which LICENSE lists as Apache-2.0, Copyright (c) 2021, Google"
    ),
    ("cifar10", "Bai2023Improving_edm"): "; one of its three files is the file of cifar10/Wang2023Better_WRN-70-16",
    ("cifar100", "Bai2023Improving_edm"): "; one of its three files is the file of cifar100/Wang2023Better_WRN-70-16",
    (
        "cifar10",
        "Bai2024MixedNUTS",
    ): "; its files are shared with cifar10/Bai2023Improving_edm and cifar10/Peng2023Robust",
    ("cifar100", "Bai2024MixedNUTS"): "; one of its files is the file of cifar100/Wang2023Better_WRN-70-16",
    ("imagenet", "Bai2024MixedNUTS"): "; one of its files is the file of imagenet/Liu2023Comprehensive_Swin-L",
}


def licence_of(dataset: str, name: str) -> tuple[str | None, str]:
    if dataset == "imagenet" and name == "Standard_R50":
        return None, (
            "RobustBench hosts no file for this entry: it loads torchvision's pretrained ResNet-50, whose weights "
            "terms are torchvision's, not RobustBench's; not read here, so not stated"
        )
    for ds, prefix, lic, copyright_ in LICENCE_LISTED:
        ds_ok = ds == dataset or (ds == "*cifar" and dataset in ("cifar10", "cifar100"))
        if ds_ok and name.startswith(prefix):
            return lic, f"RobustBench LICENSE lists {prefix}{'*' if ds.startswith('*') else ''} as {lic}; {copyright_}"
    lic, note = LICENCE_DEFAULT
    return lic, note + EXTRA_LICENCE_NOTES.get((dataset, name), "")


# --- reading the checkout -------------------------------------------------------------------------


def git_show(git_dir: str, commit: str, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
    ).stdout


def zoo_linf(source: str) -> dict[str, list[str]]:
    """Entry name -> weight ids, in order, of the ``linf = OrderedDict(...)`` block of a model-zoo file."""
    start = source.index("linf = OrderedDict")
    end = min(i for i in (source.find("\nl2 = ", start), source.find("\ncommon_corruptions", start)) if i > 0)
    parts = re.split(r"\n\s+\('([^']+)', \{", source[start:end])[1:]
    out: dict[str, list[str]] = {}
    for name, body in zip(parts[::2], parts[1::2]):
        m = re.search(r"'gdrive_id':\s*(\[[^\]]*\]|'[^']*'|\"[^\"]*\"|None)", body)
        raw = m.group(1) if m else "None"
        out[name] = re.findall(r"['\"]([0-9A-Za-z_-]{20,})['\"]", raw)
    return out


def eps_value(text: str) -> float:
    return float(Fraction(text)) if "/" in text else float(text)


def leaderboard(info: dict[str, Any]) -> dict[str, Any]:
    def num(key: str) -> float | None:
        value = info.get(key)
        return float(value) if value not in (None, "") else None

    return {
        "clean_acc": float(info["clean_acc"]),
        "autoattack_acc": float(info["autoattack_acc"]),
        "reported_acc": num("reported"),
        "external_acc": num("external"),
        "eps": info["eps"],
        "eps_value": eps_value(info["eps"]),
        "architecture": info["architecture"],
        "paper": info["name"],
        "authors": info["authors"],
        "link": info["link"],
        "venue": info["venue"],
        "additional_data": bool(info["additional_data"]),
        "number_forward_passes": int(info["number_forward_passes"]),
        "footnote": info.get("footnote") or None,
        "unreliable": info.get("unreliable"),
        "json_dataset": info["dataset"],
    }


def record(
    dataset: str, name: str, spec: dict, ids: list[str], info: dict, commit: str, xcit_urls: dict[str, str]
) -> dict[str, Any]:
    num_classes = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}[dataset]
    arch = dict(spec["arch"], num_classes=num_classes)
    if dataset == "imagenet":
        side = spec.get("input", 224)
        preset = spec.get("preprocessing")
        if spec.get("derived") == "timm_xcit_cfg":
            pre = {
                "preset": None,
                "declared": False,
                **TIMM_XCIT_CFG,
                "note": "no preset declared; RobustBench derives it from timm's XCiT default cfg (crop_pct 1.0)",
            }
        else:
            pre = {"preset": preset, "declared": True, **PRESETS[preset], "note": None}
    else:
        side = 32
        pre = {
            "preset": None,
            "declared": False,
            "resize": None,
            "resize_mode": None,
            "crop": None,
            "interpolation": None,
            "note": "none: 32x32 test images as they are (ToTensor)",
        }
    reason = spec.get("reason")
    family = spec["family"]
    covered = family in COVERED_FAMILIES and reason is None
    lic, lic_note = licence_of(dataset, name)
    if ids:
        weights = {"host": "google_drive", "ids": ids, "url": None, "note": None}
    elif name == "Standard_R50":
        weights = {
            "host": "torchvision",
            "ids": [],
            "url": None,
            "note": "torchvision's pretrained ResNet-50 (pretrained=True)",
        }
    else:  # the Debenedetti2022Light XCiTs, loaded through the timm names architectures/xcit.py registers
        timm_name = f"{name.lower().replace('-', '_')}_{dataset}_linf"
        weights = {
            "host": "github_release",
            "ids": [],
            "url": xcit_urls[timm_name],
            "note": f"through the timm name {timm_name!r} that RobustBench registers",
        }
    return {
        "dataset": dataset,
        "threat": "Linf",
        "name": name,
        "family": family,
        "arch": arch,
        "normalization": spec["normalization"],
        "input_size": [3, side, side],
        "preprocessing": pre,
        "leaderboard": leaderboard(info),
        "weights": weights,
        "checkpoint_note": spec.get("checkpoint_note"),
        "licence": lic,
        "licence_note": lic_note,
        "covered": covered,
        "not_covered_reason": None if covered else (reason or f"family {family} is not built here"),
        "source_commit": commit,
    }


def build(git_dir: str, commit: str) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "--git-dir", git_dir, "rev-parse", f"{commit}^{{commit}}"], check=True, capture_output=True, text=True
    ).stdout.strip()
    records = []
    xcit = git_show(git_dir, commit, "robustbench/model_zoo/architectures/xcit.py")
    xcit_urls = dict(re.findall(r"'(debenedetti\w+)':\s*xcit\._cfg\(\s*url=\s*\"([^\"]+)\"", xcit))
    for dataset, facts in (("cifar10", CIFAR10), ("cifar100", CIFAR100), ("imagenet", IMAGENET_ENTRIES)):
        zoo = zoo_linf(git_show(git_dir, commit, f"robustbench/model_zoo/{dataset}.py"))
        if list(zoo) != list(facts):
            missing, extra = set(zoo) - set(facts), set(facts) - set(zoo)
            raise SystemExit(f"{dataset}: zoo and facts differ (no facts for {sorted(missing)}; stale {sorted(extra)})")
        for name, ids in zoo.items():
            info = json.loads(git_show(git_dir, commit, f"model_info/{dataset}/Linf/{name}.json"))
            records.append(record(dataset, name, facts[name], ids, info, commit, xcit_urls))
    return {
        "source": "https://github.com/RobustBench/robustbench",
        "source_commit": commit,
        "threats": ["Linf"],
        "state_dict_note": (
            "RobustBench strips the prefixes 'module.' and 'model.' from every file's keys before loading "
            "(robustbench/utils.py load_model)"
        ),
        "entries": records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-dir", required=True, help="a RobustBench git directory (bare is fine)")
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    table = build(args.git_dir, args.commit)
    text = json.dumps(table, indent=1, ensure_ascii=False)
    # keep short lists of numbers or ids on one line
    text = re.sub(r"\[\n\s+([^\[\]{}]*?)\n\s+\]", lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]", text)
    args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
