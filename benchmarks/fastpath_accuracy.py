"""Does the fast path learn as well as fp32? The learning tests' `at` teacher and `gacd` student, twice.

Issue 11 asks that students trained on the fast path (``precision: auto``: the probed precision and
memory format) reach the fp32 figures within 2 points, clean and PGD-20, with the same seeds. This
script trains the learning tests' pipeline (tests/test_learning.py: an ``at`` resnet10_w16 teacher on
5,000 CIFAR-10 images for 5 epochs with PGD-5, then a ``gacd`` resnet10_w8 student from it, evaluated
with PGD-20 on 1,000 class-stratified test images) once with ``precision: fp32`` (NCHW) and once with
``precision: auto``, each chain from its own teacher, seed 0 throughout, and prints the table.

    python benchmarks/fastpath_accuracy.py --data-root .cache/cifar10 --out runs/fastpath_accuracy

The two chains run side by side (one thread each). Finished runs are reused (same rule as
benchmarks/cpu_ablation.py, whose job specifications this script shares).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_ablation import run_one, spec_for

from gacd_core.artifacts import REPORT_JSON, STUDENT_WEIGHTS

LIMIT = 0.02  # the tolerance: within 2 points of fp32


def chain(args: argparse.Namespace, precision: str) -> list[dict[str, Any]]:
    """The ``at`` teacher, then the ``gacd`` student distilled from it, both in ``precision``."""
    out = args.out / precision
    rows = []
    for method, arch, teacher in (
        ("at", args.teacher_arch, None),
        ("gacd", args.student_arch, str(out / "at" / STUDENT_WEIGHTS)),
    ):
        doc = spec_for(args, method, arch, {}, teacher, args.seed)
        doc["precision"] = precision
        row = run_one(method, args.seed, doc, str(out / method), args.threads)
        report = json.loads((out / method / REPORT_JSON).read_text())
        fp = report["training"].get("fast_path") or {}
        row["setting"] = f"{fp.get('precision', precision)}{'+channels_last' if fp.get('channels_last') else ''}"
        row["precision"] = precision
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/fastpath_accuracy"))
    ap.add_argument("--threads", type=int, default=1, help="threads per chain (the two chains run at once)")
    args = ap.parse_args()
    # the learning tests' budget (tests/test_learning.py), in the fields spec_for reads
    args.train_subset, args.test_subset, args.epochs, args.attack_steps = 5000, 1000, 5, 5
    args.n_negatives, args.seed = 1024, 0
    args.teacher_arch, args.student_arch = "resnet10_w16", "resnet10_w8"
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {p: pool.submit(chain, args, p) for p in ("fp32", "auto")}
        rows = {p: f.result() for p, f in futures.items()}
    lines = [
        "| model | precision asked | setting trained | clean % | PGD-20 % | seconds | within 2 points of fp32 |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for ref, fast in zip(rows["fp32"], rows["auto"]):
        for r in (ref, fast):
            ok = ""
            if r is fast:
                d_clean, d_pgd = fast["clean_acc"] - ref["clean_acc"], fast["pgd20_acc"] - ref["pgd20_acc"]
                verdict = "yes" if abs(d_clean) <= LIMIT and abs(d_pgd) <= LIMIT else "**no**"
                ok = f"{verdict} ({100 * d_clean:+.1f} clean, {100 * d_pgd:+.1f} PGD-20)"
            lines.append(
                f"| {r['method']} {r['arch']} | {r['precision']} | {r['setting']} | {100 * r['clean_acc']:.1f} | "
                f"{100 * r['pgd20_acc']:.1f} | {r['seconds']:.0f} | {ok} |"
            )
    env = rows["auto"][0]["environment"]
    lines.append(f"\n{env['device_name']}, torch {env['torch']}, commit {env['git_commit']}.")
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
