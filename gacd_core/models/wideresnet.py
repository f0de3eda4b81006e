"""Wide residual networks (Zagoruyko & Komodakis 2016), the variant used for robust CIFAR models.

Pre-activation basic blocks in three groups of (depth - 4) / 6 blocks with widths 16k, 32k, 64k. Module
names follow the TRADES / RobustBench layout (``conv1``, ``block1``..``block3`` with ``layer``, ``bn1``,
``fc``; blocks with ``convShortcut``), so their WRN checkpoints load as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gacd_core.models.base import ImageClassifier
from gacd_core.models.registry import register_model


class WideBasic(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.convShortcut: nn.Module | None = (
            None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # As in the reference code, the shortcut of a projecting block starts from the activated input.
        shortcut = x if self.convShortcut is None else self.convShortcut(pre)
        return out + shortcut


class NetworkBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[
                WideBasic(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
                for i in range(n)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(ImageClassifier):
    """WRN-depth-width.

    Args:
        depth: total depth, 6n + 4 (16, 28, 34, ...).
        width: the widening factor k.
        base: channels of the stem (16 in the paper; smaller for test models).
        drop_rate: dropout inside blocks (0 in robust-training practice).
    """

    classifier_name = "fc"

    def __init__(
        self,
        depth: int,
        width: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        base: int = 16,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(num_classes, mean, std)
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        ch = [base, base * width, 2 * base * width, 4 * base * width]
        self.depth, self.width = depth, width
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.num_features = ch[3]
        self.fc = nn.Linear(ch[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.relu(self.bn1(out))


@register_model()
def wrn_34_10(**kw) -> WideResNet:
    return WideResNet(34, 10, **kw)


@register_model()
def wrn_28_10(**kw) -> WideResNet:
    return WideResNet(28, 10, **kw)


@register_model()
def wrn_16_4(**kw) -> WideResNet:
    return WideResNet(16, 4, **kw)


@register_model()
def tiny_wrn(**kw) -> WideResNet:
    return WideResNet(10, 1, base=4, **kw)
