"""Training and PGD-20 evaluation throughput: a naive reference against our trainer, in one run.

For each student and method, two implementations train on the same kind of batches in the same
process, taking turns (naive, ours, ours, naive, ...) so that background load falls on both alike:

- **naive**: written the way the peers' public code trains (ARD, RSLAD, TRADES-style loops): a
  ``Dataset`` that turns each uint8 image into a PIL image and applies torchvision's
  ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()`` and ``ToTensor()`` per sample, a
  ``DataLoader`` (``--naive-workers``, 0 by default: on a 2-core machine worker processes only take
  the cores the training needs, and in an alternating benchmark they would prefetch during our turns),
  fp32, NCHW, and a PGD loop that puts the model in eval mode, takes ``autograd.grad`` with respect to
  the input with the parameters still requiring gradients, and builds new tensors every step. The
  losses are the same code as ours: the naive reference calls the same method objects with the PGD
  loop swapped.
- **ours**: :class:`gacd_core.trainer.Trainer` with ``precision="auto"`` (its probe at start is timed
  separately and reported), the tensor-resident batches, the in-place PGD with frozen parameters.

Columns: images/s of each (median of the rounds' rates), the ratio, device, threads, the fast-path
setting chosen, the probe's seconds, peak memory during each implementation's steps (RSS of the
process sampled every 10 ms on the CPU, ``max_memory_allocated`` on CUDA) and, for resnet18 on CUDA,
the achieved TFLOP/s (FLOPs of one step counted by ``torch.utils.flop_counter``) against the measured
bf16 matmul peak. Then PGD-20 evaluation images/s: naive (per-sample ``ToTensor`` through a
``DataLoader``, the naive PGD loop) against ours (:func:`gacd_core.evaluation` batches and the protocol's
PGD-20, fp32, in the memory format our training chose).

Run: ``python benchmarks/train_throughput.py`` (``make bench-train``); ``--device cuda`` on a GPU;
``--profile resnet18`` prints where one GACD step's time goes, naive and ours. Images are random uint8
(speed does not depend on content); the teacher is a randomly initialised ``--teacher``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gacd_core import fastpath  # noqa: E402
from gacd_core.attacks import protocol_attack  # noqa: E402
from gacd_core.data import ImageSet  # noqa: E402
from gacd_core.evaluation import _batches  # noqa: E402
from gacd_core.methods import METHODS, MethodContext  # noqa: E402
from gacd_core.models import create_model  # noqa: E402
from gacd_core.spec import parse_spec  # noqa: E402
from gacd_core.trainer import Trainer  # noqa: E402

STUDENTS = ["resnet10_w8", "resnet10_w16", "mobilenetv2", "resnet18"]
METHOD_NAMES = ["at", "ard", "gacd"]


# --------------------------------------------------------------------------------------------------
# The naive reference
# --------------------------------------------------------------------------------------------------
class PILImages(Dataset):
    """torchvision.datasets.CIFAR10's ``__getitem__``: HWC uint8 -> PIL image -> transforms, per sample."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.data = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C), as CIFAR10.data
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        img = Image.fromarray(self.data[i])
        return self.transform(img), self.targets[i], i


def naive_perturb(eps: float, steps: int, step_size: float):
    """The PGD loop of the peers' code, as a drop-in for ``PGD.perturb``."""

    def perturb(model: nn.Module, x: torch.Tensor, loss_fn, also_freeze=()) -> torch.Tensor:
        was = model.training
        model.eval()
        x = x.detach()
        x_adv = torch.clamp(x + torch.empty_like(x).uniform_(-eps, eps), 0, 1)
        for _ in range(steps):
            x_adv.requires_grad_()
            loss = loss_fn(model, x_adv).sum()
            grad = torch.autograd.grad(loss, [x_adv])[0]
            x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        model.train(was)
        return x_adv.detach()

    return perturb


def naive_loader(data: ImageSet, batch_size: int, workers: int, train: bool, device: torch.device) -> DataLoader:
    import torchvision.transforms as T

    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()]) if train else T.ToTensor()
    return DataLoader(
        PILImages(data.images, data.labels, tf),
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )


def cycle(make: Callable[[], Any]) -> Iterator[Any]:
    while True:
        yield from make()


class NaiveTrainer:
    """The peers' loop: fp32, NCHW, DataLoader batches, the same losses with the naive PGD loop."""

    def __init__(self, method: nn.Module, loader: DataLoader, hyper, device: torch.device) -> None:
        self.method, self.device = method, device
        self.batches = cycle(lambda: iter(loader))
        self.optimizer = torch.optim.SGD(
            list(method.trainable_parameters()), lr=hyper.lr, momentum=hyper.momentum, weight_decay=5e-4
        )

    def step(self) -> None:
        x, y, idx = next(self.batches)
        x, y, idx = x.to(self.device), y.to(self.device), idx.to(self.device)
        out = self.method.training_step(x, y, idx)
        self.optimizer.zero_grad()
        out.loss.backward()
        self.optimizer.step()


class OurTrainer:
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.epoch = 0
        self.batches = cycle(self._epoch)

    def _epoch(self):
        self.epoch += 1
        self.trainer.batches.set_epoch(self.epoch)
        return iter(self.trainer.batches)

    def step(self) -> None:
        self.trainer.train_step(*next(self.batches))


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory while a label is active: RSS sampled on the CPU, max_memory_allocated on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.label, self.peak = device, None, {}
        self._stop = threading.Event()
        if device.type == "cpu":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            if self.label is not None:
                self.peak[self.label] = max(self.peak.get(self.label, 0), self._rss())

    def start(self, label: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.label = label

    def stop(self) -> None:
        if self.device.type == "cuda":
            used = torch.cuda.max_memory_allocated(self.device)
            self.peak[self.label] = max(self.peak.get(self.label, 0), used)
        self.label = None

    def close(self) -> None:
        self._stop.set()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(
    runners: dict[str, Callable[[], None]], images_per_call: int, calls: int, rounds: int, device, mem: PeakMemory
) -> dict[str, float]:
    """Images/s of each runner: one untimed warm-up call each, then ``rounds`` rounds in which each
    runs ``calls`` calls, the order reversed every other round; the median of the rounds' rates."""
    for fn in runners.values():
        fn()
    rates: dict[str, list[float]] = {k: [] for k in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            mem.start(name)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(calls):
                runners[name]()
            sync(device)
            rates[name].append(calls * images_per_call / (time.perf_counter() - t0))
            mem.stop()
    return {k: statistics.median(v) for k, v in rates.items()}


def bf16_matmul_peak(device: torch.device, n: int = 8192, reps: int = 20) -> float:
    """Measured bf16 matmul TFLOP/s of ``device`` (n x n by n x n)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def step_flops(fn: Callable[[], None]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


# --------------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------------
def synthetic(n: int, seed: int) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10)


def job_spec(method: str, args) -> Any:
    doc: dict[str, Any] = {
        "method": method,
        "hyperparameters": {
            "batch_size": args.batch_size,
            "epochs": 1000,
            "attack": {"steps": args.attack_steps, "step_size": 2.5 * (8 / 255) / args.attack_steps},
            "method_params": {"n_negatives": min(1024, args.train_size // 2)} if method == "gacd" else {},
        },
    }
    if method != "at":
        doc["teacher"] = {"weights": "unused"}
    return parse_spec(doc)


def build(method: str, student: str, data: ImageSet, args, device: torch.device, seed: int = 0):
    spec = job_spec(method, args)
    torch.manual_seed(seed)
    teacher = create_model(args.teacher).to(device) if method != "at" else None
    m = METHODS.get(method)(
        create_model(student), teacher, spec.params, MethodContext(10, data.labels, spec.hyperparameters.attack)
    ).to(device)
    return m, spec


def naive_method(method: str, student: str, data: ImageSet, args, device: torch.device):
    m, spec = build(method, student, data, args, device)
    a = spec.hyperparameters.attack
    for attr in ("adversary", "guided", "kl_adversary"):
        if hasattr(m, attr):
            getattr(m, attr).perturb = naive_perturb(a.eps, a.steps, a.step_size)
    return m, spec


def measure_training(student: str, method: str, args, device: torch.device, mem: PeakMemory) -> dict[str, Any]:
    data = synthetic(args.train_size, 0)
    naive_m, spec = naive_method(method, student, data, args, device)
    naive = NaiveTrainer(
        naive_m, naive_loader(data, args.batch_size, args.naive_workers, True, device), spec.hyperparameters, device
    )
    ours_m, _ = build(method, student, data, args, device)
    trainer = Trainer(ours_m, data, spec.hyperparameters, device=device, precision=args.precision, probe_steps=1)
    t0 = time.perf_counter()
    setting = trainer.choose_setting()
    probe_s = time.perf_counter() - t0
    ours = OurTrainer(trainer)
    runners = {"naive": naive.step, "ours": ours.step}
    with contextlib.ExitStack() as stack:
        if args.compile:
            # the same trainer in the probe's setting, its models' bodies compiled; the first step compiles
            comp_m, _ = build(method, student, data, args, device)
            comp = OurTrainer(
                Trainer(
                    comp_m,
                    data,
                    spec.hyperparameters,
                    device=device,
                    precision=setting.precision,
                    channels_last=setting.channels_last,
                    compile=True,
                )
            )
            stack.enter_context(fastpath.compiled(comp_m.student, comp_m.teacher))
            t0 = time.perf_counter()
            comp.step()
            compile_s = time.perf_counter() - t0
            runners["ours+compile"] = comp.step
        rates = alternate(runners, args.batch_size, args.calls, args.rounds, device, mem)
    row: dict[str, Any] = {
        "student": student,
        "method": method,
        "naive_img_s": rates["naive"],
        "ours_img_s": rates["ours"],
        "ratio": rates["ours"] / rates["naive"],
        "setting": setting.name,
        "probe_s": probe_s,
        "probe": trainer.probe_result.as_dict() if trainer.probe_result else None,
        "naive_peak_mb": mem.peak.pop("naive", 0) / 2**20,
        "ours_peak_mb": mem.peak.pop("ours", 0) / 2**20,
    }
    if args.compile:
        row["compiled_img_s"] = rates["ours+compile"]
        row["compiled_ratio"] = rates["ours+compile"] / rates["naive"]
        row["compile_s"] = compile_s
        row["compiled_peak_mb"] = mem.peak.pop("ours+compile", 0) / 2**20
    if device.type == "cuda" and student == "resnet18":
        flops = step_flops(ours.step)
        row["step_tflop"] = flops / 1e12
        row["ours_tflop_s"] = flops * rates["ours"] / args.batch_size / 1e12
    return row


def measure_eval(student: str, channels_last: bool, args, device: torch.device, mem: PeakMemory) -> dict[str, Any]:
    data = synthetic(args.eval_size, 1)
    torch.manual_seed(0)
    naive_model = create_model(student).to(device).eval()
    ours_model = create_model(student).to(device).eval()
    ours_model.load_state_dict(naive_model.state_dict())
    if channels_last:
        ours_model.to(memory_format=torch.channels_last)
    eps = 8 / 255
    naive_attack = naive_perturb(eps, 20, eps / 4)
    ours_attack = protocol_attack("pgd20", eps)
    loader = naive_loader(data, args.eval_batch, args.naive_workers, False, device)

    def naive_pass() -> None:
        for x, y, _ in loader:
            x, y = x.to(device), y.to(device)
            x_adv = naive_attack(
                naive_model, x, lambda m, xa, y=y: nn.functional.cross_entropy(m(xa), y, reduction="none")
            )
            with torch.no_grad():
                naive_model(x_adv).argmax(1).eq(y).sum().item()

    def ours_pass() -> None:
        for _, x, y in _batches(data, args.eval_batch, device, channels_last):
            x_adv = ours_attack(ours_model, x, y)
            with torch.no_grad():
                ours_model(x_adv).argmax(1).eq(y).sum().item()

    rates = alternate({"naive": naive_pass, "ours": ours_pass}, len(data), 1, args.rounds, device, mem)
    return {
        "student": student,
        "naive_img_s": rates["naive"],
        "ours_img_s": rates["ours"],
        "ratio": rates["ours"] / rates["naive"],
        "channels_last": channels_last,
        "naive_peak_mb": mem.peak.pop("naive", 0) / 2**20,
        "ours_peak_mb": mem.peak.pop("ours", 0) / 2**20,
    }


def profile(student: str, args, device: torch.device) -> None:
    """Where one GACD step's time goes, naive and ours (top operators by self time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    data = synthetic(args.train_size, 0)
    naive_m, spec = naive_method("gacd", student, data, args, device)
    naive = NaiveTrainer(
        naive_m, naive_loader(data, args.batch_size, args.naive_workers, True, device), spec.hyperparameters, device
    )
    ours_m, _ = build("gacd", student, data, args, device)
    trainer = Trainer(ours_m, data, spec.hyperparameters, device=device, precision=args.precision, probe_steps=1)
    trainer.choose_setting()
    print(fastpath.describe(trainer.probe_result) if trainer.probe_result else f"setting: {trainer.setting}")
    ours = OurTrainer(trainer)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for name, fn in (("naive", naive.step), ("ours", ours.step)):
        fn()
        with prof(activities=activities) as p:
            fn()
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"\n=== {name}: one GACD step, {student}, batch {args.batch_size}, PGD-{args.attack_steps} ===")
        print(p.key_averages().table(sort_by=key, row_limit=args.profile_rows))


# --------------------------------------------------------------------------------------------------
def machine(device: torch.device) -> dict[str, Any]:
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        )
    except OSError:
        commit, dirty = "?", False
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {cpu}",
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cpu_bf16": fastpath.cpu_has_bf16(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": commit + ("+dirty" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--students", nargs="+", default=STUDENTS)
    p.add_argument("--methods", nargs="+", default=METHOD_NAMES)
    p.add_argument("--eval-students", nargs="*", default=None, help="default: the students")
    p.add_argument("--teacher", default="resnet10_w16")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--attack-steps", type=int, default=2, help="PGD-K of the training attack")
    p.add_argument("--train-size", type=int, default=1024)
    p.add_argument("--eval-size", type=int, default=128)
    p.add_argument("--eval-batch", type=int, default=128)
    p.add_argument("--calls", type=int, default=1, help="steps per turn")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--compile", action="store_true", help="also ours with torch.compile (compile time reported)")
    p.add_argument("--naive-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--profile", default=None, metavar="STUDENT", help="profile one GACD step instead")
    p.add_argument("--profile-rows", type=int, default=15)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.profile:
        profile(args.profile, args, device)
        return 0
    info = machine(device)
    print(json.dumps(info))
    if device.type == "cuda":
        info["bf16_matmul_peak_tflop_s"] = bf16_matmul_peak(device)
    mem = PeakMemory(device)
    rows, evals, chosen_cl = [], [], {}
    for student in args.students:
        for method in args.methods:
            row = measure_training(student, method, args, device, mem)
            chosen_cl[student] = row["setting"].endswith("channels_last")
            rows.append(row)
            print(json.dumps(row), flush=True)
    for student in args.students if args.eval_students is None else args.eval_students:
        row = measure_eval(student, chosen_cl.get(student, device.type == "cuda"), args, device, mem)
        evals.append(row)
        print(json.dumps(row), flush=True)
    mem.close()
    info["load_after"] = os.getloadavg()
    result = {
        "machine": info,
        "settings": vars(args) | {"json": None, "eval_students": args.eval_students},
        "train": rows,
        "eval": evals,
    }
    if device.type == "cuda" and "bf16_matmul_peak_tflop_s" in info:
        for r in rows:
            if "ours_tflop_s" in r:
                r["fraction_of_peak"] = r["ours_tflop_s"] / info["bf16_matmul_peak_tflop_s"]
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


def table(result: dict[str, Any]) -> str:
    dev = result["machine"]["device"]
    unit = "peak RSS MB" if dev.startswith("CPU") else "max allocated MB"
    lines = [
        f"| student | method | naive img/s | ours img/s | ratio | setting (probe s) | naive {unit} | ours {unit} "
        "| TFLOP/s |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in result["train"]:
        tf = (
            f"{r['ours_tflop_s']:.1f} ({100 * r.get('fraction_of_peak', 0):.0f}% of peak)"
            if "ours_tflop_s" in r
            else ""
        )
        lines.append(
            f"| {r['student']} | {r['method']} | {r['naive_img_s']:.1f} | {r['ours_img_s']:.1f} | {r['ratio']:.2f}x "
            f"| {r['setting']} ({r['probe_s']:.0f}) | {r['naive_peak_mb']:.0f} | {r['ours_peak_mb']:.0f} | {tf} |"
        )
    compiled = [r for r in result["train"] if "compiled_img_s" in r]
    if compiled:
        lines += [
            "",
            "| student | method | naive img/s | ours img/s | ours + torch.compile img/s | compile vs naive | "
            "compile vs ours | compile s |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in compiled:
            lines.append(
                f"| {r['student']} | {r['method']} | {r['naive_img_s']:.1f} | {r['ours_img_s']:.1f} | "
                f"{r['compiled_img_s']:.1f} | {r['compiled_ratio']:.2f}x | "
                f"{r['compiled_img_s'] / r['ours_img_s']:.2f}x | {r['compile_s']:.0f} |"
            )
    lines += [
        "",
        f"| student | PGD-20 eval naive img/s | ours img/s | ratio | channels_last | naive {unit} | ours {unit} |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in result["eval"]:
        lines.append(
            f"| {r['student']} | {r['naive_img_s']:.1f} | {r['ours_img_s']:.1f} | {r['ratio']:.2f}x "
            f"| {r['channels_last']} | {r['naive_peak_mb']:.0f} | {r['ours_peak_mb']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    np.random.seed(0)
    raise SystemExit(main())
