"""Every teacher is checked before it teaches: clean (and, where cheap, PGD-20) accuracy on a fixed subset.

A teacher loaded with the wrong input normalisation, the wrong number of classes, for another dataset or
into the wrong architecture variant still gives logits; they are just near chance, and a distillation
from it is garbage that nobody sees until the final report. So before any training (and when a teacher
is uploaded to the service) :func:`check_teacher` measures, on the chosen dataset's test split:

- clean accuracy on :data:`CLEAN_SUBSET` (500) class-stratified images (fixed seed, the same images
  for every teacher: the first 500 of :func:`gacd_core.data.base.stratified_order`);
- PGD-20 accuracy (eps 8/255, 20 steps of 2/255, random start with a fixed seed) on the first
  :data:`PGD_SUBSET` (100) of them, on a GPU always, on a CPU only when it costs at most
  :data:`CPU_PGD_BUDGET` multiply-accumulates (a WRN-34-10 would take minutes: skipped, and said so);
- the clean accuracy the same teacher would have with the other common normalisations (none, and the
  dataset's own statistics), on the same images.

The rule (documented in docs/method.md): with C classes, a teacher whose clean accuracy is below
``1/C + 0.10`` (chance plus 10 points: 20% on CIFAR-10, 11% on CIFAR-100) is *unfit* and refused with
:class:`~gacd_core.errors.TeacherUnfitError` (code ``teacher_unfit``) unless the user allows weak
teachers. On 500 images the standard error of an accuracy is at most 2.2 points, so 10 points above
chance is more than 4 standard errors. Whenever another normalisation scores at least
:data:`BETTER_BY` (10 points) higher than the one in use, the check says so with both figures, for fit
and unfit teachers alike; it never switches by itself. Teachers whose label set differs from the
dataset's (class counts differ, or ``cross_task``) are exempt: their accuracy here means nothing, and
the check says why.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from gacd_core.data.base import ImageSet, Split, stratified_subset
from gacd_core.errors import TeacherUnfitError
from gacd_core.models.base import ImageClassifier
from gacd_core.normalization import IDENTITY, preset_name, same, text

CLEAN_SUBSET = 500
PGD_SUBSET = 100
MARGIN = 0.10  # refused below chance + MARGIN
BETTER_BY = 0.10  # another normalisation "clearly" better: at least this much higher clean accuracy
CPU_PGD_BUDGET = 5e11  # multiply-accumulates PGD-20 may cost on a CPU (about 10-30 s on two cores)
EPS = 8 / 255

OVERRIDE_HINT = (
    "to use it anyway: --allow-weak-teacher (command line), teacher.allow_weak: true (job specification) "
    "or allow_weak=true (teacher upload)"
)
CAUSES = (
    "likely causes: the input normalisation (the code that trained it normalised its inputs differently: "
    "--teacher-normalization / teacher.normalization / the upload's normalization field), a wrong "
    "num_classes or class order, a teacher trained on another dataset, or the wrong architecture variant "
    "(e.g. preact_resnet18 vs preact_resnet18_nofinalbn vs preact_resnet18_robustbench)"
)


def threshold(num_classes: int) -> float:
    """The clean accuracy below which a teacher is refused: chance plus 10 points."""
    return 1.0 / num_classes + MARGIN


@dataclass
class TeacherCheck:
    """What :func:`check_teacher` measured and decided (``to_dict`` is what records and reports keep)."""

    dataset: str
    num_classes: int
    verdict: str  # fit, unfit or exempt
    normalization: dict[str, Any]
    clean_acc: float | None = None
    clean_subset: int = 0
    pgd20_acc: float | None = None
    pgd20_subset: int = 0
    pgd20_skipped: str | None = None
    chance: float = 0.0
    threshold: float = 0.0
    subset: str = ""
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    better_normalization: dict[str, Any] | None = None
    exempt_reason: str | None = None
    allowed_weak: bool = False
    message: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for terminals and logs."""
        if self.verdict == "exempt":
            return f"teacher check on {self.dataset}: exempt ({self.exempt_reason})"
        assert self.clean_acc is not None
        pgd = (
            f", PGD-20 {100 * self.pgd20_acc:.1f}% on {self.pgd20_subset}"
            if self.pgd20_acc is not None
            else f", PGD-20 not measured ({self.pgd20_skipped})"
        )
        line = (
            f"teacher check on {self.dataset}: clean {100 * self.clean_acc:.1f}% on {self.clean_subset} "
            f"class-stratified test images{pgd}; {self.verdict} (refused below {100 * self.threshold:.1f}%)"
        )
        if self.better_normalization:
            b = self.better_normalization
            line += f"; WARNING: with normalisation {b['name']} it scores {100 * b['clean_acc']:.1f}%"
        return line


@contextlib.contextmanager
def _normalised_with(model: ImageClassifier, mean: Sequence[float], std: Sequence[float]) -> Iterator[None]:
    """Temporarily give ``model`` another input normalisation (restored on exit)."""
    norm = model.normalize
    old_m, old_s = norm.mean.clone(), norm.std.clone()
    try:
        norm.mean.copy_(torch.tensor(list(mean), dtype=norm.mean.dtype).view_as(norm.mean))
        norm.std.copy_(torch.tensor(list(std), dtype=norm.std.dtype).view_as(norm.std))
        yield
    finally:
        norm.mean.copy_(old_m)
        norm.std.copy_(old_s)


@torch.no_grad()
def _clean_accuracy(model: ImageClassifier, data: ImageSet, device: torch.device, batch_size: int = 250) -> float:
    correct = 0
    for s in range(0, len(data), batch_size):
        x = data.images[s : s + batch_size].to(device).float().div_(255)
        y = data.labels[s : s + batch_size].to(device)
        correct += int((model(x).argmax(1) == y).sum())
    return correct / max(1, len(data))


def _pgd_accuracy(model: ImageClassifier, data: ImageSet, device: torch.device, batch_size: int = 100) -> float:
    from gacd_core.attacks import protocol_attack

    attack = protocol_attack("pgd20", EPS)
    correct = 0
    # its own random starts: the job's random state (and so its training) is the same with or without the check
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        for s in range(0, len(data), batch_size):
            x = data.images[s : s + batch_size].to(device).float().div_(255)
            y = data.labels[s : s + batch_size].to(device)
            x_adv = attack(model, x, y)
            with torch.no_grad():
                correct += int((model(x_adv).argmax(1) == y).sum())
    return correct / max(1, len(data))


def _pgd_cost(model: ImageClassifier, n: int, image_size: int) -> float:
    from gacd_core.models.complexity import count_macs

    # 20 steps of forward + backward (about 3 forwards each) and the final forward
    return float(count_macs(model, image_size)) * n * (20 * 3 + 1)


def _alternatives(
    dataset: str, dataset_norm: tuple[Sequence[float], Sequence[float]] | None
) -> list[tuple[str, str, tuple[Sequence[float], Sequence[float]]]]:
    out: list[tuple[str, str, tuple[Sequence[float], Sequence[float]]]] = [("none", "no normalisation", IDENTITY)]
    if dataset_norm is not None:
        name = preset_name(*dataset_norm)
        label = f"{dataset}'s statistics"
        out.append((name, label, dataset_norm))
    return out


def check_teacher(
    teacher: ImageClassifier,
    test: Split,
    *,
    dataset: str,
    num_classes: int,
    device: torch.device,
    dataset_norm: tuple[Sequence[float], Sequence[float]] | None = None,
    cross_task: bool | None = None,
    clean_subset: int = CLEAN_SUBSET,
    pgd_subset: int = PGD_SUBSET,
    pgd: bool | None = None,
) -> TeacherCheck:
    """Measure ``teacher`` on ``dataset``'s test split and decide whether it may teach.

    Args:
        test: the test split (in memory or streamed; labels 0..num_classes-1); only the subsets the
            check measures are decoded.
        num_classes: the dataset's number of classes.
        dataset_norm: the dataset's channel statistics, tried as an alternative normalisation.
        cross_task: the job says teacher and student label sets differ (exempt from the check).
        pgd: run PGD-20 (True), skip it (False), or decide by cost (None: always on a GPU).

    Returns:
        The figures and the verdict; nothing is raised here (see :func:`enforce`).
    """
    start = time.perf_counter()
    norm = teacher.normalization()
    base = TeacherCheck(dataset=dataset, num_classes=num_classes, verdict="exempt", normalization=norm)
    if teacher.num_classes != num_classes:
        base.exempt_reason = (
            f"cross-task: the teacher has {teacher.num_classes} classes, {dataset} has {num_classes}; "
            "its accuracy on these labels means nothing"
        )
        return base
    if cross_task:
        base.exempt_reason = "cross-task (method_params.cross_task: true): the label sets differ by declaration"
        return base
    was_training = teacher.training
    teacher.eval()
    try:
        idx = stratified_subset(test.labels, clean_subset)
        images = test.select(idx).decoded()
        clean = _clean_accuracy(teacher, images, device)
        alts: list[dict[str, Any]] = []
        for name, label, (m, s) in _alternatives(dataset, dataset_norm):
            if same((m, s), (norm["mean"], norm["std"])):
                continue
            with _normalised_with(teacher, m, s):
                acc = _clean_accuracy(teacher, images, device)
            alts.append({"name": name, "label": label, "mean": list(m), "std": list(s), "clean_acc": acc})
        pgd_images = test.select(stratified_subset(test.labels, pgd_subset)).decoded()
        skipped = None
        if pgd is None:
            if device.type == "cuda":
                pgd = True
            else:
                cost = _pgd_cost(teacher, len(pgd_images), test.side)
                pgd = cost <= CPU_PGD_BUDGET
                if not pgd:
                    skipped = (
                        f"skipped on the CPU: {cost / 1e12:.1f} TMACs, over the budget of {CPU_PGD_BUDGET / 1e12:.1f}"
                    )
        elif not pgd:
            skipped = "not asked for"
        pgd_acc = _pgd_accuracy(teacher, pgd_images, device) if pgd else None
    finally:
        teacher.train(was_training)
    best = max(alts, key=lambda a: a["clean_acc"], default=None)
    better = best if best is not None and best["clean_acc"] >= clean + BETTER_BY else None
    chance = 1.0 / num_classes
    limit = threshold(num_classes)
    check = TeacherCheck(
        dataset=dataset,
        num_classes=num_classes,
        verdict="fit" if clean >= limit else "unfit",
        normalization=norm,
        clean_acc=clean,
        clean_subset=len(images),
        pgd20_acc=pgd_acc,
        pgd20_subset=len(pgd_images) if pgd_acc is not None else 0,
        pgd20_skipped=skipped,
        chance=chance,
        threshold=limit,
        subset=(
            f"the first {len(images)} of a class-stratified ordering (seed 0) of {dataset}'s test split "
            f"({len(test)} images); PGD-20 on the first {len(pgd_images)} of them"
        ),
        alternatives=alts,
        better_normalization=better,
        seconds=time.perf_counter() - start,
    )
    check.message = _message(check)
    return check


def _hint(b: dict[str, Any]) -> str:
    if b["name"] != "custom":
        return (
            f"--teacher-normalization {b['name']} (teacher.normalization: {b['name']}; "
            f"normalization={b['name']} on upload)"
        )
    mean, std = (",".join(f"{v:g}" for v in b[k]) for k in ("mean", "std"))
    return f"--teacher-mean {mean} --teacher-std {std}"


def _message(c: TeacherCheck) -> str | None:
    """The text of a refusal or a warning; None for a fit teacher with nothing to say."""
    assert c.clean_acc is not None
    parts = []
    if c.verdict == "unfit":
        parts.append(
            f"the teacher is at or near chance on {c.dataset}: clean accuracy {100 * c.clean_acc:.1f}% on "
            f"{c.clean_subset} class-stratified test images (chance {100 * c.chance:.1f}%; teachers below "
            f"{100 * c.threshold:.1f}% are refused), with normalisation {text(c.normalization)}"
        )
    b = c.better_normalization
    if b is not None:
        parts.append(
            f"with {b['label']} ({b['name']}) as its normalisation it scores {100 * b['clean_acc']:.1f}% against "
            f"{100 * c.clean_acc:.1f}% with {c.normalization['name']} ({c.normalization['source']}): if that is how "
            f"it was trained, give {_hint(b)}; nothing is switched for you"
        )
    if c.verdict == "unfit":
        parts.append(CAUSES)
        parts.append(OVERRIDE_HINT)
    return "; ".join(parts) if parts else None


def enforce(check: TeacherCheck, allow_weak: bool) -> None:
    """Refuse an unfit teacher unless ``allow_weak``.

    Raises:
        TeacherUnfitError: code ``teacher_unfit``, with the check's figures in ``check``.
    """
    if check.verdict != "unfit":
        return
    if allow_weak:
        check.allowed_weak = True
        return
    raise TeacherUnfitError(check.message or "the teacher is unfit", check=check.to_dict())


__all__ = [
    "BETTER_BY",
    "CLEAN_SUBSET",
    "MARGIN",
    "PGD_SUBSET",
    "TeacherCheck",
    "check_teacher",
    "enforce",
    "threshold",
]
