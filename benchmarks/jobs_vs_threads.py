"""Which split of the cores trains the comparison's runs faster: one run at a time with every thread, or
one run per core with one thread each? (``benchmarks/compare.py --jobs/--threads``.)

    python benchmarks/jobs_vs_threads.py --data-root .cache/cifar10 --row "gacd (defaults)" --images 3280

Both arms train the same student as ``compare.py --scale cpu`` (same row, teacher, attack and batch), for
one epoch on ``--images`` training images, in fp32 so that no precision probe differs between them, and
evaluate only FGSM on 100 test images. Arm A: ``--rounds`` runs one after another, each with
``cores`` threads. Arm B: ``cores`` runs at once, one thread each. The two arms alternate, A then B, so
that a drift in the machine's load touches both. The figure is aggregate training images per second
(images trained by all the arm's runs over the arm's training wall time), and B/A is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def one_run(row: str, images: int, threads: int, data_root: str, out: str) -> dict:
    """Child process: train one epoch, print its figures as a JSON line."""
    import compare as cmp
    import torch

    from gacd_core.jobs import run_job
    from gacd_core.spec import parse_spec

    torch.set_num_threads(threads)
    base = cmp.SCALES["cpu"]
    scale = replace(base, train_subset=images, student_epochs=1, test_subset=100, eval_attacks=("fgsm",))
    store = ROOT / "benchmarks" / "compare" / "cpu"
    t_doc = cmp.teacher_spec(base, data_root, "test")
    teacher = cmp.run_folder(store, "teacher", t_doc) / cmp.STUDENT_WEIGHTS
    if not teacher.is_file():
        raise SystemExit(f"the cpu-scale teacher is missing ({teacher}); train it with compare.py --train")
    doc = cmp.student_spec(scale, data_root, cmp.ROWS[row], 0, str(teacher), "val")
    doc["precision"] = "fp32"
    t0 = time.perf_counter()
    report = run_job(parse_spec(doc), Path(out), resume=False)
    assert report.training is not None  # a training job
    return {"threads": threads, "wall": time.perf_counter() - t0, "train_s": report.training.seconds}


def arm(args: argparse.Namespace, jobs: int, threads: int) -> float:
    """Start ``jobs`` children at once; aggregate training images per second."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        t0 = time.perf_counter()
        for j in range(jobs):
            cmd = [sys.executable, __file__, "--child", "--row", args.row, "--images", str(args.images)]
            cmd += ["--threads", str(threads), "--data-root", args.data_root, "--out", f"{tmp}/{j}"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        results = []
        for p in procs:
            stdout, _ = p.communicate()
            if p.returncode:
                raise SystemExit(f"a child run failed (exit {p.returncode})")
            results.append(json.loads(stdout.strip().splitlines()[-1]))
        wall = time.perf_counter() - t0
    train_wall = max(r["train_s"] for r in results)
    rate = jobs * args.images / train_wall
    print(
        json.dumps(
            {
                "jobs": jobs,
                "threads": threads,
                "train_s": [round(r["train_s"], 1) for r in results],
                "wall_s": round(wall, 1),
                "images_per_s": round(rate, 1),
            }
        ),
        flush=True,
    )
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=os.environ.get("GACD_DATA_ROOT", str(ROOT / "data")))
    ap.add_argument("--row", default="gacd (defaults)", help="a row of compare.py's table")
    ap.add_argument("--images", type=int, default=3280, help="training images of the one epoch")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=1, help="A/B alternations")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_run(args.row, args.images, args.threads, args.data_root, args.out)))
        return
    a, b = [], []
    for _ in range(args.rounds):
        a.append(arm(args, 1, args.cores))
        b.append(arm(args, args.cores, 1))
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    print(
        f"A: 1 run x {args.cores} threads: {ma:.1f} img/s; B: {args.cores} runs x 1 thread: {mb:.1f} img/s; "
        f"B/A = {mb / ma:.2f}x"
    )


if __name__ == "__main__":
    main()
