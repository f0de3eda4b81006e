"""RobustBench's own DeepMind classes as an oracle for ours (issue 25), at the entries' real sizes.

The ``robustbench`` package is not a dependency: as published (1.1.1 on PyPI) it pins timm 1.0.9 and
pyautoattack, which do not install beside this project's pins. Its two architecture modules
``dm_wide_resnet.py`` and ``dm_rn.py`` import nothing but torch, so this script loads them from a copy
unpacked aside without its dependencies::

    .venv/bin/pip install --no-deps --target /tmp/rb robustbench==1.1.1
    .venv/bin/python benchmarks/robustbench_oracle.py --robustbench /tmp/rb [--entries NAME ...]

For each zoo entry it builds RobustBench's class with the entry's constructor arguments and random
weights (every BatchNorm statistic drawn away from its default), saves that class's ``state_dict`` the
way RobustBench's checkpoints hold it (no ``mean``/``std``: they are non-persistent buffers), loads the
file through :func:`gacd_core.models.io.load_model_file` under the entry's name, and prints the
largest relative difference of the logits and of the pooled features (the input of ``logits``) on a
few random [0, 1] images. The entry's normalisation is the one RobustBench's class applies.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gacd_core.models.io import load_model_file  # noqa: E402
from gacd_core.zoo import lookup  # noqa: E402

DEFAULT_ENTRIES = (
    "robustbench:cifar10/Linf/Rebuffi2021Fixing_R18_ddpm",  # DMPreActResNet-18, Swish
    "robustbench:cifar10/Linf/Wang2023Better_WRN-28-10",  # DMWideResNet-28-10, SiLU
    "robustbench:cifar100/Linf/Wang2023Better_WRN-28-10",  # the CIFAR-100 statistics
    "robustbench:cifar10/Linf/Gowal2020Uncovering_70_16_extra",  # WRN-70-16, 267M parameters
)


def _module(folder: Path, name: str) -> ModuleType:
    path = folder / "robustbench" / "model_zoo" / "architectures" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"rb_{name}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--robustbench: {path} is missing (pip install --no-deps --target DIR robustbench)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomise(model: nn.Module, gen: torch.Generator) -> None:
    """Random weights, and running statistics far from BatchNorm's defaults (else a wrong mean/var
    mapping would go unseen)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / max(1, p[0].numel())) ** 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def _theirs(modules: dict[str, ModuleType], arch: dict, mean: list[float], std: list[float]) -> nn.Module:
    wrn = modules["dm_wide_resnet"]
    act = {"swish": wrn.Swish, "silu": nn.SiLU, "relu": nn.ReLU}[arch["activation"]]
    if arch.get("activation_impl") == "Swish":
        act = wrn.Swish
    cls = getattr(wrn, arch["constructor"])
    return cls(
        num_classes=arch["num_classes"],
        depth=arch["depth"],
        width=arch["width"],
        activation_fn=act,
        mean=tuple(mean),
        std=tuple(std),
        padding=arch.get("padding", 0),
    )


def _pooled(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RobustBench's logits, and the input of its ``logits`` layer (a forward pre-hook)."""
    seen: list[torch.Tensor] = []
    handle = model.logits.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return seen[0], logits


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check(name: str, modules: dict[str, ModuleType], images: int, seed: int) -> dict[str, float | str]:
    entry = lookup(name)
    arch = entry.arch.model_dump()
    norm = entry.normalization
    gen = torch.Generator().manual_seed(seed)
    theirs = _theirs(modules, arch, list(norm.mean), list(norm.std)).eval()
    _randomise(theirs, gen)
    side = entry.input_size[-1]
    x = torch.rand(images, 3, side, side, generator=gen)
    with torch.no_grad():
        t_feats, t_logits = _pooled(theirs, x)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        torch.save(theirs.state_dict(), path)  # as RobustBench's files hold it: no mean/std
        t0 = time.perf_counter()
        ours = load_model_file(path, arch=name).eval()
        load_s = time.perf_counter() - t0
    with torch.no_grad():
        o_feats, o_logits = ours.forward_all(x)
    return {
        "entry": name,
        "parameters_M": sum(p.numel() for p in theirs.parameters()) / 1e6,
        "normalization_source": str(getattr(ours, "normalization_source", "?")),
        "logits_rel": _rel(o_logits, t_logits),
        "features_rel": _rel(o_feats, t_feats),
        "load_s": load_s,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--robustbench", required=True, type=Path, help="where `pip install --no-deps --target` put it")
    ap.add_argument("--entries", nargs="*", default=list(DEFAULT_ENTRIES))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    modules = {n: _module(args.robustbench, n) for n in ("dm_wide_resnet",)}
    print(f"{'entry':<64} {'params':>8} {'norm from':>10} {'logits rel':>11} {'feats rel':>10}")
    worst = 0.0
    for name in args.entries:
        r = check(name, modules, args.images, args.seed)
        worst = max(worst, float(r["logits_rel"]), float(r["features_rel"]))
        print(
            f"{r['entry']:<64} {r['parameters_M']:>7.1f}M {r['normalization_source']:>10} "
            f"{r['logits_rel']:>11.2e} {r['features_rel']:>10.2e}"
        )
    print(f"largest relative difference: {worst:.2e} ({'within' if worst < 1e-4 else 'OVER'} 1e-4)")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
