"""What a model costs: parameters, multiply-accumulates, and measured inference throughput."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """All parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int = 32) -> int:
    """Multiply-accumulates of one forward pass on one ``3 x input_size x input_size`` image.

    Counted by ``torch.utils.flop_counter`` (convolutions and matrix products; one MAC = two FLOPs),
    the usual convention, which leaves out normalisation and activations.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(
    models: Mapping[str, nn.Module],
    device: torch.device,
    input_size: int = 32,
    batch_size: int = 256,
    rounds: int = 5,
    min_seconds: float = 0.2,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Inference images per second of each model, measured side by side.

    The models are timed in alternating rounds (A, B, A, B, ...) on the same random batch so that a
    change in the machine's speed hits both alike; each figure is the median over rounds. A round
    runs whole batches until ``min_seconds`` have passed.
    """
    x = torch.rand(batch_size, 3, input_size, input_size, generator=torch.Generator().manual_seed(0)).to(device)
    states = {name: m.training for name, m in models.items()}
    per_round: dict[str, list[float]] = {name: [] for name in models}
    try:
        for m in models.values():
            m.eval()

        def run(m: nn.Module) -> None:
            if autocast_dtype is not None:
                with torch.autocast(device.type, dtype=autocast_dtype):
                    m(x)
            else:
                m(x)

        with torch.no_grad():
            for m in models.values():  # warm-up (allocator, cudnn autotune)
                run(m)
            _sync(device)
            for _ in range(rounds):
                for name, m in models.items():
                    n, start = 0, time.perf_counter()
                    while True:
                        run(m)
                        n += 1
                        _sync(device)
                        elapsed = time.perf_counter() - start
                        if elapsed >= min_seconds:
                            break
                    per_round[name].append(n * batch_size / elapsed)
    finally:
        for name, m in models.items():
            m.train(states[name])
    return {name: statistics.median(v) for name, v in per_round.items()}
