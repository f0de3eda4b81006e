"""Peak memory and images/s of one training epoch, streamed from an image folder and in memory.

Generates two 10-class folders of 224-px JPEGs under ``.cache/stream_bench/`` (not committed): 2,000 and
20,000 training images (plus 100 test images each). Each measurement runs in a fresh process: one
epoch of ``natural`` training of a two-convolution model with a stride-8 stem (so that decoding and
augmentation, not the model, dominate), batch 64, random crop (padding 4) and flip at 224, fp32, on the CPU or a GPU
(``--device``). Reported per run: images/s of the epoch (the trainer's own measure), the main process's
peak RSS, and the largest peak RSS of a loader process.

- ``streamed-2000`` and ``streamed-20000``: ``dataset: {"name": "imagefolder", ...}``; the larger must
  not need more than 1.2x the main-process memory of the smaller (the run says whether it held);
- ``memory-2000``: the same images as ``custom`` (the whole split decoded into memory first);
- ``evaluate-2000`` and ``evaluate-20000``: a clean-only evaluation (``evaluate_model`` with no attack)
  of the same model over each folder's training images, streamed as an evaluation reads a split (a batch
  at a time, at the evaluation's transform); the larger must not need more than 1.2x the memory of the
  smaller either.

Not a timed test. ``make bench-stream`` runs it; results go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "stream_bench"
CLASSES = 10
TEST_PER_CLASS = 10


def generate(n_train: int, side: int = 224) -> Path:
    """``CACHE/n<n_train>/{train,test}/<class>/<i>.jpg``: smooth random images (gradients and boxes, so
    that JPEGs are of a realistic size), written once."""
    import numpy as np
    from PIL import Image

    folder = CACHE / f"n{n_train}"
    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(n_train)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for split, per_class in (("train", n_train // CLASSES), ("test", TEST_PER_CLASS)):
        for c in range(CLASSES):
            d = folder / split / f"class{c:02d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                a, b, col = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 255, 3)
                img = (col * (0.5 + 0.5 * np.sin(6 * (a * xx + b * yy) + c))[..., None]).astype(np.uint8)
                y0, x0 = rng.integers(0, side // 2, 2)
                img[y0 : y0 + side // 4, x0 : x0 + side // 4] = rng.integers(0, 256, 3)
                Image.fromarray(img).save(d / f"{i:05d}.jpg", quality=90)
    done.touch()
    return folder


def _tiny_model(num_classes: int, mean: Any, std: Any) -> Any:
    """A two-convolution classifier with a stride-8 stem: at 224 px it costs little next to decoding."""
    from torch import nn

    from gacd_core.models.base import ImageClassifier

    class Tiny(ImageClassifier):
        def __init__(self) -> None:
            super().__init__(num_classes, mean, std)
            self.arch, self.num_features = "bench_tiny", 16
            self.stem = nn.Sequential(
                nn.Conv2d(3, 8, 7, stride=8, padding=3), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()
            )
            self.linear = nn.Linear(16, num_classes)

        def body(self, x: Any) -> Any:
            return self.stem(x)

    return Tiny()


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


def measure(kind: str, folder: Path, device: str, workers: int) -> dict[str, Any]:
    """One epoch in this process (the child's side of :func:`run`)."""
    import torch

    from gacd_core.data import load_dataset
    from gacd_core.jobs import resolve_device
    from gacd_core.methods import METHODS, MethodContext
    from gacd_core.spec import DatasetSpec, parse_spec

    torch.manual_seed(0)
    t0 = time.perf_counter()
    if kind == "memory":
        ds = DatasetSpec(name="custom", path=str(folder), image_size=224)
    else:
        ds = DatasetSpec(name="imagefolder", path=folder.name, root=str(folder.parent), workers=workers)
    data = load_dataset(ds)
    load_seconds = time.perf_counter() - t0
    spec = parse_spec({"method": "natural", "hyperparameters": {"epochs": 1, "batch_size": 64, "lr": 0.05}})
    dev = resolve_device(device)
    student = _tiny_model(data.num_classes, data.mean, data.std)
    method = METHODS.get("natural")(
        student, None, spec.params, MethodContext(data.num_classes, data.train.labels, spec.hyperparameters.attack)
    ).to(dev)
    from gacd_core.trainer import Trainer

    trainer = Trainer(
        method,
        data.train,
        spec.hyperparameters,
        device=dev,
        precision="fp32",
        seed=0,
        transform=data.transform,
        workers=workers,
    )
    result = trainer.fit()
    return {
        "kind": kind,
        "train_images": len(data.train),
        "load_seconds": round(load_seconds, 2),
        "epoch_seconds": round(result.seconds, 2),
        "images_per_second": round(result.images_per_second, 1),
        "peak_rss_mib": round(_peak_mib(resource.RUSAGE_SELF), 1),
        "loader_peak_rss_mib": round(_peak_mib(resource.RUSAGE_CHILDREN), 1),
        "workers": workers if kind == "streamed" else 0,
        "device": str(dev),
    }


def measure_evaluation(folder: Path, device: str, workers: int) -> dict[str, Any]:
    """A clean-only evaluation pass over the folder's training images, streamed (the child's side of
    :func:`run`): what grows with the folder is the per-image logits, features and correctness bits."""
    import torch

    from gacd_core.data import load_dataset
    from gacd_core.evaluation import evaluate_model
    from gacd_core.jobs import resolve_device
    from gacd_core.spec import DatasetSpec, EvaluationSpec

    torch.manual_seed(0)
    data = load_dataset(DatasetSpec(name="imagefolder", path=folder.name, root=str(folder.parent), workers=workers))
    dev = resolve_device(device)
    model = _tiny_model(data.num_classes, data.mean, data.std)
    ev = EvaluationSpec(attacks=[], eps_sweep=[], batch_size=64, throughput=False)
    result = evaluate_model(model, data.train, ev, dev)
    seconds = result.metrics["seconds"]
    return {
        "kind": "evaluate",
        "train_images": len(data.train),
        "load_seconds": 0.0,
        "epoch_seconds": round(seconds, 2),
        "images_per_second": round(len(data.train) / seconds, 1),
        "peak_rss_mib": round(_peak_mib(resource.RUSAGE_SELF), 1),
        "loader_peak_rss_mib": round(_peak_mib(resource.RUSAGE_CHILDREN), 1),
        "workers": workers,
        "device": str(dev),
    }


def run(kind: str, folder: Path, device: str, workers: int) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter (its peak RSS is its own)."""
    cmd = [sys.executable, __file__, "--child", kind, str(folder), "--device", device, "--workers", str(workers)]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)))
    p.add_argument("--sizes", type=int, nargs=2, default=[2000, 20000])
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, folder = args.child[0], Path(args.child[1])
        row = measure_evaluation(folder, args.device, args.workers) if kind == "evaluate" else None
        print(json.dumps(row or measure(kind, folder, args.device, args.workers)))
        return
    small, large = (generate(n) for n in args.sizes)
    rows = [
        run("streamed", small, args.device, args.workers),
        run("streamed", large, args.device, args.workers),
        run("memory", small, args.device, args.workers),
        run("evaluate", small, args.device, args.workers),
        run("evaluate", large, args.device, args.workers),
    ]
    ratio = rows[1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    eval_ratio = rows[4]["peak_rss_mib"] / rows[3]["peak_rss_mib"]
    total = [(r["peak_rss_mib"] + r["workers"] * r["loader_peak_rss_mib"]) for r in rows[:2]]
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "rows": rows,
        "rss_ratio_large_over_small": round(ratio, 3),
        "rss_ratio_with_loaders": round(total[1] / total[0], 3),
        "within_1_2x": ratio <= 1.2,
        "evaluation_rss_ratio_large_over_small": round(eval_ratio, 3),
        "evaluation_within_1_2x": eval_ratio <= 1.2,
        "streamed_over_memory_images_per_second": round(rows[0]["images_per_second"] / rows[2]["images_per_second"], 3),
    }
    for r in rows:
        print(
            f"{r['kind']:>8} {r['train_images']:>6} images: {r['images_per_second']:>8.1f} img/s, epoch "
            f"{r['epoch_seconds']:>6.1f} s, load {r['load_seconds']:>5.1f} s, peak RSS {r['peak_rss_mib']:>7.1f} MiB "
            f"(loader processes: {r['workers']} x <= {r['loader_peak_rss_mib']:.1f} MiB)"
        )
    print(
        f"peak RSS 20k / 2k: {ratio:.3f} (main process), {summary['rss_ratio_with_loaders']:.3f} (with loaders); "
        f"within 1.2x: {summary['within_1_2x']}; streamed / in-memory img/s on 2k: "
        f"{summary['streamed_over_memory_images_per_second']:.3f}"
    )
    print(f"clean evaluation, peak RSS 20k / 2k: {eval_ratio:.3f} (main process); within 1.2x: {eval_ratio <= 1.2}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
