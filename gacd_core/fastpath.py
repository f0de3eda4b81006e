"""How a job trains fast: precision and memory format chosen by measurement, not by rule.

On a given device and model the fastest setting differs: bf16 autocast pays only where the hardware
has bf16 arithmetic (CUDA, or a CPU with AVX512-BF16 or AMX; on a plain AVX2 CPU it runs 5-40x
slower, measured here), and channels-last helps some convolution kernels and hurts others. So
``precision: auto`` times a few real training steps of the job's own method in every candidate
setting at job start (:func:`probe`), logs the figures, and keeps the fastest. ``fp32`` and ``bf16``
force the precision and skip the probe. ``compile: true`` (:func:`compiled`) additionally runs each
model's body through ``torch.compile`` while training.

Evaluation never uses this: the protocol runs in fp32 (an attack computed in bf16 can be weaker).
"""

from __future__ import annotations

import copy
import logging
import shutil
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gacd_core.models.base import COMPILED_BODIES

log = logging.getLogger("gacd.fastpath")
CPUINFO = Path("/proc/cpuinfo")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Setting:
    """One way to run a training step: autocast precision and memory format."""

    precision: str  # "fp32" or "bf16"
    channels_last: bool

    @property
    def name(self) -> str:
        return f"{self.precision}{'+channels_last' if self.channels_last else ''}"

    def as_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "channels_last": self.channels_last}


@dataclass
class ProbeResult:
    """The chosen setting and, per candidate, the measured seconds per step (median of the rounds)."""

    chosen: Setting
    seconds_per_step: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**self.chosen.as_dict(), "seconds_per_step": dict(self.seconds_per_step), "reason": self.reason}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of the first processor in ``/proc/cpuinfo`` (empty where it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_has_bf16(cpuinfo: str | None = None, capability: str | None = None) -> bool:
    """Whether this CPU has bf16 arithmetic: the ``avx512_bf16`` or ``amx_bf16`` flag in /proc/cpuinfo,
    or torch's CPU capability naming AMX or BF16 (where /proc/cpuinfo is absent). AVX2 or plain AVX512
    is not enough: bf16 is then emulated and slower than fp32."""
    if cpu_flags(cpuinfo) & set(BF16_CPU_FLAGS):
        return True
    if capability is None:
        try:
            capability = str(torch.backends.cpu.get_cpu_capability())
        except Exception:  # pragma: no cover - older torch
            capability = ""
    return any(tag in capability.upper() for tag in ("AMX", "BF16"))


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast is worth trying on ``device``: a CUDA device with bf16, or a CPU with bf16 units."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_bf16()
    return False


MIN_CPU_CHANNELS_LAST_WIDTH = 8
# Above CIFAR's 32 px, the narrowest convolution channels-last may run on the CPU.
MIN_CPU_CHANNELS_LAST_WIDTH_LARGE = 16
LARGE_INPUT_SIDE = 32


def channels_last_safe(model: torch.nn.Module, device: torch.device, input_side: int | None = None) -> bool:
    """Whether channels-last may run ``model`` on ``device`` for inputs ``input_side`` pixels wide.

    On the CPU, torch 2.14.1 (oneDNN) corrupts the heap (``free(): invalid next size``, ``double free``,
    a segmentation fault) in the backward pass of some channels-last convolutions:

    - ResNet blocks 4 channels wide (``tiny_resnet``, ``tiny_wrn``) at 32 px, with one thread and two;
    - a 1x1 stride-2 convolution from 8 to 16 channels (a ResNet shortcut: ``resnet10_w8`` dies there) or
      from 3 to 8 channels at 64 px and more in fp32, at 96 px and more under bf16 autocast, while the
      same convolutions from 16, 32 or 64 channels ran clean at every side up to 224 px, and every one of
      them ran clean in NCHW (measured on an AVX-512 EPYC, batch 20, five backward passes each).

    So on the CPU a model stays in NCHW when a convolution (the 3-channel input aside) is narrower than
    8 channels, or narrower than 16 channels for inputs over 32 px (the 3-to-8 case counts by its output).
    """
    if device.type != "cpu":
        return True
    large = input_side is not None and input_side > LARGE_INPUT_SIDE
    least = MIN_CPU_CHANNELS_LAST_WIDTH_LARGE if large else MIN_CPU_CHANNELS_LAST_WIDTH
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            widths = [mod.out_channels] + ([mod.in_channels] if mod.in_channels != 3 else [])
            if min(widths) < least:
                return False
    return True


def candidates(
    device: torch.device,
    precision: str,
    channels_last: bool | None = None,
    model: torch.nn.Module | None = None,
    input_side: int | None = None,
) -> list[Setting]:
    """The settings to try: fp32 and, where supported, bf16; each with and without channels-last,
    unless ``channels_last`` fixes the memory format or ``model`` cannot run channels-last on
    ``device`` for inputs ``input_side`` wide (:func:`channels_last_safe`). A forced ``precision``
    keeps only that one."""
    precisions = [precision]
    if precision == "auto":
        precisions = ["fp32", "bf16"] if bf16_supported(device) else ["fp32"]
    formats = [False, True] if channels_last is None else [channels_last]
    if model is not None and not channels_last_safe(model, device, input_side):
        formats = [False]
    return [Setting(p, c) for p in precisions for c in formats]


def autocast(device: torch.device, setting: Setting) -> torch.autocast:
    """The autocast context of ``setting`` on ``device`` (a no-op for fp32)."""
    dev_type = device.type if device.type in ("cuda", "cpu") else "cpu"
    return torch.autocast(dev_type, dtype=torch.bfloat16, enabled=setting.precision == "bf16")


def probe(
    method: torch.nn.Module,
    step: Callable[[torch.nn.Module, Setting, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], None],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    settings: list[Setting],
    device: torch.device,
    *,
    steps: int = 2,
    rounds: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> ProbeResult:
    """Time ``step`` in every setting and pick the fastest.

    Each setting runs on its own deep copy of ``method`` (so the job's weights, batch-norm statistics,
    memory bank and partition constant are untouched) inside ``torch.random.fork_rng`` (so the job's
    random streams are too): the probe changes nothing the job computes afterwards. One warm-up step per
    setting is not timed (first calls allocate and pick kernels); then the settings take turns,
    ``rounds`` times ``steps`` steps each, so background load falls on all of them alike; the figure
    is the median over rounds of seconds per step.

    Args:
        step: one full training step (forward, inner attack, backward) of a method copy in a setting.
        batches: a few real batches (NCHW, fp32); they are cycled.
        clock: a timer (tests pass a fake one).
    """
    if len(settings) == 1:
        return ProbeResult(settings[0], {}, "forced")
    data = list(batches)
    if not data:
        return ProbeResult(settings[0], {}, "no data to probe on")
    copies: dict[Setting, torch.nn.Module] = {}
    times: dict[Setting, list[float]] = {s: [] for s in settings}
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for s in settings:
            m = copy.deepcopy(method)
            if s.channels_last:
                m.to(memory_format=torch.channels_last)
            copies[s] = m
            step(m, s, _formatted(data[0], s))  # warm-up
        k = 0
        for _ in range(rounds):
            for s in settings:
                _sync(device)
                t0 = clock()
                for _ in range(steps):
                    step(copies[s], s, _formatted(data[k % len(data)], s))
                    k += 1
                _sync(device)
                times[s].append((clock() - t0) / steps)
    figures = {s.name: statistics.median(t) for s, t in times.items()}
    chosen = min(settings, key=lambda s: figures[s.name])
    del copies
    return ProbeResult(chosen, figures, "fastest measured")


def _formatted(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], s: Setting):
    x, y, idx = batch
    return (x.contiguous(memory_format=torch.channels_last) if s.channels_last else x.contiguous()), y, idx


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(result: ProbeResult) -> str:
    """One log line: the choice and every figure."""
    figs = ", ".join(f"{k} {v * 1000:.0f} ms/step" for k, v in sorted(result.seconds_per_step.items()))
    return f"fast path: {result.chosen.name} ({result.reason}{': ' + figs if figs else ''})"


def compile_available(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, or None when it can: inductor generates C++
    on the CPU, so it needs a compiler."""
    if device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        return "torch.compile on the CPU needs a C++ compiler (g++ or clang++), and none is on PATH"
    return None


@contextmanager
def compiled(*models: torch.nn.Module | None, enabled: bool = True) -> Iterator[None]:
    """Run each model's ``body`` through ``torch.compile`` inside the block, then go back to eager.

    Only the body (normalised input -> feature map, where all the arithmetic is) is compiled, and the
    compiled function is kept in :data:`gacd_core.models.base.COMPILED_BODIES`, not on the model, so
    a deep copy (the probe's) or a saved file never carries it. Compilation happens at the first call
    of each mode (train, frozen for the inner attack, no-grad for the teacher) and is paid once per job.
    """
    added: list[int] = []
    if enabled:
        for m in models:
            body = getattr(m, "body", None)
            if m is None or body is None or id(m) in COMPILED_BODIES:
                continue
            device = next((p.device for p in m.parameters()), torch.device("cpu"))
            if not channels_last_safe(m, device):
                # inductor may lay narrow convolutions out channels-last, the case that corrupts torch
                # 2.14.1's CPU heap (see channels_last_safe); such a model stays eager
                log.warning("compile: %s has convolutions under 8 channels; eager on the CPU", type(m).__name__)
                continue
            COMPILED_BODIES[id(m)] = torch.compile(body)
            added.append(id(m))
    try:
        yield
    finally:
        for key in added:
            COMPILED_BODIES.pop(key, None)


@contextmanager
def eager(model: torch.nn.Module) -> Iterator[None]:
    """The eager body inside the block (monitoring on other batch sizes, which would recompile)."""
    fn = COMPILED_BODIES.pop(id(model), None)
    try:
        yield
    finally:
        if fn is not None:
            COMPILED_BODIES[id(model)] = fn
