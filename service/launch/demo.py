"""``make demo``: the product end to end on this machine, through the HTTP API.

1. start the embedded service (``gacd serve``: Redis, workers, API) with its state in ``var/demo``;
2. train a small robust teacher as an ``at`` job on a CIFAR-10 subset;
3. register that job's student as a teacher;
4. distil it into a smaller student with a ``gacd`` job on the same subset, with a progress bar;
5. download the student and the reports, print clean and PGD-20 accuracy and where the files are;
6. stop everything.

Sizes are chosen for a 2-core CPU (about 10 minutes); on a GPU, pass ``--full`` for a longer run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from gacd_core.artifacts import REPORT_JSON
from gacd_core.report_model import Compression, DatasetSection, Report

SUBSET = {"train_subset": 5000, "test_subset": 500}
STEPS = 5  # PGD-5 with Madry's step rule in training, to fit the CPU budget; evaluation is the full protocol


def job(method: str, arch: str, epochs: int, teacher: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "method": method,
        "student": {"arch": arch},
        "dataset": {"name": "cifar10", **SUBSET},
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": 128,
            "lr": 0.1,
            "schedule": "cosine",
            "attack": {"steps": STEPS, "step_size": 2.5 * (8 / 255) / STEPS},
        },
        "evaluation": {"attacks": ["fgsm", "pgd20", "cw"]},
        "seed": 0,
        "metadata": {"source": "make demo"},
    }
    if teacher is not None:
        doc["teacher"] = {"id": teacher}
        doc["hyperparameters"]["method_params"] = {"n_negatives": 1024}
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--var", type=Path, default=Path("var/demo"))
    ap.add_argument("--data-root", type=Path, default=Path("data"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    from service.client.cli import follow
    from service.client.http import Client
    from service.launch.embedded import Service

    if not (args.data_root / "cifar-10-batches-py" / "test_batch").is_file():
        print(f"demo: CIFAR-10 is not under {args.data_root}; run `make data` first", file=sys.stderr)
        return 2
    shutil.rmtree(args.var, ignore_errors=True)
    t0 = time.perf_counter()
    svc = Service(args.var, "127.0.0.1", 0, args.data_root, args.device)
    print("[1/5] starting the service (Redis, workers, API) ...", flush=True)
    info = svc.start()
    print(f"      {info['url']}  (API key in {svc.var}/serve.json)", flush=True)
    try:
        with Client(info["url"], info["api_key"]) as c:
            print("[2/5] training a robust teacher: at, resnet10_w16, CIFAR-10 5000 images", flush=True)
            teacher_job = c.submit(job("at", "resnet10_w16", args.epochs))
            if follow(c, teacher_job["id"]) != 0:
                return 1
            print("[3/5] registering its student as a teacher", flush=True)
            teacher = c.wait_ready("teacher", c.teacher_from_job(teacher_job["id"], "demo teacher")["id"])
            print(f"      {teacher['id']} ({teacher['arch']}, {teacher['status']})", flush=True)
            print("[4/5] distilling it with GACD into resnet10_w8 (4x fewer parameters)", flush=True)
            student_job = c.submit(job("gacd", "resnet10_w8", args.epochs, teacher["id"]))
            if follow(c, student_job["id"]) != 0:
                return 1
            out = svc.var / "downloads" / student_job["id"]
            print(f"[5/5] downloading into {out}", flush=True)
            files = c.download(student_job["id"], out)
            report = Report.load(out / REPORT_JSON)
    finally:
        svc.stop()
    print()
    _results(report)
    for f in files:
        print(f"  {f}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def _results(report: Report) -> None:
    """The teacher's and the student's clean and PGD-20 accuracy, and how much smaller the student is."""
    dataset, comp = report.dataset or DatasetSection(), report.compression or Compression()
    print(
        f"CIFAR-10 (JPEG rebuild when built from ../shared), {dataset.train_size} training images, "
        f"{dataset.test_size} test images, eps 8/255"
    )
    pairs = (("teacher", report.teacher, report.teacher_metrics), ("student", report.student, report.metrics))
    for who, model, acc in pairs:
        arch = model.arch if model is not None else "?"
        clean, pgd = (acc.accuracy("clean_acc"), acc.accuracy("pgd20_acc")) if acc is not None else (None, None)
        line = f"  {who} {arch:<13} clean {_pct(clean)}   PGD-20 {_pct(pgd)}"
        ratio = f"   ({comp.params_ratio:.1f}x fewer parameters)" if comp.params_ratio is not None else ""
        print(line + (ratio if who == "student" else ""))


def _pct(value: float | None) -> str:
    return "    -" if value is None else f"{100 * value:5.1f}%"


if __name__ == "__main__":
    sys.exit(main())
