"""MobileNetV2 (Sandler et al. 2018) with CIFAR strides.

For 32x32 inputs the stem convolution and the second stage use stride 1 instead of 2, so the network
downsamples 8x rather than 32x; this is the variant the robust-distillation literature (ARD, RSLAD)
uses for its MobileNetV2 students. As in that code, a stride-1 block whose widths differ adds a 1x1
projection shortcut. Module names follow it too (``conv1``, ``bn1``, ``layers``, ``conv2``, ``bn2``,
``linear``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gacd_core.models.base import ImageClassifier
from gacd_core.models.registry import register_model

# (expansion, out_planes, num_blocks, stride), CIFAR strides
CIFAR_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, 1, 0, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


def _scaled(c: int, mult: float) -> int:
    return max(2, round(c * mult))


class MobileNetV2(ImageClassifier):
    """MobileNetV2.

    Args:
        width_mult: multiplies every width (1.0 = the full network).
        cfg: (expansion, out_planes, blocks, stride) per stage.
    """

    def __init__(
        self,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        width_mult: float = 1.0,
        cfg: Sequence[tuple[int, int, int, int]] = CIFAR_CFG,
    ) -> None:
        super().__init__(num_classes, mean, std)
        stem = _scaled(32, width_mult)
        last = _scaled(1280, width_mult)
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        layers: list[nn.Module] = []
        in_planes = stem
        for expansion, out, n, stride in cfg:
            out = _scaled(out, width_mult)
            for j in range(n):
                layers.append(InvertedResidual(in_planes, out, expansion, stride if j == 0 else 1))
                in_planes = out
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(in_planes, last, 1, 1, 0, bias=False)
        self.bn2 = nn.BatchNorm2d(last)
        self.num_features = last
        self.linear = nn.Linear(last, num_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return F.relu(self.bn2(self.conv2(out)))


@register_model()
def mobilenetv2(**kw) -> MobileNetV2:
    return MobileNetV2(**kw)


@register_model()
def tiny_mobilenetv2(**kw) -> MobileNetV2:
    one_each = tuple((e, c, 1, s) for e, c, _, s in CIFAR_CFG)
    return MobileNetV2(width_mult=0.125, cfg=one_each, **kw)
