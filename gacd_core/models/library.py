"""Architectures named beyond our registry: timm and torchvision models, and RobustBench entries (issue 25).

``timm:<name>`` and ``torchvision:<name>`` (the allow-lists of :mod:`gacd_core.architectures`) are built
with random weights (``pretrained=False`` / ``weights=None``: nothing is downloaded) and wrapped as an
:class:`ImageClassifier` (:class:`LibraryClassifier`): pixels in [0, 1], our normalisation layer in
front, ``forward_features`` / ``forward_head(pre_logits=True)``. The pooled penultimate features are
timm's own ``forward_head(x, pre_logits=True)``; for a torchvision model they are the input of its
last ``nn.Linear``, caught by a forward pre-hook. The normalisation is never taken from timm's
``pretrained_cfg``: it describes the hub's weights, not the user's file.

``robustbench:<dataset>/<threat>/<entry>`` builds the entry's architecture from its record in the
committed zoo table (:mod:`gacd_core.zoo`): DeepMind's WideResNet and pre-activation ResNet
(:mod:`gacd_core.models.deepmind`), the TRADES WideResNet, our CIFAR (pre-activation) ResNets, or a
torchvision / timm model with the record's constructor arguments. The model carries the entry's input
size, licence and source (:attr:`ImageClassifier.provenance`).

Every model here is built for an input side (``input_size``); inputs of another side are resized
inside the model (:meth:`ImageClassifier.resize`), so a job keeps one pixel space.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from gacd_core import zoo
from gacd_core.architectures import SIZED, TIMM_PREFIX, TORCHVISION_PREFIX
from gacd_core.models.base import ImageClassifier
from gacd_core.models.deepmind import DMPreActResNet, DMWideResNet
from gacd_core.models.resnet import ResNet
from gacd_core.models.wideresnet import WideResNet
from gacd_core.normalization import IDENTITY

__all__ = ["LibraryClassifier", "build_library", "build_zoo_entry", "create_foreign", "zoo_entry"]

_CODE_LICENCE = {"timm": "Apache-2.0", "torchvision": "BSD-3-Clause"}
_RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}


class LibraryClassifier(ImageClassifier):
    """A timm or torchvision network behind our model API. Its weights are those of ``model``
    (:meth:`weights_module`): a file holds the bare library model's keys.

    Args:
        net: the library model, built with ``num_classes`` outputs.
        library: ``timm`` or ``torchvision``.
    """

    def __init__(
        self, net: nn.Module, library: str, num_classes: int, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__(num_classes, mean, std)
        self.model = net
        self.library = library
        self._captured: torch.Tensor | None = None
        if library == "timm":
            self._linear_name = ""
        else:
            names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
            if not names:
                raise ValueError(f"{type(net).__name__} has no nn.Linear to read the pooled features from")
            self._linear_name = names[-1]
            net.get_submodule(self._linear_name).register_forward_pre_hook(self._catch)
        head = self.classifier
        self.num_features = int(head.in_features) if isinstance(head, nn.Linear) else 0

    def _catch(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self._captured = args[0]

    def weights_module(self) -> nn.Module:
        return self.model

    @property
    def classifier(self) -> nn.Module:
        if self.library == "timm":
            head = self.model.get_classifier()  # type: ignore[operator]
            assert isinstance(head, nn.Module)
            return head
        return self.model.get_submodule(self._linear_name)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        if self.library == "timm":
            out = self.model.forward_features(x)  # type: ignore[operator]
            assert isinstance(out, torch.Tensor)
            return out
        self._captured = None
        self.model(x)
        feats, self._captured = self._captured, None
        if feats is None:
            raise RuntimeError(f"the last nn.Linear ({self._linear_name}) of {self.arch} was not called")
        return feats

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.library == "timm":
            out = self.model.forward_head(x, pre_logits=pre_logits)  # type: ignore[operator]
            assert isinstance(out, torch.Tensor)
            return out
        return x if pre_logits else self.classifier(x)

    def adapt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A timm file in an older key layout, passed through the model family's own
        ``checkpoint_filter_fn`` (e.g. Swin's) when its keys do not fit as they are."""
        expected = self.model.state_dict()
        if self.library != "timm" or set(state) == set(expected):
            return state
        filter_fn = getattr(sys.modules.get(type(self.model).__module__), "checkpoint_filter_fn", None)
        if filter_fn is None:
            return state
        try:
            out = filter_fn(dict(state), self.model)
        except (KeyError, RuntimeError, ValueError, AttributeError):
            return state
        return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def build_library(
    library: str,
    name: str,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    input_size: int | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> LibraryClassifier:
    """``name`` from ``library`` with random weights, wrapped. A model whose constructor fixes its input
    side (ViT, DeiT, Swin, XCiT) is built for ``input_size`` (224 when not given); others record it."""
    kw = dict(kwargs or {})
    sized = name.startswith(SIZED)
    side = input_size if input_size is not None else (224 if sized else None)
    if library == "timm":
        import timm

        if sized:
            kw["img_size"] = side
        net = timm.create_model(name, pretrained=False, num_classes=num_classes, **kw)
    elif library == "torchvision":
        import torchvision.models as tvm

        if name.startswith("vit_"):
            kw["image_size"] = side
        net = tvm.get_model(name, weights=None, num_classes=num_classes, **kw)
    else:
        raise ValueError(f"unknown library {library!r}")
    model = LibraryClassifier(net, library, num_classes, mean, std)
    model.input_size = side
    model.provenance = {
        "source": f"{library}:{name}",
        "library": library,
        "licence": None,
        "licence_note": f"the weights are the user's file; the architecture is {library}'s "
        f"({_CODE_LICENCE[library]}), built without its pretrained weights",
        "non_commercial": False,
    }
    return model


def zoo_entry(name: str) -> zoo.ZooEntry:
    """The covered zoo entry ``name`` names (:func:`gacd_core.zoo.lookup`)."""
    entry = zoo.lookup(name)
    if not entry.covered:
        raise ValueError(f"the RobustBench entry {entry.key} is not covered: {entry.not_covered_reason}")
    return entry


def build_zoo_entry(
    entry: zoo.ZooEntry, num_classes: int, mean: Sequence[float], std: Sequence[float]
) -> ImageClassifier:
    """The architecture of a covered RobustBench entry, from its record's constructor arguments."""
    a, fam = entry.arch, entry.family
    model: ImageClassifier
    if fam == "dm_wide_resnet":
        assert a.depth is not None and a.width is not None and a.activation is not None
        model = DMWideResNet(a.depth, a.width, num_classes, mean, std, activation=a.activation, padding=a.padding or 0)
    elif fam == "dm_preact_resnet":
        assert a.depth is not None and a.activation is not None
        model = DMPreActResNet(a.depth, num_classes, mean, std, activation=a.activation, padding=a.padding or 0)
    elif fam == "wide_resnet":  # TRADES layout; an unused sub_block1 in the file is ignored on load
        assert a.depth is not None and a.width is not None
        model = WideResNet(a.depth, a.width, num_classes, mean, std)
    elif fam in ("preact_resnet", "resnet"):
        assert a.depth is not None
        model = ResNet(
            _RESNET_BLOCKS[a.depth],
            (64, 128, 256, 512),
            num_classes,
            mean,
            std,
            preact=fam == "preact_resnet",
            final_bn=bool(a.final_bn),
            raw_shortcut=a.shortcut_from == "input",
            bottleneck=a.block == "bottleneck",
        )
    elif fam in ("torchvision", "timm"):
        assert a.library is not None and a.model_name is not None
        model = build_library(a.library, a.model_name, num_classes, mean, std, entry.input_size[-1], a.model_kwargs)
    else:
        raise ValueError(f"{entry.key}: family {fam!r} is not built here")
    model.input_size = entry.input_size[-1]
    model.provenance = {
        "source": entry.key,
        "library": "robustbench",
        "licence": entry.licence,
        "licence_note": entry.licence_note,
        "non_commercial": entry.non_commercial,
        "paper": entry.leaderboard.link,
        "weights_host": entry.weights.host,
    }
    return model


def create_foreign(
    name: str,
    num_classes: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    input_size: int | None = None,
) -> ImageClassifier:
    """The model a ``timm:``, ``torchvision:`` or ``robustbench:`` name builds (random weights).

    ``num_classes`` defaults to the zoo entry's; ``input_size`` is the side a library model is built
    for (a zoo entry's is its record's). Without ``mean``/``std`` a zoo entry normalises as its record
    says, a library model not at all.
    """
    if zoo.is_zoo_name(name):
        entry = zoo_entry(name)
        norm = entry.normalization
        if mean is None or std is None:
            mean, std = norm.mean or IDENTITY[0], norm.std or IDENTITY[1]
        return build_zoo_entry(entry, num_classes or entry.arch.num_classes, mean, std)
    mean, std = mean or IDENTITY[0], std or IDENTITY[1]
    if num_classes is None:
        raise ValueError("give num_classes")
    for prefix in (TIMM_PREFIX, TORCHVISION_PREFIX):
        if name.startswith(prefix):
            return build_library(prefix[:-1], name[len(prefix) :], num_classes, mean, std, input_size)
    raise ValueError(f"{name!r} is not a library or zoo name")
