"""The one model API every architecture follows (after timm).

Every model takes pixels in [0, 1]; normalisation is a layer inside the model, so attacks never guess
it. ``forward_features(x)`` returns the last feature map, ``forward_head(f, pre_logits=True)`` the
pooled penultimate features that GACD and CRD embed, ``forward_head(f)`` the logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gacd_core.normalization import CIFAR10_MEAN, CIFAR10_STD, describe

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "ImageClassifier", "Normalize"]

# model -> its compiled ``body`` (gacd_core.fastpath.compiled). Kept outside the model so that a deep
# copy or a saved file never carries a compiled function bound to another instance.
COMPILED_BODIES: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}


class Normalize(nn.Module):
    """(x - mean) / std per channel. Its buffers are not persistent: mean and std travel in the
    weights file's metadata, so a plain state_dict from another codebase loads without them."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean and std need three values (RGB)")
        if any(s <= 0 for s in std):
            raise ValueError("std values must be > 0")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class ImageClassifier(nn.Module):
    """Base class: subclasses build ``self.body(x)`` (normalised input -> feature map) and a linear
    classifier named by ``classifier_name``.

    Attributes:
        arch: the registry name this model was created under (set by ``create_model``).
        num_classes: size of the output.
        num_features: size of the pooled penultimate features.
        normalization_source: where the input normalisation came from: ``file``, ``user`` or
            ``default`` (see :mod:`gacd_core.normalization`); set by whoever builds the model.
    """

    classifier_name = "linear"
    normalize: Normalize

    def __init__(self, num_classes: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.arch = ""
        self.num_classes = int(num_classes)
        self.num_features = 0
        self.normalize = Normalize(mean, std)
        self.normalization_source = "user"
        self.normalization_origin: str | None = None  # for a file of ours: where its writer's came from
        # the side of the square input the model is built for (None: any side, e.g. our CIFAR nets);
        # other sides are resized inside forward_features, and ``resized_from`` keeps the last such side
        self.input_size: int | None = None
        self.resized_from: int | None = None
        # where the architecture and its weights come from: source (our registry, a library, a
        # RobustBench entry), licence, non_commercial, paper (see gacd_core.models.library)
        self.provenance: dict[str, Any] = {}

    # --- to implement -------------------------------------------------------------------------
    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- the shared API ------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> the last feature map (N, C, h, w)."""
        return COMPILED_BODIES.get(id(self), self.body)(self.normalize(self.resize(x)))

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` at the side the model is built for (bilinear, differentiable), so that a job keeps one
        pixel space (the dataset's) and attacks stay in its [0, 1] pixels."""
        side = self.input_size
        if side is None or tuple(x.shape[-2:]) == (side, side):
            return x
        self.resized_from = int(x.shape[-1])
        return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)

    def weights_module(self) -> nn.Module:
        """The module whose ``state_dict`` a weights file holds (the wrapped network of a library model)."""
        return self

    def adapt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A file's state_dict in the layout of :meth:`weights_module` (as it is, here)."""
        return state

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> pooled features (``pre_logits=True``) or logits."""
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        if pre_logits:
            return x
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features, logits) in one pass."""
        feats = self.forward_head(self.forward_features(x), pre_logits=True)
        return feats, self.classifier(feats)

    @property
    def classifier(self) -> nn.Module:
        mod = getattr(self, self.classifier_name)
        assert isinstance(mod, nn.Module)
        return mod

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.normalize.mean.flatten().tolist())

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.normalize.std.flatten().tolist())

    def normalization(self) -> dict[str, Any]:
        """``{"name", "mean", "std", "source"}`` of the input normalisation, for reports and records."""
        out = describe(self.mean, self.std, self.normalization_source)
        if self.normalization_origin:
            out["origin"] = self.normalization_origin
        return out

    def config(self) -> dict[str, Any]:
        """What ``create_model`` needs to rebuild this model."""
        out = {"arch": self.arch, "num_classes": self.num_classes, "mean": list(self.mean), "std": list(self.std)}
        if self.input_size is not None:
            out["input_size"] = self.input_size
        return out
