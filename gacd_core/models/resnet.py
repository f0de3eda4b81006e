"""ResNet and pre-activation ResNet with the CIFAR stem (He et al. 2016a, 2016b).

The CIFAR stem is one 3x3 convolution with stride 1 and no max-pool, so a 32x32 input reaches the last
stage at 4x4. Module names follow the layout most robust-training code uses (``conv1``, ``bn1``,
``layer1``..``layer4``, ``linear``, block ``shortcut``), so state_dicts trained elsewhere load as they
are. The pre-activation variant ends with a BatchNorm and ReLU before pooling, as in the robust
overfitting study of Rice et al. (2020). Two more pre-activation variants have the layouts of the
public code whose checkpoints users bring: ``preact_resnet18_nofinalbn`` (kuangliu/pytorch-cifar: no
final BatchNorm) and ``preact_resnet18_robustbench`` (RobustBench's ``PreActResNet18()``: no final
BatchNorm, and projection shortcuts that read the raw block input). Their keys coincide, their
functions do not, so the architecture must be named.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gacd_core.models.base import ImageClassifier
from gacd_core.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """The bottleneck block of ResNet-50 (He et al. 2016a, Fig. 5 right) in kuangliu/pytorch-cifar's
    layout, which RobustBench's ``Engstrom2019RobustnessNet`` (ResNet-50, CIFAR stem) keeps: the stride
    on the 3x3 convolution, a 1x1 convolution and BatchNorm as projection shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block.

    Args:
        raw_shortcut: the projection shortcut reads the block's raw input instead of its
            pre-activated input (RobustBench's ``PreActBlock``; kuangliu's and ours read the activated one).
            The two have the same keys and different functions.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, raw_shortcut: bool = False) -> None:
        super().__init__()
        self.raw_shortcut = raw_shortcut
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(x if self.raw_shortcut else out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class ResNet(ImageClassifier):
    """CIFAR ResNet with basic blocks.

    Args:
        blocks: blocks per stage (ResNet-18: 2, 2, 2, 2).
        widths: channels per stage (ResNet-18: 64, 128, 256, 512).
        preact: pre-activation blocks (He et al. 2016b) instead of post-activation ones.
        final_bn: pre-activation only: a BatchNorm and ReLU (``bn``) before pooling, as in Rice et al.
            (2020); kuangliu/pytorch-cifar and RobustBench's ``PreActResNet18()`` have none.
        raw_shortcut: pre-activation only: projection shortcuts read the raw block input
            (RobustBench's ``PreActBlock``).
        bottleneck: post-activation only: :class:`Bottleneck` blocks (stage outputs 4x ``widths``).
    """

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        preact: bool = False,
        final_bn: bool = True,
        raw_shortcut: bool = False,
        bottleneck: bool = False,
    ) -> None:
        super().__init__(num_classes, mean, std)
        self.preact = preact
        expansion = Bottleneck.expansion if bottleneck else 1

        def block(i: int, o: int, stride: int) -> nn.Module:
            if bottleneck:
                return Bottleneck(i, o, stride)
            return PreActBlock(i, o, stride, raw_shortcut) if preact else BasicBlock(i, o, stride)

        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1: nn.Module | None = None if preact else nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(in_planes, w, stride))
                in_planes = w * expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.n_stages = len(blocks)
        self.bn: nn.Module | None = nn.BatchNorm2d(in_planes) if preact and final_bn else None
        self.num_features = in_planes
        self.linear = nn.Linear(in_planes, num_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = F.relu(self.bn1(out))
        for i in range(self.n_stages):
            out = getattr(self, f"layer{i + 1}")(out)
        if self.bn is not None:
            out = F.relu(self.bn(out))
        return out


@register_model()
def resnet18(**kw) -> ResNet:
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), **kw)


@register_model()
def preact_resnet18(**kw) -> ResNet:
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), preact=True, **kw)


@register_model()
def preact_resnet18_nofinalbn(**kw) -> ResNet:
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), preact=True, final_bn=False, **kw)


@register_model()
def preact_resnet18_robustbench(**kw) -> ResNet:
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), preact=True, final_bn=False, raw_shortcut=True, **kw)


@register_model()
def resnet10_w16(**kw) -> ResNet:
    return ResNet((1, 1, 1, 1), (16, 32, 64, 128), **kw)


@register_model()
def resnet10_w8(**kw) -> ResNet:
    return ResNet((1, 1, 1, 1), (8, 16, 32, 64), **kw)


@register_model()
def tiny_resnet(**kw) -> ResNet:
    return ResNet((1, 1, 1, 1), (4, 8, 16, 32), **kw)


@register_model()
def tiny_preact_resnet(**kw) -> ResNet:
    return ResNet((1, 1, 1, 1), (4, 8, 16, 32), preact=True, **kw)
