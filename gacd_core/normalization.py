"""Input normalisation presets and where a model's normalisation came from. Torch-free.

Every model takes pixels in [0, 1] and normalises them with a layer of its own, ``(x - mean) / std``.
For a weights file from elsewhere that layer is not in the file, so it must be chosen, and choosing it
wrong is silent: the network still gives logits, they are just near chance. The rule here is that a
weights file without our metadata is **not** normalised (``none``: mean 0, std 1) unless it says
otherwise (RobustBench-style ``mu`` / ``sigma`` buffers) or the user does. This is what the public
robust-training code does: TRADES, RobustBench, ARD, RSLAD and MART feed the network raw [0, 1] pixels.

A normalisation always travels with its *source*: ``file`` (our metadata, or buffers in the
state_dict), ``user`` (a flag, a specification field, an upload form field) or ``default`` (none of
them: identity). Reports and teacher records show both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

RGB = tuple[float, float, float]
IDENTITY: tuple[RGB, RGB] = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
CIFAR10_MEAN: RGB = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: RGB = (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN: RGB = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: RGB = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN: RGB = (0.485, 0.456, 0.406)
IMAGENET_STD: RGB = (0.229, 0.224, 0.225)

NormalizationName = Literal["none", "cifar10", "cifar100", "imagenet"]
PRESETS: dict[str, tuple[RGB, RGB]] = {
    "none": IDENTITY,
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}
PRESET_HELP = {
    "none": "no normalisation: the network sees pixels in [0, 1] (TRADES, RobustBench, ARD, RSLAD, MART)",
    "cifar10": f"CIFAR-10 statistics, mean {list(CIFAR10_MEAN)}, std {list(CIFAR10_STD)}",
    "cifar100": f"CIFAR-100 statistics, mean {list(CIFAR100_MEAN)}, std {list(CIFAR100_STD)}",
    "imagenet": f"ImageNet statistics, mean {list(IMAGENET_MEAN)}, std {list(IMAGENET_STD)}",
}
Source = Literal["file", "user", "default", "dataset"]
SOURCES: dict[str, str] = {
    "dataset": "the training dataset's channel statistics (students trained here)",
    "file": "read from the weights file (gacd metadata, or mu/sigma buffers in the state_dict)",
    "user": "given by the user (flag, specification field or upload form)",
    "default": "nothing said otherwise: no normalisation (identity), as in public robust-training code",
}


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6) for x, y in zip(a, b, strict=True))


def preset_name(mean: Sequence[float], std: Sequence[float]) -> str:
    """The preset ``mean``/``std`` equal (to 1e-4), or ``custom``."""
    for name, (m, s) in PRESETS.items():
        if _close(mean, m) and _close(std, s):
            return name
    return "custom"


def same(a: tuple[Sequence[float], Sequence[float]], b: tuple[Sequence[float], Sequence[float]]) -> bool:
    """Whether two (mean, std) pairs are the same normalisation (to 1e-4)."""
    return _close(a[0], b[0]) and _close(a[1], b[1])


def resolve(name: str | None, mean: Sequence[float] | None, std: Sequence[float] | None) -> tuple[RGB, RGB] | None:
    """The (mean, std) a user asked for with a preset ``name`` and/or explicit values, or None.

    Raises:
        ValueError: an unknown preset, only one of mean and std, or a preset contradicted by values.
    """
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if name is not None and name not in PRESETS:
        raise ValueError(f"unknown normalisation {name!r}; valid: {', '.join(PRESETS)}")
    if name is not None:
        preset = PRESETS[name]
        if mean is not None and std is not None and not same((mean, std), preset):
            raise ValueError(
                f"normalisation {name!r} is mean {list(preset[0])}, std {list(preset[1])}; "
                f"mean {list(mean)} and std {list(std)} contradict it"
            )
        return preset
    if mean is not None and std is not None:
        return (tuple(float(v) for v in mean), tuple(float(v) for v in std))  # type: ignore[return-value]
    return None


def describe(mean: Sequence[float], std: Sequence[float], source: str) -> dict[str, Any]:
    """``{"name", "mean", "std", "source"}``: what reports and teacher records show."""
    return {
        "name": preset_name(mean, std),
        "mean": [round(float(v), 6) for v in mean],  # float32 buffers: 0.4914, not 0.49140000343322754
        "std": [round(float(v), 6) for v in std],
        "source": source,
    }


def text(desc: dict[str, Any]) -> str:
    """One line for terminals and logs, e.g. ``none (mean 0, std 1; source: default)``."""
    name = desc.get("name", "custom")

    def rgb(key: str) -> str:
        return "[" + ", ".join(f"{float(v):.4g}" for v in desc.get(key) or []) + "]"

    values = "mean 0, std 1" if name == "none" else f"mean {rgb('mean')}, std {rgb('std')}"
    return f"{name} ({values}; source: {desc.get('source')})"
