"""One GACD training step in one process and in several (torch.distributed), timed side by side; and the
all-reduce of the step's gradients alone. Not a test: a measurement, printed.

    python benchmarks/distributed.py                                  # 1 and 2 gloo processes, tiny models
    python benchmarks/distributed.py --student resnet18 --teacher resnet18 --side 32 --batch 64 --steps 10
    python benchmarks/distributed.py --processes 1 2 4 --threads 1 --json out.json

For each count of processes it starts ``torchrun --standalone --nproc_per_node=N`` on this script
(``--rank``), where every process builds the same :class:`~gacd_core.trainer.Trainer` (method ``gacd``,
random in-memory images, the job's default 10-step guided attack unless ``--attack-steps``) and takes
``--steps`` timed steps of the global batch ``--batch`` after ``--warmup`` untimed ones; rank 0 reports
the images per second of the global batch. It then times ``--reduces`` all-reduces of one flat tensor the
size of the student's and the heads' gradients (what DDP reduces each step, in buckets). Each process
gets ``--threads`` CPU threads, so N processes use N times as many cores: on a machine with fewer free
cores than that, the figure measures the contention, not the scaling. docs/deployment.md discusses
what it means for GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _trainer(args: argparse.Namespace) -> Any:
    from gacd_core.data import ImageSet
    from gacd_core.methods import METHODS, MethodContext
    from gacd_core.models import create_model
    from gacd_core.spec import parse_spec
    from gacd_core.trainer import Trainer

    hyper = {"batch_size": args.batch, "epochs": 1, "attack": {"steps": args.attack_steps}}
    spec = parse_spec({"method": "gacd", "teacher": {"weights": "unused"}, "hyperparameters": hyper})
    n = args.batch * (args.steps + args.warmup)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, args.side, args.side), dtype=torch.uint8, generator=gen)
    data = ImageSet(images, torch.arange(n) % 10)
    torch.manual_seed(0)
    teacher, student = create_model(args.teacher, 10), create_model(args.student, 10)
    ctx = MethodContext(10, data.labels, spec.hyperparameters.attack)
    method = METHODS.get("gacd")(student, teacher, spec.params, ctx)
    return Trainer(method, data, spec.hyperparameters, device=torch.device("cpu"), precision="fp32", augment=False)


def _rank(args: argparse.Namespace) -> None:
    """One process of the measurement (under torchrun, or alone for one process)."""
    import torch.distributed as dist

    from gacd_core import distributed

    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    with distributed.job_group(world, gpus=False):
        t = _trainer(args)
        t.method.train()
        batches = iter(t.batches)
        for _ in range(args.warmup):
            t.train_step(*next(batches))
        start = time.perf_counter()
        for _ in range(args.steps):
            t.train_step(*next(batches))
        seconds = time.perf_counter() - start
        numel = sum(p.numel() for p in t.method.trainable_parameters())
        del t  # its DistributedDataParallel must go before the process group does
        reduce_s = None
        if distributed.active():
            flat = torch.zeros(numel)
            dist.all_reduce(flat)  # warm-up
            times = []
            for _ in range(args.reduces):
                r0 = time.perf_counter()
                dist.all_reduce(flat)
                times.append(time.perf_counter() - r0)
            reduce_s = statistics.median(times)
        if distributed.is_main():
            row = {
                "processes": world,
                "images_per_second": args.batch * args.steps / seconds,
                "seconds_per_step": seconds / args.steps,
                "allreduce_seconds": reduce_s,
                "gradient_mb": numel * 4 / 2**20,
            }
            print(json.dumps(row), flush=True)


def _launch(args: argparse.Namespace, n: int) -> dict[str, Any]:
    own = [sys.argv[0], "--rank", *_passed(args)]
    argv = [sys.executable, *own] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    if n > 1:
        argv += [f"--nproc_per_node={n}", *own]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{n} processes failed:\n{out.stderr[-3000:]}")
    return dict(json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1]))


def _passed(args: argparse.Namespace) -> list[str]:
    keys = ("student", "teacher", "side", "batch", "steps", "warmup", "attack_steps", "threads", "reduces")
    return [item for k in keys for item in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="tiny_resnet")
    ap.add_argument("--teacher", default="tiny_wrn")
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32, help="the global batch (divisible by every count)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--attack-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    ap.add_argument("--reduces", type=int, default=20)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank:
        _rank(args)
        return
    rows = [_launch(args, n) for n in args.processes]
    base = rows[0]["images_per_second"]
    print(
        f"GACD step, {args.student} from {args.teacher}, {args.side} px, global batch {args.batch}, "
        f"{args.attack_steps}-step attack, {args.threads} thread(s) per process"
    )
    for r in rows:
        line = f"  {r['processes']} process(es): {r['images_per_second']:.1f} img/s"
        line += f" ({r['images_per_second'] / base:.2f}x), {r['seconds_per_step']:.3f} s/step"
        if r["allreduce_seconds"] is not None:
            line += f", all-reduce of {r['gradient_mb']:.2f} MB: {1e3 * r['allreduce_seconds']:.2f} ms"
        print(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
