"""A small, CPU-sized comparison of the distillation methods and of GACD's loss terms, on real CIFAR-10.

It trains one robust teacher (``at``) and a ``natural`` model of the same size, then students from the
robust teacher by each distillation method and by GACD variants, all with one budget and several
seeds, and prints one table of clean and PGD-20 accuracy (mean and spread over the seeds). It is what
set GACD's loss-weight defaults (docs/method.md, section 6); the full-size experiment needs a GPU.

    python benchmarks/cpu_ablation.py --data-root .cache/cifar10 --out runs/ablation --jobs 2

Each run is a normal job through ``gacd_core.jobs.run_job``; results land in ``--out/<name>/seed<k>/``
and the table, with its provenance, in ``--out/results.md`` (and ``results.json``). Running the same
command again reuses every run whose ``report.json`` holds the same specification, and continues an
interrupted run from its last epoch's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from gacd_core.artifacts import REPORT_JSON, STUDENT_WEIGHTS

# (name, method, method_params). The GACD rows change one thing at a time from the defaults.
STUDENTS: list[tuple[str, str, dict[str, Any]]] = [
    ("kd", "kd", {}),
    ("ard", "ard", {}),
    ("rslad", "rslad", {}),
    ("crd", "crd", {}),
    ("gacd (defaults)", "gacd", {}),
    ("gacd, lambda_nce=1, lambda_ce=0", "gacd", {"lambda_nce": 1.0, "lambda_ce": 0.0}),
    ("gacd, lambda_nce=0 (KD+CE on guided x')", "gacd", {"lambda_nce": 0.0}),
    ("gacd, attack=ce, lambda_nce=0 (KD+CE on CE x')", "gacd", {"attack": "ce", "lambda_nce": 0.0}),
    ("gacd, lambda_ce=0", "gacd", {"lambda_ce": 0.0}),
    ("gacd, attack=ce", "gacd", {"attack": "ce"}),
    ("gacd, reweight=none", "gacd", {"reweight": "none"}),
    ("gacd, reweight=hard", "gacd", {"reweight": "hard"}),
    ("gacd, in-batch negatives", "gacd", {"negatives": "in_batch"}),
]
CONTRASTIVE = ("crd", "gacd")


def spec_for(
    args: argparse.Namespace, method: str, arch: str, params: dict[str, Any], teacher: str | None, seed: int
) -> dict:
    steps = args.attack_steps
    params = dict(params)
    if method in CONTRASTIVE and params.get("negatives", "memory") == "memory":
        params.setdefault("n_negatives", args.n_negatives)
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
            # PGD-k with Madry's step rule (2.5 eps / k), so that a short attack still reaches the boundary
            "attack": {"steps": steps, "step_size": 2.5 * (8 / 255) / steps},
            "method_params": params,
        },
        "evaluation": {"attacks": ["pgd20"], "eps_sweep": [], "throughput": False, "teacher": False},
        "device": "cpu",
        # fp32 NCHW, as every run of this table so far (precision "auto" would probe the memory format)
        "precision": "fp32",
        "seed": seed,
    }
    if teacher:
        doc["teacher"] = {"weights": teacher}
    return doc


def run_one(name: str, seed: int, doc: dict, out: str, threads: int) -> dict[str, Any]:
    import torch

    from gacd_core.jobs import run_job
    from gacd_core.spec import parse_spec

    torch.set_num_threads(threads)
    spec = parse_spec(doc)
    done = Path(out) / REPORT_JSON
    earlier = json.loads(done.read_text()) if done.is_file() else None
    # The stored spec is parsed again, so that fields added to the specification since take their defaults.
    if (
        earlier is not None
        and "run_seconds" in earlier
        and parse_spec(earlier["spec"]).public_dict() == spec.public_dict()
    ):
        report = earlier  # finished by an earlier invocation of this script with the same specification
    else:
        t0 = time.perf_counter()
        report = run_job(spec, out, resume=True).to_dict()
        report["run_seconds"] = time.perf_counter() - t0
        done.write_text(json.dumps(report, indent=2))
    return {
        "name": name,
        "seed": seed,
        "method": doc["method"],
        "params": doc["hyperparameters"]["method_params"],
        "arch": doc["student"]["arch"],
        "clean_acc": report["metrics"]["clean_acc"],
        "pgd20_acc": report["metrics"]["pgd20_acc"],
        "seconds": report["run_seconds"],
        "environment": report["environment"],
    }


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "=._-" else "_" for c in name).strip("_")


def _cell(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    env = rows[0]["environment"]
    seeds = sorted({r["seed"] for r in rows if r["name"] not in ("natural", "at")})
    lines = [
        f"CIFAR-10 (JPEG rebuild), {args.train_subset} training images, {args.epochs} epochs (cosine, lr 0.1, "
        f"batch 128), PGD-{args.attack_steps} training attack (eps 8/255, step 2.5 eps/{args.attack_steps}); "
        f"PGD-20 (eps 8/255, 20 x 2/255, random start) on {args.test_subset} class-stratified test images. "
        f"Teacher {args.teacher_arch} (`at`, seed {args.teacher_seed}); students {args.student_arch}, seeds "
        f"{', '.join(map(str, seeds))}: mean ± standard deviation over seeds. N = {args.n_negatives} negatives for "
        f"memory-bank rows. {env['device_name']}, torch {env['torch']}, commit {env['git_commit']}.",
        "",
        f"Command: `python benchmarks/cpu_ablation.py --data-root DATA --jobs {args.jobs} --seeds "
        f"{' '.join(map(str, args.seeds))} --train-subset {args.train_subset} --test-subset {args.test_subset} "
        f"--epochs {args.epochs} --attack-steps {args.attack_steps}`",
        "",
        "| run | model | clean % | PGD-20 % | seconds per run |",
        "|---|---|---|---|---|",
    ]
    order: list[str] = []
    for r in rows:
        if r["name"] not in order:
            order.append(r["name"])
    for name in order:
        group = [r for r in rows if r["name"] == name]
        clean = _cell([r["clean_acc"] for r in group])
        pgd = _cell([r["pgd20_acc"] for r in group])
        secs = statistics.fmean(r["seconds"] for r in group)
        lines.append(f"| {name} | {group[0]['arch']} | {clean} | {pgd} | {secs:.0f} |")
    return "\n".join(lines) + "\n"


def _row(name: str, seed: int, method: str, arch: str, report: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "seed": seed,
        "method": method,
        "params": report["spec"]["hyperparameters"]["method_params"],
        "arch": arch,
        "clean_acc": report["metrics"]["clean_acc"],
        "pgd20_acc": report["metrics"]["pgd20_acc"],
        "seconds": report["run_seconds"],
        "environment": report["environment"],
    }


def finished_table(args: argparse.Namespace, students: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Write the table from the runs of ``--out`` that have finished (an interrupted benchmark's state)."""
    rows: list[dict[str, Any]] = []
    plan = [(name, args.teacher_seed, name, args.teacher_arch, args.out / name) for name in ("natural", "at")]
    plan += [
        (name, seed, method, args.student_arch, args.out / _slug(name) / f"seed{seed}")
        for name, method, _ in students
        for seed in args.seeds
    ]
    missing = []
    for name, seed, method, arch, folder in plan:
        path = folder / REPORT_JSON
        report = json.loads(path.read_text()) if path.is_file() else None
        if report is None or "run_seconds" not in report:
            missing.append(f"{name} seed {seed}")
            continue
        rows.append(_row(name, seed, method, arch, report))
    text = table(rows, args)
    if missing:
        text += f"\nNot finished yet ({len(missing)} runs): {'; '.join(missing)}.\n"
    (args.out / "results.md").write_text(text)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (one thread each)")
    ap.add_argument("--train-subset", type=int, default=5000)
    ap.add_argument("--test-subset", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--attack-steps", type=int, default=5)
    ap.add_argument("--n-negatives", type=int, default=1024)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="student seeds")
    ap.add_argument("--teacher-seed", type=int, default=0)
    ap.add_argument("--teacher-arch", default="resnet10_w16")
    ap.add_argument("--student-arch", default="resnet10_w8")
    ap.add_argument("--only", nargs="*", help="run only these rows (names as in the table)")
    ap.add_argument(
        "--table-only", action="store_true", help="no training: the table from the runs already finished in --out"
    )
    args = ap.parse_args()
    students = [s for s in STUDENTS if not args.only or s[0] in args.only]
    if args.table_only:
        finished_table(args, students)
        return
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        teachers = [
            pool.submit(
                run_one,
                name,
                args.teacher_seed,
                spec_for(args, name, args.teacher_arch, {}, None, args.teacher_seed),
                str(args.out / name),
                1,
            )
            for name in ("natural", "at")
        ]
        rows += [f.result() for f in teachers]
        for r in rows:
            print(f"{r['name']:<45} clean {100 * r['clean_acc']:5.1f}%  pgd20 {100 * r['pgd20_acc']:5.1f}%", flush=True)
        teacher = str(args.out / "at" / STUDENT_WEIGHTS)
        futures = [
            pool.submit(
                run_one,
                name,
                seed,
                spec_for(args, method, args.student_arch, params, teacher, seed),
                str(args.out / _slug(name) / f"seed{seed}"),
                1,
            )
            for seed in args.seeds
            for name, method, params in students
        ]
        for f in futures:
            r = f.result()
            rows.append(r)
            print(
                f"{r['name']:<45} seed {r['seed']}  clean {100 * r['clean_acc']:5.1f}%  "
                f"pgd20 {100 * r['pgd20_acc']:5.1f}%  {r['seconds']:.0f} s",
                flush=True,
            )
    text = table(rows, args)
    (args.out / "results.json").write_text(
        json.dumps({"args": {**vars(args), "out": str(args.out)}, "rows": rows}, indent=2)
    )
    (args.out / "results.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
