"""A small, CPU-sized comparison of every method and of GACD's loss terms, on real CIFAR-10.

It trains a robust teacher (``at``) and a ``natural`` model of the same size, then students from the
robust teacher by each distillation method and by GACD variants, all with one budget, and prints one
table of clean and PGD-20 accuracy. It is what set GACD's provisional defaults (docs/method.md); the
full-size experiment needs a GPU.

    python benchmarks/cpu_ablation.py --data-root data --out runs/ablation --jobs 2

Each run is a normal job through ``gacd_core.jobs.run_job``; results land in ``--out/<name>/``.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

STUDENTS: list[tuple[str, str, dict[str, Any]]] = [
    # (name, method, method_params)
    ("kd", "kd", {}),
    ("ard", "ard", {}),
    ("rslad", "rslad", {}),
    ("crd", "crd", {"n_negatives": 1024}),
    ("gacd (defaults)", "gacd", {"n_negatives": 1024}),
    ("gacd, lambda_nce=1, lambda_ce=0", "gacd", {"n_negatives": 1024, "lambda_nce": 1.0, "lambda_ce": 0.0}),
    ("gacd, lambda_nce=0.3", "gacd", {"n_negatives": 1024, "lambda_nce": 0.3}),
    ("gacd, lambda_nce=0 (KD+CE on guided x')", "gacd", {"n_negatives": 1024, "lambda_nce": 0.0}),
    ("gacd, lambda_ce=0", "gacd", {"n_negatives": 1024, "lambda_ce": 0.0}),
    ("gacd, kd_temperature=30, lambda_ce=0", "gacd", {"n_negatives": 1024, "kd_temperature": 30.0, "lambda_ce": 0.0}),
    ("gacd, attack=ce", "gacd", {"n_negatives": 1024, "attack": "ce"}),
    ("gacd, reweight=none", "gacd", {"n_negatives": 1024, "reweight": "none"}),
    ("gacd, reweight=hard", "gacd", {"n_negatives": 1024, "reweight": "hard"}),
    ("gacd, in-batch negatives", "gacd", {"negatives": "in_batch"}),
]


def spec_for(args: argparse.Namespace, method: str, arch: str, params: dict[str, Any], teacher: str | None) -> dict:
    steps = args.attack_steps
    doc: dict[str, Any] = {
        "method": method,
        "student": {"arch": arch},
        "dataset": {
            "name": "cifar10",
            "root": args.data_root,
            "train_subset": args.train_subset,
            "test_subset": args.test_subset,
        },
        "hyperparameters": {
            "epochs": args.epochs,
            "batch_size": 128,
            "lr": 0.1,
            "schedule": "cosine",
            "attack": {"steps": steps, "step_size": 2.5 * (8 / 255) / steps},
            "method_params": params,
        },
        "evaluation": {"attacks": ["pgd20"], "eps_sweep": [], "throughput": False, "teacher": False},
        "device": "cpu",
        "seed": args.seed,
    }
    if teacher:
        doc["teacher"] = {"weights": teacher}
    return doc


def run_one(name: str, doc: dict, out: str, threads: int) -> dict[str, Any]:
    import torch

    from gacd_core.jobs import run_job
    from gacd_core.spec import parse_spec

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    report = run_job(parse_spec(doc), out, resume=False)
    return {
        "name": name,
        "method": doc["method"],
        "params": doc["hyperparameters"]["method_params"],
        "arch": doc["student"]["arch"],
        "clean_acc": report["metrics"]["clean_acc"],
        "pgd20_acc": report["metrics"]["pgd20_acc"],
        "seconds": time.perf_counter() - t0,
        "environment": report["environment"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--jobs", type=int, default=2, help="students trained at once (one thread each)")
    ap.add_argument("--train-subset", type=int, default=5000)
    ap.add_argument("--test-subset", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--attack-steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher-arch", default="resnet10_w16")
    ap.add_argument("--student-arch", default="resnet10_w8")
    args = ap.parse_args()
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        teachers = [
            pool.submit(run_one, name, spec_for(args, name, args.teacher_arch, {}, None), str(args.out / name), 1)
            for name in ("natural", "at")
        ]
        rows += [f.result() for f in teachers]
        teacher = str(args.out / "at" / "student.safetensors")
        futures = [
            pool.submit(
                run_one,
                name,
                spec_for(args, method, args.student_arch, params, teacher),
                str(args.out / name.replace(" ", "_").replace(",", "").replace("'", "")),
                1,
            )
            for name, method, params in STUDENTS
        ]
        for f in futures:
            rows.append(f.result())
            r = rows[-1]
            print(f"{r['name']:<45} clean {100 * r['clean_acc']:5.1f}%  pgd20 {100 * r['pgd20_acc']:5.1f}%", flush=True)
    env = rows[0]["environment"]
    (args.out / "results.json").write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=2)
    )
    print(
        f"\nCIFAR-10 (JPEG rebuild), {args.train_subset} training images, {args.epochs} epochs, "
        f"PGD-{args.attack_steps} training attack, PGD-20 on {args.test_subset} test images; seed {args.seed}; "
        f"{env['device_name']}; "
        f"torch {env['torch']}; commit {env['git_commit']}\n"
    )
    print("| run | model | clean | PGD-20 | seconds |\n|---|---|---|---|---|")
    for r in rows:
        acc = f"{100 * r['clean_acc']:.1f}% | {100 * r['pgd20_acc']:.1f}%"
        print(f"| {r['name']} | {r['arch']} | {acc} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
