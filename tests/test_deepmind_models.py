"""The DeepMind architectures (gacd_core/models/deepmind.py) against a functional reference that reads
the checkpoint's keys directly: same keys, same logits, same pooled features, with random weights and
non-trivial BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gacd_core.models.deepmind import DMPreActResNet, DMWideResNet, same_pad
from gacd_core.normalization import CIFAR10_MEAN, CIFAR10_STD

pytestmark = [pytest.mark.unit]


def _randomise(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Every parameter and BN statistic random (variances positive), in place; the state dict back."""
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=g)
        elif value.dim() >= 2:  # convolutions and the classifier: fan-in scaled, so activations stay O(1)
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = 0.3 * torch.randn(value.shape, generator=g)
    model.load_state_dict(state)
    return model.state_dict()


def _bn(x: torch.Tensor, s: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"], False)


def _act(x: torch.Tensor, swish: bool) -> torch.Tensor:
    return x * torch.sigmoid(x) if swish else torch.clamp(x, min=0)


def _ref_wrn(x: torch.Tensor, s: dict[str, torch.Tensor], n: int, swish: bool) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    out = F.conv2d((x - mean) / std, s["init_conv.weight"], padding=1)
    for g in range(3):
        for i in range(n):
            p = f"layer.{g}.block.{i}"
            stride = 2 if (g > 0 and i == 0) else 1
            act = _act(_bn(out, s, p + ".batchnorm_0"), swish)
            pad = (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)
            h = F.conv2d(F.pad(act, pad), s[p + ".conv_0.weight"], stride=stride)
            h = F.conv2d(_act(_bn(h, s, p + ".batchnorm_1"), swish), s[p + ".conv_1.weight"], padding=1)
            skip = F.conv2d(act, s[p + ".shortcut.weight"], stride=stride) if p + ".shortcut.weight" in s else out
            out = h + skip
    out = _act(_bn(out, s, "batchnorm"), swish)
    feats = F.avg_pool2d(out, 8).flatten(1)
    return feats, F.linear(feats, s["logits.weight"], s["logits.bias"])


def _ref_preact(x: torch.Tensor, s: dict[str, torch.Tensor], swish: bool) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    out = F.conv2d((x - mean) / std, s["conv_2d.weight"], padding=1)
    for g in range(4):
        for i in range(2):
            p = f"layer_{g}.{i}"
            stride = 2 if (g > 0 and i == 0) else 1
            pad = (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)
            h = F.conv2d(
                F.pad(_act(_bn(out, s, p + ".batchnorm_0"), swish), pad), s[p + ".conv_2d_1.weight"], stride=stride
            )
            h = F.conv2d(_act(_bn(h, s, p + ".batchnorm_1"), swish), s[p + ".conv_2d_2.weight"], padding=1)
            skip = (
                F.conv2d(F.pad(out, pad), s[p + ".shortcut.weight"], stride=stride)
                if p + ".shortcut.weight" in s
                else out
            )
            out = h + skip
    out = _act(_bn(out, s, "batchnorm"), swish)
    feats = F.avg_pool2d(out, 4).flatten(1)
    return feats, F.linear(feats, s["logits.weight"], s["logits.bias"])


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("swish", [False, True])
def test_dm_wideresnet_matches_the_reference(swish: bool) -> None:
    model = DMWideResNet(16, 2, 10, CIFAR10_MEAN, CIFAR10_STD, activation="swish" if swish else "relu").eval()
    state = _randomise(model, 0)
    assert {k.split(".")[0] for k in state} == {"init_conv", "layer", "batchnorm", "logits"}
    assert "layer.1.block.0.shortcut.weight" in state and "layer.1.block.1.shortcut.weight" not in state
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats, logits = model.forward_all(x)
        ref_feats, ref_logits = _ref_wrn(x, state, n=2, swish=swish)
    assert _close(logits, ref_logits) < 1e-4
    assert _close(feats, ref_feats) < 1e-4
    assert logits.std() > 0.1  # random weights that actually separate the inputs


@pytest.mark.parametrize("swish", [False, True])
def test_dm_preact_resnet18_matches_the_reference(swish: bool) -> None:
    model = DMPreActResNet(18, 10, CIFAR10_MEAN, CIFAR10_STD, activation="swish" if swish else "relu").eval()
    state = _randomise(model, 2)
    assert "layer_1.0.shortcut.weight" in state and state["layer_1.0.shortcut.weight"].shape[-1] == 3
    assert "layer_0.0.shortcut.weight" not in state
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        feats, logits = model.forward_all(x)
        ref_feats, ref_logits = _ref_preact(x, state, swish=swish)
    assert _close(logits, ref_logits) < 1e-4
    assert _close(feats, ref_feats) < 1e-4


def test_same_padding_differs_from_symmetric_padding_at_stride_2() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 0, 0] = 1.0  # picks the top-left pixel of each window
    same = F.conv2d(same_pad(x, 2), w, stride=2)
    symmetric = F.conv2d(x, w, stride=2, padding=1)
    assert same.flatten().tolist() == [0.0, 2.0, 8.0, 10.0]
    assert symmetric.flatten().tolist() == [0.0, 0.0, 0.0, 5.0]
    with pytest.raises(ValueError, match="strides 1 and 2"):
        same_pad(x, 3)


def test_padding_and_bad_arguments() -> None:
    model = DMWideResNet(10, 1, 10, CIFAR10_MEAN, CIFAR10_STD, padding=4).eval()
    assert model.forward_features(torch.rand(1, 3, 32, 32)).shape[-1] == 10  # (32 + 8) / 4
    with pytest.raises(ValueError, match="6n \\+ 4"):
        DMWideResNet(12, 1, 10, CIFAR10_MEAN, CIFAR10_STD)
    with pytest.raises(ValueError, match="18 or 34"):
        DMPreActResNet(50, 10, CIFAR10_MEAN, CIFAR10_STD)
    with pytest.raises(ValueError, match="activation"):
        DMWideResNet(10, 1, 10, CIFAR10_MEAN, CIFAR10_STD, activation="gelu")  # type: ignore[arg-type]
