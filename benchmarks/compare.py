"""One fair comparison: one teacher, several student methods and GACD variants, several seeds, one budget.

    python benchmarks/compare.py --scale cpu                 # the table from the runs already finished
    python benchmarks/compare.py --scale cpu --train         # train what is missing, then the table
    python benchmarks/compare.py --scale cpu --split val --only "gacd (defaults)" "gacd, in-batch negatives" --train
    python benchmarks/compare.py --scale cpu --screen --train   # issue 26: the equal tuning budget (validation)
    python benchmarks/compare.py --scale cpu --final --train    # the chosen settings, test split, paired tests

Every run is a normal job (``gacd_core.jobs.run_job``). Its folder under ``--store`` is named by the
hash of its specification (paths replaced by what they point to: the teacher by its SHA-256, the data
root left out), so a finished run is never redone, an interrupted one continues from its last epoch's
checkpoint, and a run whose specification changed is a new run. A run folder keeps ``spec.json``,
``report.json``, ``student.safetensors`` and ``run.json`` (wall time, threads, machine); checkpoints
are deleted once a run has finished. The teacher is a run of the same store. The test-split table also
holds a control, GACD from a teacher of the same size and data trained without attacks (a second
teacher of the store): it separates what the robust teacher's robustness gives from what any teacher's
features give.

Scales are presets (``SCALES``): ``cpu`` is the largest experiment a 2-core machine finishes in a few
sessions; ``full`` is the same comparison at the published scale, for a GPU. Runs go to separate
processes, ``--jobs`` at a time with ``--threads`` each (``benchmarks/RESULTS.md`` says which split of
the cores is faster on the development machine). ``--split val`` evaluates on images held out of the
training split (never the test split): the screening that chooses GACD's defaults.

``--screen`` and ``--final`` (issue 26; docs/RESULTS.md, section 6) are the comparison a reviewer can
accept: every method the same number of screening runs on the validation split (:data:`FAMILIES`),
each method's choice by validation PGD-20 (clean accuracy breaks ties), then the chosen settings on the
whole test split with 3 seeds, 95% intervals, and McNemar / sign tests from each run's per-image bits
(``per_image.json``; :mod:`paired_stats`).

``--task cross`` is the paper's other claim, transfer across tasks: a robust ``at`` teacher on
CIFAR-10 classes 0-4, students on classes 5-9 (GACD and CRD from the teacher's features only, ``at``
from scratch, and, as a control, GACD from a teacher of the same classes trained without attacks), with
the same images per class as the main comparison (half its training and validation images), in its own
store (``benchmarks/compare/<scale>-cross``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gacd_core.artifacts import CHECKPOINT, REPORT_HTML, REPORT_JSON, STUDENT_ONNX, STUDENT_WEIGHTS  # noqa: E402
from gacd_core.report_model import Report  # noqa: E402  (torch-free; the path above finds it)


@dataclass(frozen=True)
class Scale:
    """The budget every run of a comparison shares."""

    teacher_arch: str
    student_arch: str
    train_subset: int | None  # None: the whole training split (less val_size)
    val_size: int
    test_subset: int | None
    autoattack_subset: int
    teacher_epochs: int
    student_epochs: int
    attack_steps: int  # training attack: PGD-k with step 2.5 eps / k (Madry's rule)
    batch_size: int = 128
    lr: float = 0.1
    schedule: str = "cosine"
    n_negatives: int = 16384
    eval_attacks: tuple[str, ...] = ("fgsm", "pgd20", "cw")
    allow_weak_teacher: bool = False  # the smoke scale's one-epoch teacher is at chance, and that is fine there

    def for_task(self, task: str) -> Scale:
        """Across tasks each side sees half the classes: half the images, the same number per class."""
        if task == "same":
            return self
        half = None if self.train_subset is None else self.train_subset // 2
        return replace(self, train_subset=half, val_size=self.val_size // 2)


SCALES: dict[str, Scale] = {
    # 4x fewer parameters (0.31M -> 0.08M); >= 20,000 training images, teacher >= 15 epochs, students >= 10.
    "cpu": Scale(
        teacher_arch="resnet10_w16",
        student_arch="resnet10_w8",
        train_subset=20_000,
        val_size=2_000,
        test_subset=1_000,
        autoattack_subset=500,
        teacher_epochs=15,
        student_epochs=10,
        attack_steps=5,
        n_negatives=4096,
    ),
    # For the test suite: tiny models on a few images, seconds per run.
    "smoke": Scale(
        teacher_arch="tiny_wrn",
        student_arch="tiny_resnet",
        train_subset=40,
        val_size=20,
        test_subset=20,
        autoattack_subset=4,
        teacher_epochs=1,
        student_epochs=1,
        attack_steps=1,
        batch_size=20,
        n_negatives=8,
        eval_attacks=("fgsm",),
        allow_weak_teacher=True,
    ),
    # The published setting: WRN-34-10 teacher (46M) -> ResNet-18 student (11M), whole CIFAR-10.
    "full": Scale(
        teacher_arch="wrn_34_10",
        student_arch="resnet18",
        train_subset=None,
        val_size=5_000,
        test_subset=None,
        autoattack_subset=1_000,
        teacher_epochs=100,
        student_epochs=100,
        attack_steps=10,
        schedule="piecewise",
    ),
}


@dataclass(frozen=True)
class Row:
    """One line of the table: a method and its parameters (a GACD variant changes one thing)."""

    name: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    teacher: str = "at"  # how the teacher was trained: "at" (robust), or "natural" (a control)
    hyper: dict[str, Any] = field(default_factory=dict)  # the scale's hyperparameters it changes (lr, weight_decay)


GACD_DEFAULTS = "gacd (defaults)"  # the row the target check compares with ard and rslad
BASELINES = [
    Row("kd", "kd"),
    Row("at (no teacher)", "at"),
    Row("ard", "ard"),
    Row("rslad", "rslad"),
    Row("crd", "crd"),
    Row(GACD_DEFAULTS, "gacd"),
]
# The screening's reference point, written out in full: GACD's defaults when the screening began. Each
# variant changes one thing from it. Pinned, so that the variants' run folders (keyed by the resolved
# specification) stay theirs when the screening moves the defaults in gacd_core/spec.py.
GACD_SCREEN_BASE: dict[str, Any] = {
    "feat_dim": 128,
    "nce_temperature": 0.07,
    "negatives": "memory",
    "memory_momentum": 0.5,
    "other_class_negatives": True,
    "critic_normalization": "crd",
    "reweight": "soft",
    "beta": 1.0,
    "attack": "guided",
    "attack_ce_weight": 0.0,
    "lambda_nce": 0.1,
    "lambda_kd": 1.0,
    "lambda_ce": 1.0,
    "kd_temperature": 1.0,
}


def _variant(name: str, **change: Any) -> Row:
    return Row(name, "gacd", {**GACD_SCREEN_BASE, **change})


# Two stages, in the order they ran (docs/RESULTS.md, section 2). Stage 1 crossed the two choices the
# small ablation flagged: where the negatives come from (the memory bank or the batch) and what the
# guided attack maximises (the contrastive objective alone, or with the student's CE added). Its best
# on validation PGD-20 was in-batch negatives with the mixed attack. Stage 2 changes one thing at a
# time from that: the reweighting, lambda_nce, and (an ablation, not a candidate default: it drops the
# guided attack) the CE attack.
IN_BATCH = {"negatives": "in_batch"}
STAGE2_BASE = {**IN_BATCH, "attack_ce_weight": 1.0}
VARIANTS = [
    _variant("gacd (screening base)"),
    _variant("gacd, in-batch negatives", **IN_BATCH),
    _variant("gacd, attack guided + 1 x CE", attack_ce_weight=1.0),
    _variant("gacd, in-batch, attack guided + 1 x CE", **STAGE2_BASE),
    _variant("gacd, in-batch + CE, reweight=none", **STAGE2_BASE, reweight="none"),
    _variant("gacd, in-batch + CE, attack=ce", **{**STAGE2_BASE, "attack": "ce", "attack_ce_weight": 0.0}),
    _variant("gacd, in-batch + CE, lambda_nce=0.5", **STAGE2_BASE, lambda_nce=0.5),
    _variant("gacd, in-batch + CE, lambda_nce=0.02", **STAGE2_BASE, lambda_nce=0.02),
    _variant("gacd, in-batch + CE, reweight=hard", **STAGE2_BASE, reweight="hard"),
]


def _from_natural_teacher(row: Row) -> Row:
    """A control: the same student from a teacher of the same size and data trained without attacks.
    What the robust teacher's robustness adds is the difference between the two rows."""
    return replace(row, name=row.name.removesuffix(")") + ", natural teacher)", teacher="natural")


# The controls, on the test split only (they choose nothing): GACD's defaults, and GACD without the KD
# term (lambda_kd = 0: only the features pass from teacher to student), each from the natural teacher.
GACD_FEATURES_ONLY = Row("gacd (features only)", "gacd", {"lambda_kd": 0.0})
CONTROLS = [
    _from_natural_teacher(Row(GACD_DEFAULTS, "gacd")),
    GACD_FEATURES_ONLY,
    _from_natural_teacher(GACD_FEATURES_ONLY),
]
ROWS = {r.name: r for r in BASELINES + CONTROLS + VARIANTS}
# Across tasks (--task cross): no class-by-class term can apply, so KD, ARD and RSLAD have no row.
TEACHER_CLASSES, STUDENT_CLASSES = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
_CROSS_GACD = Row("gacd (features only)", "gacd", {"lambda_kd": 0.0, "cross_task": True})
CROSS_ROWS = [
    _CROSS_GACD,
    Row("crd (features only)", "crd", {"cross_task": True}),
    Row("at (no teacher)", "at"),
    # What the robust teacher adds is the difference between the two GACD rows; any teacher, to `at`.
    _from_natural_teacher(_CROSS_GACD),
]
CROSS = {r.name: r for r in CROSS_ROWS}
CONTRASTIVE = ("crd", "gacd")


# --------------------------------------------------------------------------------------------------
# Issue 26: one tuning budget for every method on the validation split, then the final table.
# --------------------------------------------------------------------------------------------------
# Every robust method (and KD) gets the same number of screening runs, SCREEN_RUNS, on the validation
# images (``--split val``; never the test split), seed SCREEN_SEED: the learning rate x its main weights.
# The chosen setting (best validation PGD-20, ties broken by clean accuracy, then by the order below) is
# the one the final table trains with 3 seeds (5 for GACD and the best baseline when their AutoAttack gap
# is within 2 standard errors) and evaluates on the whole test split, AutoAttack on a fixed stratified
# FinalEval.autoattack_subset. ``--screen`` trains / tabulates the screening; ``--final`` the final table.
SCREEN_LRS = (0.1, 0.2)
SCREEN_SEED = 0
SCREEN_RUNS = 8
FINAL_SEEDS = (0, 1, 2)
EXTRA_SEEDS = (3, 4)  # for GACD and the best baseline when their gap is within 2 SE
HYPER_KEYS = ("lr", "weight_decay")  # the keys of a setting that are hyperparameters, not method parameters
# GACD's shipped defaults, pinned (as GACD_SCREEN_BASE), so that the screening's folders stay theirs.
GACD_TUNED_BASE: dict[str, Any] = {**GACD_SCREEN_BASE, **STAGE2_BASE}
# "AT + KD": GACD with neither its contrastive term nor its guided attack: PGD-CE examples, KD + CE.
AT_KD_BASE: dict[str, Any] = {**GACD_TUNED_BASE, "lambda_nce": 0.0, "attack": "ce", "attack_ce_weight": 0.0}
GACD_FAMILY, AT_KD_FAMILY = "gacd", "at + kd"


@dataclass(frozen=True)
class Family:
    """A method's screening: its settings (each a dict of method parameters and, for ``HYPER_KEYS``,
    hyperparameters), crossed with ``lrs`` when given."""

    name: str
    method: str
    settings: tuple[dict[str, Any], ...]
    base: dict[str, Any] = field(default_factory=dict)
    lrs: tuple[float, ...] = SCREEN_LRS

    def setting_rows(self) -> list[Row]:
        rows = []
        for lr in self.lrs or (None,):  # no lrs: the settings name their own
            for s in self.settings:
                setting = {**({} if lr is None else {"lr": lr}), **s}
                hyper = {k: v for k, v in setting.items() if k in HYPER_KEYS}
                params = {**self.base, **{k: v for k, v in setting.items() if k not in HYPER_KEYS}}
                label = ", ".join(f"{k}={_short(v)}" for k, v in setting.items())
                rows.append(Row(f"{self.name} screen: {label}", self.method, params, hyper=hyper))
        return rows


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


FAMILIES = [
    # no weight to screen: the learning rate (four values) x the weight decay (ours and the authors' 2e-4)
    Family(
        "at",
        "at",
        tuple({"lr": lr, "weight_decay": wd} for lr in (0.05, 0.1, 0.2, 0.4) for wd in (5e-4, 2e-4)),
        lrs=(),
    ),
    Family("trades", "trades", tuple({"beta": b} for b in (1.0, 3.0, 6.0, 12.0))),
    Family(
        "kd",
        "kd",
        (
            {"temperature": 4.0, "alpha": 0.9},
            {"temperature": 1.0, "alpha": 0.9},
            {"temperature": 4.0, "alpha": 0.5},
            {"temperature": 10.0, "alpha": 0.9},
        ),
    ),
    # alpha, tau and the KL's reduction (the official code's mean, the paper's batchmean)
    Family(
        "ard",
        "ard",
        (
            {"alpha": 1.0, "temperature": 30.0, "kl_reduction": "mean"},
            {"alpha": 1.0, "temperature": 30.0, "kl_reduction": "batchmean"},
            {"alpha": 0.5, "temperature": 30.0, "kl_reduction": "batchmean"},
            {"alpha": 1.0, "temperature": 4.0, "kl_reduction": "batchmean"},
        ),
    ),
    Family(
        "rslad",
        "rslad",
        (
            {"adv_weight": 5 / 6, "clean_weight": 1 / 6, "kl_reduction": "mean"},
            {"adv_weight": 5 / 6, "clean_weight": 1 / 6, "kl_reduction": "batchmean"},
            {"adv_weight": 0.5, "clean_weight": 0.5, "kl_reduction": "batchmean"},
            {"adv_weight": 1.0, "clean_weight": 0.0, "kl_reduction": "batchmean"},
        ),
    ),
    Family("iad", "iad", tuple({"beta": b} for b in (0.05, 0.1, 0.5, 2.0))),
    # lambda_nce up to where the contrastive term carries a real share of the loss (the tables report it)
    Family(
        GACD_FAMILY,
        "gacd",
        (
            {"lambda_nce": 0.1, "lambda_ce": 1.0},
            {"lambda_nce": 3.0, "lambda_ce": 1.0},
            {"lambda_nce": 10.0, "lambda_ce": 1.0},
            {"lambda_nce": 10.0, "lambda_ce": 0.5},
        ),
        base=GACD_TUNED_BASE,
    ),
    Family(
        AT_KD_FAMILY,
        "gacd",
        (
            {"lambda_kd": 1.0, "kd_temperature": 1.0},
            {"lambda_kd": 1.0, "kd_temperature": 4.0},
            {"lambda_kd": 2.0, "kd_temperature": 1.0},
            {"lambda_kd": 0.5, "kd_temperature": 1.0},
        ),
        base=AT_KD_BASE,
    ),
]
FAMILY = {f.name: f for f in FAMILIES}
SCREEN_ROWS = {r.name: r for f in FAMILIES for r in f.setting_rows()}
BASELINE_FAMILIES = [f.name for f in FAMILIES if f.name not in (GACD_FAMILY, AT_KD_FAMILY)]
WITHOUT_NCE = "gacd, lambda_nce = 0"  # the chosen GACD setting without its contrastive term


@dataclass(frozen=True)
class FinalEval:
    """The final table's evaluation: the test images (None: all) and AutoAttack's stratified subset."""

    test_subset: int | None
    autoattack_subset: int


FINAL_EVAL = {
    "cpu": FinalEval(None, 2_000),
    "full": FinalEval(None, 2_000),
    "smoke": FinalEval(20, 8),
}


def _dataset(scale: Scale, data_root: str, classes: list[int] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "cifar10",
        "root": data_root,
        "train_subset": scale.train_subset,
        "test_subset": scale.test_subset,
        "val_size": scale.val_size,
    }
    if classes is not None:
        doc["classes"] = classes
    return doc


def _hyper(scale: Scale, epochs: int, params: dict[str, Any], change: dict[str, Any] | None = None) -> dict[str, Any]:
    k = scale.attack_steps
    return {
        "epochs": epochs,
        "batch_size": scale.batch_size,
        "lr": scale.lr,
        "schedule": scale.schedule,
        "attack": {"steps": k, "step_size": 2.5 * (8 / 255) / k},
        "method_params": params,
        **(change or {}),
    }


def teacher_spec(scale: Scale, data_root: str, split: str, task: str = "same", method: str = "at") -> dict[str, Any]:
    """The robust teacher: ``at`` on the same training images as the students (across tasks: the
    other half of the classes). ``method="natural"``: the same teacher trained without attacks."""
    return {
        "method": method,
        "student": {"arch": scale.teacher_arch},
        "dataset": _dataset(scale, data_root, TEACHER_CLASSES if task == "cross" else None),
        "hyperparameters": _hyper(scale, scale.teacher_epochs, {}),
        "evaluation": _evaluation(scale, split),
        "device": "auto",
        "seed": 0,
    }


def _teacher_name(method: str) -> str:
    return "teacher" if method == "at" else f"teacher ({method})"


def _evaluation(scale: Scale, split: str) -> dict[str, Any]:
    return {
        "split": split,
        "attacks": list(scale.eval_attacks),
        "autoattack": split == "test",
        "autoattack_subset": scale.autoattack_subset,
        "eps_sweep": [],
        "throughput": False,
    }


def student_spec(
    scale: Scale,
    data_root: str,
    row: Row,
    seed: int,
    teacher_file: str,
    split: str,
    task: str = "same",
    final: FinalEval | None = None,
) -> dict[str, Any]:
    """A student's job. ``final``: the final table's evaluation (the whole test split, AutoAttack on a
    larger stratified subset) instead of the scale's."""
    from gacd_core.spec import METHOD_PARAMS

    params = dict(row.params)
    # The scale's N only where a memory bank is used (given, or the method's default), so that a row
    # that resolves to in-batch negatives keeps N's default and the key of the variant it equals.
    fields = METHOD_PARAMS[row.method].model_fields
    if row.method in CONTRASTIVE and params.get("negatives", fields["negatives"].default) == "memory":
        params.setdefault("n_negatives", scale.n_negatives)
    doc: dict[str, Any] = {
        "method": row.method,
        "student": {"arch": scale.student_arch},
        "dataset": _dataset(scale, data_root, STUDENT_CLASSES if task == "cross" else None),
        "hyperparameters": _hyper(scale, scale.student_epochs, params, row.hyper),
        "evaluation": {**_evaluation(scale, split), "teacher": False},
        "device": "auto",
        "seed": seed,
    }
    if final is not None:
        doc["dataset"]["test_subset"] = final.test_subset
        doc["evaluation"]["autoattack_subset"] = final.autoattack_subset
    if METHOD_PARAMS[row.method].needs_teacher:
        doc["teacher"] = {"weights": teacher_file}
        if scale.allow_weak_teacher:
            doc["teacher"]["allow_weak"] = True
    return doc


KEY_NEUTRAL: list[tuple[str, str, Any]] = [
    ("dataset", "workers", None),
    ("dataset", "preprocessing", None),
    ("evaluation", "preset", "cifar"),
]


def _one_process(resources: Any) -> bool:
    """True for a missing ``resources`` section or one that asks for one process and nothing else."""
    if resources is None:
        return True
    return isinstance(resources, dict) and all(
        v is None or v is False or (v == 1 and v is not True) for v in resources.values()
    )


def run_key(doc: dict[str, Any]) -> str:
    """The hash a run's folder is named by: its resolved specification without machine-specific paths."""
    from gacd_core.report import sha256_file
    from gacd_core.spec import parse_spec

    d = parse_spec(doc).public_dict()
    # Fields the specification gained after runs were stored, at the value that means what the runs did:
    # left out of the key, so that the stored runs keep their folders.
    for section, name, value in KEY_NEUTRAL:
        if section in d and name in d[section] and d[section][name] == value:
            del d[section][name]
    if _one_process(d.get("resources")):  # issue 27's field: a one-process run is what every stored run did
        d.pop("resources", None)
    d["dataset"]["root"] = None
    d["device"] = None  # the same run on another device is the same experiment
    if d.get("teacher") and d["teacher"].get("weights"):
        d["teacher"]["weights"] = "sha256:" + sha256_file(d["teacher"]["weights"])
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "=._-" else "_" for c in name).strip("_")[:48]


def run_folder(store: Path, name: str, doc: dict[str, Any]) -> Path:
    """The run's folder: an existing one with its key (whatever row named it: two rows can resolve to
    the same specification, e.g. the defaults and the variant they were chosen from), else a new one."""
    key = run_key(doc)
    for existing in sorted(store.glob(f"*-{key}")):
        if existing.is_dir():
            return existing
    return store / f"{_slug(name)}-{key}"


def finished(folder: Path) -> bool:
    return (folder / "run.json").is_file() and (folder / REPORT_JSON).is_file()


def train_one(name: str, doc: dict[str, Any], folder: str, threads: int) -> str:
    """Run one job in this (worker) process; its outputs and ``run.json`` land in ``folder``."""
    import torch

    from gacd_core.jobs import run_job
    from gacd_core.spec import parse_spec

    torch.set_num_threads(threads)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(doc, indent=2) + "\n")
    t0 = time.perf_counter()
    report = run_job(parse_spec(doc), out, resume=True)
    wall = time.perf_counter() - t0
    (out / CHECKPOINT).unlink(missing_ok=True)
    # report.json holds everything and the weights are in student.safetensors: keep the store small
    for extra in (REPORT_HTML, STUDENT_ONNX):
        (out / extra).unlink(missing_ok=True)
    run = {
        "name": name,
        "wall_seconds_this_invocation": wall,
        "training_seconds": report.training.seconds if report.training is not None else None,
        "evaluation_seconds": report.metrics.seconds if report.metrics is not None else None,
        "threads": threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_device_name(report)}",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    return folder


def _cell(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    mean = 100 * statistics.fmean(vals)
    return f"{mean:.1f}" if len(vals) < 2 else f"{mean:.1f} ± {100 * statistics.stdev(vals):.1f}"


def _device_name(report: Report) -> str | None:
    return report.environment.device_name if report.environment is not None else None


def _precision(report: Report) -> str:
    """The training's arithmetic (``precision: auto`` picks it per machine); evaluation is always fp32."""
    fast = report.training.fast_path if report.training is not None else None
    return (fast.precision if fast is not None else None) or "fp32"


def _accuracies(report: Report) -> dict[str, float | None]:
    """The report's accuracies by key (all None when it has no metrics)."""
    return report.metrics.accuracies() if report.metrics is not None else {}


def _precisions(values: list[str]) -> str:
    return "/".join(dict.fromkeys(values)) or "–"


def summarise(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds, per row."""
    rows: list[dict[str, Any]] = []
    for name in dict.fromkeys(e["name"] for e in entries):
        group = [e for e in entries if e["name"] == name]
        m = [_accuracies(g["report"]) for g in group]
        row: dict[str, Any] = {
            "name": name,
            "seeds": [g["seed"] for g in group],
            "folders": [g["folder"] for g in group],
        }
        for key in ("clean_acc", "fgsm_acc", "pgd20_acc", "cw_acc", "autoattack_acc"):
            vals = [x.get(key) for x in m]
            row[key] = [v for v in vals if v is not None]
        row["seconds"] = [g["run"].get("training_seconds") or 0.0 for g in group]
        row["precision"] = [_precision(g["report"]) for g in group]
        rows.append(row)
    return rows


def markdown(summary: list[dict[str, Any]], teachers: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| run | seeds | clean % | FGSM % | PGD-20 % | CW∞ % | AutoAttack % | training s per run | training in |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for teacher in teachers:
        report: Report = teacher["report"]
        t = _accuracies(report)
        arch = report.student.arch if report.student is not None else None
        split = report.protocol.split if report.protocol is not None else None
        lines.append(
            f"| teacher ({arch}, {(report.spec or {})['method']}; "
            f"{split} "
            f"images) | 1 | {_cell([t.get('clean_acc')])} | "
            f"{_cell([t.get('fgsm_acc')])} | {_cell([t.get('pgd20_acc')])} | {_cell([t.get('cw_acc')])} | "
            f"{_cell([t.get('autoattack_acc')])} | {teacher['run'].get('training_seconds') or 0:.0f} | "
            f"{_precision(teacher['report'])} |"
        )
    for r in summary:
        secs = statistics.fmean(r["seconds"]) if r["seconds"] else 0.0
        lines.append(
            f"| {r['name']} | {len(r['seeds'])} | {_cell(r['clean_acc'])} | {_cell(r['fgsm_acc'])} | "
            f"{_cell(r['pgd20_acc'])} | {_cell(r['cw_acc'])} | {_cell(r['autoattack_acc'])} | {secs:.0f} | "
            f"{_precisions(r['precision'])} |"
        )
    return "\n".join(lines) + "\n"


# The target: GACD with its shipped defaults at least 1 point of AutoAttack accuracy above the
# better of ARD and RSLAD, at no more than 1 point of clean accuracy lost, means over seeds.
TARGET_AA_GAIN, TARGET_CLEAN_LOSS = 0.01, 0.01


def target_check(summary: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Whether GACD's defaults reach the target against ARD and RSLAD (None until all three have
    AutoAttack figures: the test split only)."""
    rows = {r["name"]: r for r in summary}
    need = (GACD_DEFAULTS, "ard", "rslad")
    if not all(n in rows and rows[n]["autoattack_acc"] for n in need):
        return None

    def mean(name: str, key: str) -> float:
        return statistics.fmean(rows[name][key])

    best = max(("ard", "rslad"), key=lambda n: mean(n, "autoattack_acc"))
    aa_gain = mean(GACD_DEFAULTS, "autoattack_acc") - mean(best, "autoattack_acc")
    clean_loss = mean(best, "clean_acc") - mean(GACD_DEFAULTS, "clean_acc")
    met = aa_gain >= TARGET_AA_GAIN - 1e-9 and clean_loss <= TARGET_CLEAN_LOSS + 1e-9
    seeds = {n: len(rows[n]["autoattack_acc"]) for n in need}
    text = (
        f"Target (GACD's defaults >= the better of ard and rslad + 1 point of AutoAttack, at <= 1 point of "
        f"clean accuracy lost; means over seeds {seeds}): the better is {best}; GACD's AutoAttack "
        f"{100 * aa_gain:+.1f} points, clean {-100 * clean_loss:+.1f} points: **{'met' if met else 'not met'}**."
    )
    return {"best_baseline": best, "aa_gain": aa_gain, "clean_loss": clean_loss, "met": met, "text": text}


def contrastive_share(report: Report) -> float | None:
    """The contrastive term's share of the training loss in the last epoch, lambda_nce * L_nce / L
    (from the loss parts the history records); None for a method without one."""
    spec = report.spec or {}
    params = spec.get("hyperparameters", {}).get("method_params", {})
    history = report.training.history if report.training is not None else []
    if spec.get("method") not in CONTRASTIVE or not history:
        return None
    last = history[-1]
    nce, loss, lam = last.loss_part("nce"), last.loss, params.get("lambda_nce", 0.0)
    if nce is None or not loss:
        return None
    return lam * nce / loss


def choose(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The screening's choice among one method's settings: the best validation PGD-20 accuracy, ties broken
    by clean accuracy, then by the screening's order (the first listed)."""

    def key(r: dict[str, Any]) -> tuple[float, float]:
        return (-1.0 if r["pgd20_acc"] is None else r["pgd20_acc"], -1.0 if r["clean_acc"] is None else r["clean_acc"])

    best = results[0]
    for r in results[1:]:
        if key(r) > key(best):
            best = r
    return best


def screening_results(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each family's finished screening runs (validation figures), in the screening's order."""
    by_name = {e["name"]: e for e in entries}
    out: dict[str, list[dict[str, Any]]] = {}
    for fam in FAMILIES:
        rows = []
        for row in fam.setting_rows():
            e = by_name.get(row.name)
            if e is None:
                continue
            report: Report = e["report"]
            if report.protocol is None or report.protocol.split != "val":
                raise ValueError(f"{row.name}: the screening runs on the validation split only")
            acc = _accuracies(report)
            rows.append(
                {
                    "name": row.name,
                    "row": row,
                    "folder": e["folder"],
                    "clean_acc": acc.get("clean_acc"),
                    "pgd20_acc": acc.get("pgd20_acc"),
                    "contrastive_share": contrastive_share(report),
                    "seconds": e["run"].get("training_seconds") or 0.0,
                }
            )
        out[fam.name] = rows
    return out


def chosen_rows(results: dict[str, list[dict[str, Any]]]) -> dict[str, Row]:
    """The final table's rows: each family's chosen setting under the family's name (only for families whose
    screening is complete), and GACD's chosen setting without its contrastive term."""
    out: dict[str, Row] = {}
    for fam in FAMILIES:
        rs = results.get(fam.name, [])
        if len(rs) < SCREEN_RUNS:
            continue
        pick: Row = choose(rs)["row"]
        out[fam.name] = replace(pick, name=fam.name)
    if GACD_FAMILY in out:
        g = out[GACD_FAMILY]
        out[WITHOUT_NCE] = replace(g, name=WITHOUT_NCE, params={**g.params, "lambda_nce": 0.0})
    return out


def screening_markdown(results: dict[str, list[dict[str, Any]]], header: str, families: list[str]) -> str:
    lines = [
        header,
        "",
        "| method | setting | clean % | PGD-20 % | contrastive share of the loss | training s | chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for fam in (FAMILY[n] for n in families):
        rs = results.get(fam.name, [])
        pick = choose(rs)["name"] if len(rs) == SCREEN_RUNS else None
        for r in rs:
            share = "–" if r["contrastive_share"] is None else f"{100 * r['contrastive_share']:.1f}%"
            setting = r["name"].split(" screen: ", 1)[1]
            lines.append(
                f"| {fam.name} | {setting} | {_cell([r['clean_acc']])} | {_cell([r['pgd20_acc']])} | {share} | "
                f"{r['seconds']:.0f} | {'**chosen**' if r['name'] == pick else ''} |"
            )
        if len(rs) < SCREEN_RUNS:
            lines.append(f"| {fam.name} | ({SCREEN_RUNS - len(rs)} of {SCREEN_RUNS} runs missing) | | | | | |")
    return "\n".join(lines) + "\n"


def _ci_cell(values: list[float]) -> str:
    from paired_stats import mean_ci

    if not values:
        return "–"
    if len(values) < 2:
        return f"{100 * values[0]:.1f}"
    m, lo, hi = mean_ci(values)
    return f"{100 * m:.1f} ± {100 * statistics.stdev(values):.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def final_markdown(summary: list[dict[str, Any]], shares: dict[str, float | None]) -> list[str]:
    lines = [
        "| row | seeds | clean % | FGSM % | PGD-20 % | CW∞ % | AutoAttack % | contrastive share | training s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        share = shares.get(r["name"])
        lines.append(
            f"| {r['name']} | {len(r['seeds'])} | "
            + " | ".join(_ci_cell(r[k]) for k in ("clean_acc", "fgsm_acc", "pgd20_acc", "cw_acc", "autoattack_acc"))
            + f" | {'–' if share is None else f'{100 * share:.1f}%'} | "
            f"{statistics.fmean(r['seconds']) if r['seconds'] else 0:.0f} |"
        )
    return lines


def best_baseline(summary: list[dict[str, Any]], key: str = "autoattack_acc") -> str | None:
    """The baseline family with the highest mean ``key`` (AutoAttack; PGD-20 where AutoAttack is absent)."""
    rows = [r for r in summary if r["name"] in BASELINE_FAMILIES and r[key]]
    return max(rows, key=lambda r: statistics.fmean(r[key]))["name"] if rows else None


def paired_tests(
    entries: list[dict[str, Any]], a: str, b: str, store: Path, attacks: tuple[str, ...] = ("pgd20", "autoattack")
) -> dict[str, Any]:
    """Rows ``a`` and ``b`` compared on the same images: McNemar per seed on the per-image robust correctness
    (their ``per_image.json``; the same images, checked by the labels' digest), a sign test across seeds on
    the accuracy differences, and the gap of the means with its standard error (accuracies from the bits)."""
    from paired_stats import mcnemar_bits, se_difference, sign_test

    from gacd_core.artifacts import PER_IMAGE
    from gacd_core.per_image import PerImage

    runs = {(e["name"], e["seed"]): e for e in entries}
    seeds = sorted({s for (n, s) in runs if n == a} & {s for (n, s) in runs if n == b})
    out: dict[str, Any] = {"a": a, "b": b, "seeds": seeds, "mcnemar": {}, "sign": {}, "se": {}}
    for attack in attacks:
        per_seed, acc_a, acc_b = [], [], []
        for seed in seeds:
            pa, pb = (store / runs[(n, seed)]["folder"] / PER_IMAGE for n in (a, b))
            if not (pa.is_file() and pb.is_file()):
                continue
            ia, ib = PerImage.load(pa), PerImage.load(pb)
            if ia.labels_sha256 != ib.labels_sha256 or attack not in ia.names or attack not in ib.names:
                continue
            bits_a, bits_b = ia.bits(attack), ib.bits(attack)
            test = mcnemar_bits(bits_a.tolist(), bits_b.tolist())
            per_seed.append({"seed": seed, "b": test.b, "c": test.c, "n": test.n, "p": test.p, "text": test.text})
            acc_a.append(float(bits_a.mean()))
            acc_b.append(float(bits_b.mean()))
        out["mcnemar"][attack] = per_seed
        sign = sign_test([x - y for x, y in zip(acc_a, acc_b, strict=True)])
        out["sign"][attack] = {"positive": sign.positive, "negative": sign.negative, "p": sign.p, "text": sign.text}
        out["se"][attack] = (
            {"gap": statistics.fmean(acc_a) - statistics.fmean(acc_b), "se": se_difference(acc_a, acc_b)}
            if acc_a
            else None
        )
    return out


def paired_markdown(test: dict[str, Any]) -> list[str]:
    lines = [f"**{test['a']} vs {test['b']}** (seeds {test['seeds']}; b: only {test['a']} right, c: only {test['b']}):"]
    for attack, per_seed in test["mcnemar"].items():
        for t in per_seed:
            lines.append(f"- {attack}, seed {t['seed']}: McNemar {t['text']}")
        lines.append(f"- {attack}, across seeds: sign test {test['sign'][attack]['text']}")
        se = test["se"][attack]
        if se is not None:
            lines.append(f"- {attack}: gap {100 * se['gap']:+.2f} points, SE {100 * se['se']:.2f}")
    return lines


def needs_more_seeds(test: dict[str, Any], attack: str = "autoattack") -> bool:
    """5 seeds when the AutoAttack gap of GACD and the best baseline is within 2 standard errors."""
    se = test["se"].get(attack)
    if se is None or se["se"] != se["se"]:  # NaN: fewer than 2 seeds
        return False
    return abs(se["gap"]) <= 2 * se["se"] and len(test["seeds"]) < len(FINAL_SEEDS) + len(EXTRA_SEEDS)


Plan = list[tuple[str, int, dict[str, Any], Path]]  # (row name, seed, specification, run folder)


def _teachers(args: argparse.Namespace, scale: Scale, store: Path, task: str, methods: list[str]) -> dict[str, Path]:
    """The teachers' run folders (the robust one, and those ``methods`` ask for), trained first when
    missing and ``--train``: every student's specification names its teacher's file (by hash)."""
    t_folders: dict[str, Path] = {}
    for method in dict.fromkeys(["at", *methods]):
        name = _teacher_name(method)
        t_doc = teacher_spec(scale, args.data_root, "test", task, method)
        t_folder = t_folders[method] = run_folder(store, name, t_doc)
        if not finished(t_folder):
            if not args.train:
                print(f"{name} missing ({t_folder.name}); run with --train", file=sys.stderr)
                sys.exit(1)
            print(f"training {name} -> {t_folder}", flush=True)
            train_one(name, t_doc, str(t_folder), args.threads * args.jobs)
    return t_folders


def _train_missing(plan: Plan, args: argparse.Namespace) -> None:
    """Train the plan's unfinished runs when ``--train`` (``--jobs`` at a time), else name them."""
    missing = [p for p in plan if not finished(p[3])]
    by_folder: dict[Path, tuple[str, int, dict[str, Any], Path]] = {}
    for p in missing:
        by_folder.setdefault(p[3], p)  # two rows resolving to one folder: it trains once
    missing = list(by_folder.values())
    if missing and args.train:
        print(f"{len(missing)} of {len(plan)} runs to train, {args.jobs} at a time, {args.threads} threads each")
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(train_one, n, d, str(f), args.threads): (n, s) for n, s, d, f in missing}
            for fut in as_completed(futures):
                name, seed = futures[fut]
                fut.result()
                print(f"finished {name} seed {seed}", flush=True)
        missing = [p for p in plan if not finished(p[3])]
    for name, seed, _, folder in missing:
        print(f"missing: {name} seed {seed} ({folder.name}); --train trains it", file=sys.stderr)


def _entry(store: Path, name: str, seed: int, folder: Path) -> dict[str, Any]:
    return {
        "name": name,
        "seed": seed,
        "folder": str(folder.relative_to(store)),
        "report": Report.load(folder / REPORT_JSON),
        "run": json.loads((folder / "run.json").read_text()),
    }


def _write_table(store: Path, suffix: str, text: str, doc: dict[str, Any]) -> None:
    (store / f"table_{suffix}.md").write_text(text)
    (store / f"table_{suffix}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")


def screen_plan(scale: Scale, data_root: str, teacher_file: str, store: Path, families: list[str]) -> Plan:
    """Every setting of every family, once (seed SCREEN_SEED), evaluated on the validation split."""
    plan: Plan = []
    for fam in families:
        for row in FAMILY[fam].setting_rows():
            doc = student_spec(scale, data_root, row, SCREEN_SEED, teacher_file, "val")
            # the choice reads PGD-20: always measured (the scales' protocols but the smoke one have it)
            doc["evaluation"]["attacks"] = list(dict.fromkeys([*doc["evaluation"]["attacks"], "pgd20"]))
            plan.append((row.name, SCREEN_SEED, doc, run_folder(store, row.name, doc)))
    return plan


def budget(args: argparse.Namespace, scale: Scale, store: Path) -> None:
    """``--screen``: the equal tuning budget on the validation split; ``--final``: each family's chosen
    setting on the test split (3 seeds; 5 where asked), with the paired tests."""
    teacher_file = str(_teachers(args, scale, store, "same", [])["at"] / STUDENT_WEIGHTS)
    families = args.families or [f.name for f in FAMILIES]
    plan = screen_plan(scale, args.data_root, teacher_file, store, families)
    if args.screen:
        _train_missing(plan, args)
    results = screening_results([_entry(store, n, s, f) for n, s, _, f in plan if finished(f)])
    command = f"python benchmarks/compare.py --scale {args.scale} --screen"
    header = (
        f"Scale `{args.scale}`. The tuning budget: {SCREEN_RUNS} runs per method (learning rate x its main "
        f"weights), seed {SCREEN_SEED}, evaluated on validation images held out of training (never the test "
        f"split); chosen: the best PGD-20, ties by clean accuracy. Contrastive share: lambda_nce x L_nce / L in "
        f"the last epoch. Command (add `--train` to train what is missing): `{command}`."
    )
    text = screening_markdown(results, header, families)
    _write_table(
        store,
        "screen",
        text,
        {
            "scale": asdict(scale),
            "runs_per_method": SCREEN_RUNS,
            "results": {k: [{**r, "row": asdict(r["row"])} for r in v] for k, v in results.items()},
        },
    )
    print(text)
    if args.final:
        final_table(args, scale, store, teacher_file, chosen_rows(results), families)


def final_table(
    args: argparse.Namespace, scale: Scale, store: Path, teacher_file: str, chosen: dict[str, Row], families: list[str]
) -> None:
    """Train (when asked) and tabulate the final rows, and print the paired tests."""
    final = FINAL_EVAL[args.scale]
    names = [n for n in [*families, *([WITHOUT_NCE] if GACD_FAMILY in families else [])] if n in chosen]
    waiting = [f for f in families if f not in chosen]
    if waiting:
        print(f"screening incomplete for {waiting}: their final rows wait for it", file=sys.stderr)
    train_names = [n for n in names if not args.only or n in args.only]

    def plan_for(rows: list[str], seeds: Sequence[int]) -> Plan:
        out: Plan = []
        for name in rows:
            for seed in seeds:
                doc = student_spec(scale, args.data_root, chosen[name], seed, teacher_file, "test", final=final)
                out.append((name, seed, doc, run_folder(store, f"final {name}", doc)))
        return out

    _train_missing(plan_for(train_names, args.seeds or FINAL_SEEDS), args)
    table = plan_for(names, (*FINAL_SEEDS, *EXTRA_SEEDS))
    entries = [_entry(store, n, s, f) for n, s, _, f in table if finished(f)]
    summary = summarise(entries)
    shares: dict[str, float | None] = {}
    for r in summary:
        vals = [contrastive_share(e["report"]) for e in entries if e["name"] == r["name"]]
        known = [v for v in vals if v is not None]
        shares[r["name"]] = statistics.fmean(known) if known else None
    lines = [
        f"Scale `{args.scale}`, final table: each method at its screened setting; test split "
        f"({final.test_subset or 'all'} images), AutoAttack (standard) on a fixed stratified "
        f"{final.autoattack_subset}; "
        f"mean ± sd [95% t-interval] over seeds. Command: `python benchmarks/compare.py --scale {args.scale} --final`.",
        "",
        *final_markdown(summary, shares),
        "",
    ]
    present = {r["name"] for r in summary}
    best = best_baseline(summary) or best_baseline(summary, "pgd20_acc")
    tests = [
        paired_tests(entries, GACD_FAMILY, other, store)
        for other in (best, AT_KD_FAMILY, WITHOUT_NCE)
        if other is not None and GACD_FAMILY in present and other in present
    ]
    for t in tests:
        lines += [*paired_markdown(t), ""]
    if tests and tests[0]["b"] == best and needs_more_seeds(tests[0]):
        lines.append(
            f"GACD and {best}: AutoAttack gap within 2 SE, so 5 seeds: `python benchmarks/compare.py --scale "
            f'{args.scale} --final --seeds {" ".join(map(str, EXTRA_SEEDS))} --only gacd "{best}" --train`.'
        )
    text = "\n".join(lines) + "\n"
    _write_table(
        store,
        "final",
        text,
        {"scale": asdict(scale), "final": asdict(final), "rows": summary, "best_baseline": best, "tests": tests},
    )
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--data-root", default=os.environ.get("GACD_DATA_ROOT", str(ROOT / "data")))
    ap.add_argument("--store", type=Path, help="run folders (default benchmarks/compare/<scale>[-cross])")
    ap.add_argument("--task", choices=["same", "cross"], default="same", help="cross: teacher 0-4, students 5-9")
    ap.add_argument("--split", choices=["val", "test"], default="test", help="val: screening; test: the report")
    ap.add_argument("--only", nargs="*", help="these rows only (names as in the table)")
    ap.add_argument("--variants", action="store_true", help="also the GACD variants, not only the baselines")
    ap.add_argument("--seeds", type=int, nargs="+", help="default 0 1 (--final: 0 1 2)")
    ap.add_argument("--screen", action="store_true", help="the equal tuning budget on the validation split")
    ap.add_argument("--final", action="store_true", help="the screened settings on the test split, paired tests")
    ap.add_argument("--families", nargs="*", choices=[f.name for f in FAMILIES], help="--screen/--final: these only")
    ap.add_argument("--train", action="store_true", help="train the runs that are missing (else: table only)")
    ap.add_argument("--jobs", type=int, help="runs at once (default: one per core on a CPU, 1 on a GPU)")
    ap.add_argument("--threads", type=int, help="threads per run (default: the cores shared among the jobs)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    if args.jobs is None:
        # On 2 CPU cores, two one-thread runs at once train 1.17x the images per second of one two-thread
        # run (benchmarks/jobs_vs_threads.py; benchmarks/RESULTS.md). A GPU takes one run at a time.
        import torch

        args.jobs = 1 if torch.cuda.is_available() else cores
    if args.threads is None:
        args.threads = max(1, cores // args.jobs)

    task = args.task
    scale = SCALES[args.scale].for_task(task)
    store = args.store or ROOT / "benchmarks" / "compare" / (args.scale + ("-cross" if task == "cross" else ""))
    if args.screen or args.final:
        if task != "same":
            ap.error("--screen and --final compare methods on one task: --task same")
        budget(args, scale, store)
        return
    args.seeds = args.seeds or [0, 1]
    known = CROSS if task == "cross" else ROWS
    rows = CROSS_ROWS if task == "cross" else BASELINES + (CONTROLS if args.split == "test" else [])
    if task == "same" and args.variants:
        rows += VARIANTS
    if args.only:
        unknown = set(args.only) - set(known)
        if unknown:
            ap.error(f"--only: unknown rows {sorted(unknown)}; valid: {list(known)}")
        rows = [known[n] for n in args.only]

    # The teachers first (the robust one; a natural one where a control row asks for it): every
    # student's specification names its teacher's file (by hash).
    t_folders = _teachers(args, scale, store, task, [r.teacher for r in rows])

    plan = []
    for seed in args.seeds:
        for row in rows:
            teacher_file = str(t_folders[row.teacher] / STUDENT_WEIGHTS)
            doc = student_spec(scale, args.data_root, row, seed, teacher_file, args.split, task)
            plan.append((row.name, seed, doc, run_folder(store, row.name, doc)))
    _train_missing(plan, args)
    entries = [_entry(store, n, s, f) for n, s, _, f in plan if finished(f)]
    teachers = [_entry(store, _teacher_name(m), 0, f) for m, f in t_folders.items()]
    summary = summarise(entries)
    what = "validation images held out of training" if args.split == "val" else "test images"
    classes = ""
    if task == "cross":
        classes = f" Teacher on CIFAR-10 classes {TEACHER_CLASSES}, students on classes {STUDENT_CLASSES}."
    command = f"python benchmarks/compare.py --scale {args.scale} --task {task} --split {args.split}"
    command += " --seeds " + " ".join(map(str, args.seeds))
    if args.variants and not args.only:
        command += " --variants"
    if args.only:
        command += " --only " + " ".join(f'"{n}"' for n in args.only)
    header = (
        f"Scale `{args.scale}`: {json.dumps(asdict(scale))}.{classes} Evaluated on {what}; mean ± standard "
        f"deviation over seeds. CIFAR-10 (JPEG rebuild). 'Training in': the arithmetic `precision: auto` "
        f"chose on the machine that trained the run (attacks and evaluation are always fp32). Command (add "
        f"`--train` to train what is missing): `{command}`."
    )
    text = markdown(summary, teachers, header)
    check = target_check(summary) if task == "same" else None
    if check is not None:
        text += "\n" + check["text"] + "\n"
    suffix = f"{args.split}"
    (store / f"table_{suffix}.md").write_text(text)
    (store / f"table_{suffix}.json").write_text(
        json.dumps(
            {
                "scale": asdict(scale),
                "split": args.split,
                "teachers": [
                    {"name": t["name"], "folder": t["folder"], "metrics": t["report"].to_dict()["metrics"]}
                    for t in teachers
                ],
                "rows": summary,
                "target": check,
            },
            indent=2,
        )
        + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
