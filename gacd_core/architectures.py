"""Architecture names beyond our registry: ``timm:<name>``, ``torchvision:<name>`` and
``robustbench:<dataset>/<threat>/<entry>`` (issue 25). Torch-free.

The allow-lists below are what a job, an upload or ``gacd list`` accepts as a library model; each
name is built with random weights (``pretrained=False``: nothing is ever downloaded) and takes its
weights from the user's file. A RobustBench name is accepted when the committed zoo table
(:mod:`gacd_core.zoo`) marks its entry ``covered``. :func:`architectures` lists every accepted name
with one line; :func:`refusal` says why a name is not accepted and what is.
"""

from __future__ import annotations

from functools import cache

from gacd_core import zoo
from gacd_core.errors import UnknownNameError

TIMM_PREFIX, TORCHVISION_PREFIX = "timm:", "torchvision:"
PREFIXES = (TIMM_PREFIX, TORCHVISION_PREFIX, zoo.PREFIX)

# timm names (timm 1.0.31), with the models the covered ImageNet zoo entries need.
TIMM: dict[str, str] = {
    "resnet18": "ResNet-18 (ImageNet stem); 11.7M parameters at 1000 classes",
    "resnet34": "ResNet-34; 21.8M parameters",
    "resnet50": "ResNet-50; 25.6M parameters",
    "wide_resnet50_2": "Wide ResNet-50-2; 68.9M parameters",
    "convnext_atto": "ConvNeXt-Atto; 3.7M parameters",
    "convnext_femto": "ConvNeXt-Femto; 5.2M parameters",
    "convnext_pico": "ConvNeXt-Pico; 9.1M parameters",
    "convnext_nano": "ConvNeXt-Nano; 15.6M parameters",
    "convnext_tiny": "ConvNeXt-Tiny; 28.6M parameters",
    "convnext_small": "ConvNeXt-Small; 50.2M parameters",
    "convnext_base": "ConvNeXt-Base; 88.6M parameters (Liu2023Comprehensive_ConvNeXt-B)",
    "convnext_large": "ConvNeXt-Large; 197.8M parameters (Liu2023Comprehensive_ConvNeXt-L)",
    "efficientnet_b0": "EfficientNet-B0; 5.3M parameters",
    "mobilenetv3_small_100": "MobileNetV3-Small 1.0; 2.5M parameters",
    "mobilenetv3_large_100": "MobileNetV3-Large 1.0; 5.5M parameters",
    "vit_tiny_patch16_224": "ViT-Ti/16; built for the input size (img_size)",
    "vit_small_patch16_224": "ViT-S/16; built for the input size",
    "vit_base_patch16_224": "ViT-B/16; built for the input size (Mo2022When_ViT-B)",
    "deit_tiny_patch16_224": "DeiT-Ti/16; built for the input size",
    "swin_tiny_patch4_window7_224": "Swin-T; built for the input size (a multiple of 32 x 7 = 224 by default)",
    "swin_base_patch4_window7_224": "Swin-B (Liu2023Comprehensive_Swin-B, Mo2022When_Swin-B)",
    "swin_large_patch4_window7_224": "Swin-L (Liu2023Comprehensive_Swin-L)",
    "xcit_small_12_p16_224": "XCiT-S12/16 (Debenedetti2022Light_XCiT-S12)",
}
# torchvision names (torchvision 0.29), built with weights=None.
TORCHVISION: dict[str, str] = {
    "resnet18": "ResNet-18; 11.7M parameters at 1000 classes (Salman2020Do_R18)",
    "resnet34": "ResNet-34; 21.8M parameters",
    "resnet50": "ResNet-50; 25.6M parameters (Wong2020Fast, Salman2020Do_R50, Engstrom2019Robustness)",
    "wide_resnet50_2": "Wide ResNet-50-2; 68.9M parameters (Salman2020Do_50_2, Chen2024Data_WRN_50_2)",
    "convnext_tiny": "ConvNeXt-Tiny; 28.6M parameters",
    "efficientnet_b0": "EfficientNet-B0; 5.3M parameters",
    "mobilenet_v3_small": "MobileNetV3-Small; 2.5M parameters",
    "mobilenet_v3_large": "MobileNetV3-Large; 5.5M parameters",
    "vit_b_16": "ViT-B/16; built for the input size (image_size)",
    "swin_t": "Swin-T; 28.3M parameters",
}
# Library models whose constructor fixes the input size (position embeddings, windows): built for it.
SIZED = ("vit_", "deit_", "swin_", "xcit_")


class UnknownArchError(UnknownNameError):
    """An architecture name that is none of ours, of the allow-lists or of the covered zoo entries;
    the message (:func:`refusal`) names the valid choices."""

    def __init__(self, name: str, message: str, valid: list[str], *, field: str | None = None) -> None:
        super().__init__("model", name, valid, field=field)
        self.message = message
        self.args = (message,)


def is_foreign(name: str) -> bool:
    """Whether ``name`` is meant as a library or zoo architecture (has one of :data:`PREFIXES`)."""
    return name.startswith(PREFIXES)


@cache
def architectures() -> dict[str, str]:
    """Every library and covered zoo name users may give, with one line each (``gacd list``)."""
    out = {f"{TIMM_PREFIX}{n}": f"timm {d}" for n, d in TIMM.items()}
    out.update({f"{TORCHVISION_PREFIX}{n}": f"torchvision {d}" for n, d in TORCHVISION.items()})
    out.update({e.key: describe(e) for e in zoo.covered()})
    return out


def describe(entry: zoo.ZooEntry) -> str:
    """One line on a RobustBench entry: its network, radius, leaderboard accuracies and licence."""
    lb = entry.leaderboard
    return (
        f"{lb.architecture}, {entry.dataset} {lb.eps}: clean {lb.clean_acc}%, AutoAttack {lb.autoattack_acc}%"
        f" ({entry.licence or 'licence: see entry'})"
    )


def refusal(name: str, registry: list[str]) -> str | None:
    """Why ``name`` is no architecture, naming the valid choices; None when it is one.

    Args:
        registry: our own architectures' names (:data:`gacd_core.catalog.MODELS`).
    """
    if name in registry or name in architectures():
        return None
    if name.startswith(TIMM_PREFIX):
        return f"unknown model {name!r}: timm models allowed here are {', '.join(TIMM)}"
    if name.startswith(TORCHVISION_PREFIX):
        return f"unknown model {name!r}: torchvision models allowed here are {', '.join(TORCHVISION)}"
    if zoo.is_zoo_name(name):
        try:
            entry = zoo.lookup(name)
        except zoo.ZooEntryError as exc:
            return f"unknown model {name!r}: {exc.message} (gacd list shows the covered entries)"
        return f"model {name!r}: the RobustBench entry is not covered: {entry.not_covered_reason}"
    library = [f"{TIMM_PREFIX}{n}" for n in TIMM] + [f"{TORCHVISION_PREFIX}{n}" for n in TORCHVISION]
    return (
        f"unknown model {name!r} (a RobustBench entry is named robustbench:<dataset>/<threat>/<entry>; "
        f"gacd list shows the covered ones); valid: {', '.join([*registry, *library])}"
    )
