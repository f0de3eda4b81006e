"""The DeepMind robust-training architectures, in the key layout of their public checkpoints.

Gowal et al., "Uncovering the Limits of Adversarial Training against Norm-Bounded Adversarial
Examples" (2020) and Rebuffi et al., "Fixing Data Augmentation to Improve Adversarial Robustness"
(2021) train WideResNets and a pre-activation ResNet-18 that differ from the TRADES layout of
:mod:`gacd_core.models.wideresnet` in three ways, which decide whether their weights give the same
logits here:

- **SAME padding by hand.** Their first 3x3 convolution of each block has no padding of its own; the
  input is padded before it, by one pixel on every side at stride 1 and by one pixel on the right and
  bottom only at stride 2 (TensorFlow's ``SAME`` rule for an even input), so a strided block samples
  the other half of the pixel grid than a ``padding=1`` convolution would.
- **The shortcut of a widening block** starts from the activated input (as TRADES' does), and in the
  pre-activation ResNet it is a padded 3x3 convolution, not a 1x1 one.
- **The activation** is ReLU or Swish, ``x * sigmoid(x)`` (SiLU), depending on the entry.

Module names follow their files: ``init_conv``, ``layer.<group>.block.<i>.{batchnorm_0, conv_0,
batchnorm_1, conv_1, shortcut}``, ``batchnorm``, ``logits`` for the WideResNet; ``conv_2d``,
``layer_<g>.<i>.{batchnorm_0, conv_2d_1, batchnorm_1, conv_2d_2, shortcut}``, ``batchnorm``,
``logits`` for the pre-activation ResNet. Their normalisation lives in our :class:`Normalize` layer
(non-persistent buffers), never in the state dict. Their final average pool (8 or 4 pixels at 32 px
inputs) is the global average pool of :meth:`ImageClassifier.forward_head` at those sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from gacd_core.models.base import ImageClassifier

Activation = Literal["relu", "swish"]


def _activation(name: Activation) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "swish":
        return nn.SiLU()
    raise ValueError(f"activation must be 'relu' or 'swish', got {name!r}")


def same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pad ``x`` so that a 3x3 convolution without padding matches TensorFlow's ``SAME`` at ``stride``.

    At stride 1 that is one pixel on every side. At stride 2 on an even-sized input, ``SAME`` needs one
    pixel in total per axis and puts it after the input (right, bottom).
    """
    if stride == 1:
        return F.pad(x, (1, 1, 1, 1))
    if stride == 2:
        return F.pad(x, (0, 1, 0, 1))
    raise ValueError(f"only strides 1 and 2 are supported, got {stride}")


class DMWideBlock(nn.Module):
    """A pre-activation wide block. A widening block (``in != out``) activates its input once and
    feeds the activation to both branches; an identity block adds its raw input."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, activation: Activation) -> None:
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes)
        self.relu_0 = _activation(activation)
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride, 0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes)
        self.relu_1 = _activation(activation)
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = (
            nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False) if in_planes != out_planes else None
        )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu_0(self.batchnorm_0(x))
        out = self.conv_0(same_pad(act, self.stride))
        out = self.conv_1(self.relu_1(self.batchnorm_1(out)))
        return out + (x if self.shortcut is None else self.shortcut(act))


class DMBlockGroup(nn.Module):
    """``n`` wide blocks; the first changes the width and the stride. Its blocks sit in ``block``."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, activation: Activation) -> None:
        super().__init__()
        self.block = nn.Sequential(
            *(
                DMWideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, activation)
                for i in range(n)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _DMClassifier(ImageClassifier):
    """What both DeepMind classifiers share: their head is ``logits``, and ``padding`` pixels of zeros go
    around the [0, 1] input before normalisation (some entries were trained on padded inputs)."""

    classifier_name = "logits"
    padding = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding:  # before normalisation, as the authors pad the raw input
            x = F.pad(x, (self.padding,) * 4)
        return super().forward_features(x)


class DMWideResNet(_DMClassifier):
    """WRN-depth-width as Gowal et al. (2020) train it.

    Args:
        depth: 6n + 4 (28, 34, 70, 106, ...).
        width: the widening factor k (widths 16, 16k, 32k, 64k).
        activation: ``relu`` or ``swish``.
        padding: pixels of zero padding added around the [0, 1] input before normalisation (some
            entries were trained on padded inputs; 0 for most).
    """

    def __init__(
        self,
        depth: int,
        width: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        activation: Activation = "relu",
        padding: int = 0,
    ) -> None:
        super().__init__(num_classes, mean, std)
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        ch = (16, 16 * width, 32 * width, 64 * width)
        self.depth, self.width, self.activation, self.padding = depth, width, activation, padding
        self.init_conv = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.layer = nn.Sequential(
            DMBlockGroup(n, ch[0], ch[1], 1, activation),
            DMBlockGroup(n, ch[1], ch[2], 2, activation),
            DMBlockGroup(n, ch[2], ch[3], 2, activation),
        )
        self.batchnorm = nn.BatchNorm2d(ch[3])
        self.relu = _activation(activation)
        self.num_features = ch[3]
        self.logits = nn.Linear(ch[3], num_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.batchnorm(self.layer(self.init_conv(x))))


class DMPreActBlock(nn.Module):
    """A pre-activation basic block with SAME padding; a projecting block (stride or width change)
    has a padded 3x3 convolution on its raw input as shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, activation: Activation) -> None:
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes)
        self.relu_0 = _activation(activation)
        self.conv_2d_1 = nn.Conv2d(in_planes, out_planes, 3, stride, 0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes)
        self.relu_1 = _activation(activation)
        self.conv_2d_2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = (
            nn.Conv2d(in_planes, out_planes, 3, stride, 0, bias=False)
            if stride != 1 or in_planes != out_planes
            else None
        )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_2d_1(same_pad(self.relu_0(self.batchnorm_0(x)), self.stride))
        out = self.conv_2d_2(self.relu_1(self.batchnorm_1(out)))
        return out + (x if self.shortcut is None else self.shortcut(same_pad(x, self.stride)))


class DMPreActResNet(_DMClassifier):
    """Pre-activation ResNet-18 or -34 as Rebuffi et al. (2021) train it (widths 64-512).

    Args:
        depth: 18 (blocks 2, 2, 2, 2) or 34 (3, 4, 6, 3).
        activation: ``relu`` or ``swish``.
        padding: pixels of zero padding around the [0, 1] input, as for :class:`DMWideResNet`.
    """

    BLOCKS: ClassVar[dict[int, tuple[int, ...]]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

    def __init__(
        self,
        depth: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        activation: Activation = "relu",
        padding: int = 0,
    ) -> None:
        super().__init__(num_classes, mean, std)
        if depth not in self.BLOCKS:
            raise ValueError(f"DMPreActResNet depth must be 18 or 34, got {depth}")
        self.depth, self.activation, self.padding = depth, activation, padding
        self.conv_2d = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        widths = (64, 128, 256, 512)
        ins = (64, *widths[:-1])
        for g, (n, cin, cout) in enumerate(zip(self.BLOCKS[depth], ins, widths)):
            stride = 1 if g == 0 else 2
            blocks = [
                DMPreActBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, activation) for i in range(n)
            ]
            self.add_module(f"layer_{g}", nn.Sequential(*blocks))
        self.batchnorm = nn.BatchNorm2d(512)
        self.relu = _activation(activation)
        self.num_features = 512
        self.logits = nn.Linear(512, num_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_2d(x)
        for g in range(4):
            out = getattr(self, f"layer_{g}")(out)
        return self.relu(self.batchnorm(out))
