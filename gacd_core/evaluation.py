"""The evaluation protocol of GACD.md, the teacher under the same protocol, and structural metrics.

Protocol (L-inf, inputs in [0, 1], eps = 8/255 by default): clean accuracy; FGSM (one step of eps);
PGD-20 (20 steps of eps/4, random start); CW-inf (PGD on the margin loss, 30 steps of eps/4,
kappa = 50); standard AutoAttack on a stated subset when asked. Also: per-class clean and PGD-20
accuracy, PGD-20 accuracy at several eps, teacher-student agreement, linear CKA between penultimate
features on clean and adversarial inputs, and the difference of the logits' class-correlation matrices.

Choices that keep the numbers honest: evaluation always runs in fp32 with the model in eval mode;
teacher and student are attacked on the same images, each by attacks against itself (white-box); the
random starts are seeded, so a report can be reproduced; the final model is always the last epoch's,
never one picked by test accuracy.

The images come a batch at a time from a :class:`~gacd_core.data.Split`, in memory or streamed from
disk, so that what an evaluation holds grows with its number of images only by per-image records
(logits, features, correctness bits). Two things are bounded on a streamed split, both by a fixed,
class-stratified choice of images (:func:`resident_positions`): the student's adversarial examples kept
for the structure metrics (:data:`KEEP_ADV_BYTES`), and AutoAttack, run a chunk at a time
(:data:`AUTOATTACK_CHUNK_BYTES`). An in-memory split keeps all its examples and runs AutoAttack once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gacd_core import catalog, distributed, per_image
from gacd_core.attacks import AutoAttack, protocol_attack
from gacd_core.data import ImageSet, Split, stratified_subset
from gacd_core.errors import EvaluationStopped, TrainingPaused
from gacd_core.models import ImageClassifier
from gacd_core.progress import EvalProgress
from gacd_core.spec import EvaluationSpec

log = logging.getLogger("gacd.evaluation")
EVAL_SEED = 1234
REFERENCE = catalog.REFERENCE_ATTACK  # PGD-20: see catalog.Accuracy.reference
KEEP_ADV_BYTES = 1 << 30  # float32 adversarial examples kept of a streamed split, for the structure metrics
AUTOATTACK_CHUNK_BYTES = 1 << 30  # float32 images of a streamed split AutoAttack gets at once


class _Work:
    """Progress through one model's evaluation in cost units, with a stop check at every report.

    In a job of several processes the processes decide together at every report (they all reach the
    same reports) whether to stop or pause; between reports, a process checks alone only where ``local``
    (inside AutoAttack, whose reports differ between processes)."""

    def __init__(
        self,
        total: float,
        on_progress: Callable[[EvalProgress], None] | None,
        should_stop: Callable[[], bool] | None,
        should_pause: Callable[[], bool] | None = None,
    ) -> None:
        self.total, self.done = max(total, 1e-9), 0.0
        self.on_progress, self.should_stop, self.should_pause = on_progress, should_stop, should_pause
        self.t0 = time.perf_counter()
        self.attack = "clean"
        self.local = False

    def check(self, report: bool = False) -> None:
        """Raise :class:`EvaluationStopped` when the stop callback says so (several processes: also
        :class:`~gacd_core.errors.TrainingPaused` when the pause callback does); ``report``: at a report."""
        if not distributed.active():
            if self.should_stop is not None and self.should_stop():
                raise EvaluationStopped(self.attack)
            return
        if not (report or self.local):
            return  # between reports: the next one decides, for every process
        stop = self.should_stop is not None and self.should_stop()
        pause = self.should_pause is not None and self.should_pause()
        if not self.local:
            pause, stop = distributed.agree(pause, stop)
        if pause:
            raise TrainingPaused(-1, -1)
        if stop:
            raise EvaluationStopped(self.attack)

    def at(self, attack: str, done: float | None = None) -> None:
        """Now running ``attack``, with ``done`` units behind (default: as before); reports, then checks."""
        self.attack = attack
        if done is not None:
            self.done = min(done, self.total)
        if self.on_progress is not None:
            seconds = time.perf_counter() - self.t0
            fraction = self.done / self.total
            eta = seconds * (1 - fraction) / fraction if fraction > 0 else None
            self.on_progress(EvalProgress(attack, round(fraction, 5), eta, seconds))
        self.check(report=True)


class _Checked(nn.Module):
    """``model`` with a stop check before each forward pass: an attack of many steps, or AutoAttack's
    own loops, stop within one pass once asked."""

    def __init__(self, model: nn.Module, work: _Work) -> None:
        super().__init__()
        self.model, self.work = model, work

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.work.check()
        return self.model(x)


def _attack_cost(attack: Any) -> float:
    """Forward-backward passes per image of a protocol attack."""
    return float(attack.cfg.steps + 1)


AUTOATTACK_COST = 400.0  # per image: four attacks of 100 iterations (an estimate for progress only)


@dataclass
class Evaluation:
    """One model's protocol figures (``metrics``) and what the pair metrics need from it."""

    metrics: dict[str, Any]
    clean_logits: torch.Tensor
    clean_feats: torch.Tensor
    adv_inputs: torch.Tensor | None = None  # the model's own reference (PGD-20) examples (CPU, float)
    extra: dict[str, Any] = field(default_factory=dict)
    adv_positions: torch.Tensor | None = None  # the images of ``adv_inputs``: positions in the evaluated set


def protocol_description(ev: EvaluationSpec, test_size: int, num_classes: int, seed: int = EVAL_SEED) -> dict[str, Any]:
    """What the report states about how it was measured."""
    params = {name: protocol_attack(name, ev.eps).params() for name in ev.attacks}
    aa = AutoAttack(ev.eps, num_classes).describe() if ev.autoattack else None
    return {
        "preset": ev.preset_name(),
        "eps": ev.eps,
        "eps_255": round(ev.eps * 255, 3),
        "norm": "Linf",
        "attacks": list(ev.attacks) + (["autoattack"] if ev.autoattack else []),
        "attack_params": {**params, "autoattack": aa},
        "split": ev.split,
        "test_size": test_size,
        "autoattack_size": min(test_size, ev.autoattack_subset or test_size) if ev.autoattack else None,
        "eps_sweep": list(ev.eps_sweep),
        "precision": "fp32",
        "tf32": False,
        "seed": seed,
    }


def _tf32_switches() -> list[tuple[Any, str, Any]]:
    """(object, attribute, value meaning "true fp32") for each TF32 switch this torch has."""
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(cuda, "fp32_precision") and hasattr(cudnn, "conv"):  # torch >= 2.9: per-backend precision
        return [(cuda, "fp32_precision", "ieee"), (cudnn.conv, "fp32_precision", "ieee")]
    return [(cuda, "allow_tf32", False), (cudnn, "allow_tf32", False)]


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """Run the enclosed code in true fp32: TF32 off for CUDA matmuls and cuDNN convolutions.

    PyTorch lets cuDNN convolutions use TF32 by default on Ampere and later GPUs (10 mantissa bits),
    which would make an evaluation labelled fp32 run at reduced precision, and an attack computed with
    less precise gradients can be weaker. The previous settings are restored on exit. On the CPU the
    switches exist and are simply not used.
    """
    switches = _tf32_switches()
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in switches]
    try:
        for obj, name, value in switches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def tf32_enabled() -> bool:
    """Whether CUDA matmuls or cuDNN convolutions may currently use TF32."""
    return any(getattr(obj, name) != value for obj, name, value in _tf32_switches())


def evaluation_set(test: Split, ev: EvaluationSpec) -> Split:
    """The test images the protocol runs on: ``evaluation.subset`` of them, class-stratified."""
    if ev.subset is None or ev.subset >= len(test):
        return test
    return test.select(stratified_subset(test.labels, ev.subset))


def resident_positions(data: Split, most: int) -> torch.Tensor:
    """The images of ``data`` that a step needing them at once keeps: all of an in-memory set; of a
    streamed one, at most ``most``: the first of a class-stratified ordering (seed 0, as
    :func:`~gacd_core.data.stratified_subset`), sorted."""
    if isinstance(data, ImageSet):
        return torch.arange(len(data))
    return stratified_subset(data.labels, max(1, most))


def resident(data: Split, most: int) -> ImageSet:
    """``data`` in memory: itself, or (streamed) its :func:`resident_positions` decoded."""
    return data if isinstance(data, ImageSet) else data.select(resident_positions(data, most)).decoded()


def _float_bytes(data: Split) -> int:
    return 3 * data.side**2 * 4


def _batches(
    data: Split, batch_size: int, device: torch.device, channels_last: bool = False
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for s, images, labels in data.chunks(batch_size, pin=device.type == "cuda"):
        x = images.to(device, non_blocking=True).float().div_(255).contiguous(memory_format=fmt)
        yield s, x, labels.to(device, non_blocking=True)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def evaluate_model(
    model: ImageClassifier,
    data: Split,
    ev: EvaluationSpec,
    device: torch.device,
    *,
    keep_adv: bool = False,
    seed: int = EVAL_SEED,
    on_progress: Callable[[EvalProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    channels_last: bool = False,
    should_pause: Callable[[], bool] | None = None,
) -> Evaluation:
    """Run the protocol on ``model`` over ``data``, a batch at a time.

    In a job of several processes (:mod:`gacd_core.distributed`) each process takes its rows of every
    batch, drawing the random starts of the whole batch (so that every image gets the start it gets in
    one process), and AutoAttack its share of the AutoAttack images; per-image results are then summed
    into place, so that every process holds all of them in the original order, and every accuracy is a
    count over all images, never an average of the processes' rates. Only AutoAttack's figures differ
    from one process's (each share is its own run, with its own restarts' draws).

    Args:
        keep_adv: keep the model's PGD-20 examples (for structure metrics on adversarial inputs): of
            every image in memory, of a streamed set those of :func:`resident_positions` within
            :data:`KEEP_ADV_BYTES` (``adv_positions`` says which).
        on_progress: called before every attack on every batch (and as AutoAttack moves) with the
            attack about to run, the fraction done and an ETA.
        should_stop: polled at every progress report and before every forward pass of an attack (keep
            it cheap); when it returns True the evaluation raises
            :class:`~gacd_core.errors.EvaluationStopped`.
        channels_last: run the model and the batches in channels-last memory format (fp32 all the same;
            a speed choice only, the model is returned to its format after).
        should_pause: several processes: polled with ``should_stop`` at every report (the processes
            agree on it there); True raises :class:`~gacd_core.errors.TrainingPaused`.
    """
    model = model.to(device)
    fmt_before = _memory_format(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    was = model.training
    model.eval()
    t0 = time.perf_counter()
    n, c = len(data), model.num_classes
    attacks = {name: protocol_attack(name, ev.eps) for name in ev.attacks}
    ref = REFERENCE.name
    # The sweep is the reference attack at each radius; at the protocol's own eps it has already run.
    sweep = [e for e in ev.eps_sweep if e > 0 and not (abs(e - ev.eps) < 1e-9 and ref in attacks)]
    sweep_attacks = {e: protocol_attack(ref, e) for e in sweep}
    correct = {name: torch.zeros(n, dtype=torch.bool) for name in ["clean", *attacks]}
    sweep_correct = {e: torch.zeros(n, dtype=torch.bool) for e in sweep}
    logits_all = torch.zeros(n, c)  # zeros: in several processes, each fills its rows and the sums join them
    feats_all = torch.zeros(n, model.num_features)
    kept = resident_positions(data, KEEP_ADV_BYTES // _float_bytes(data)) if keep_adv and ref in attacks else None
    adv_all = torch.zeros(len(kept), 3, data.side, data.side) if kept is not None else None
    slot = torch.full((n,), -1, dtype=torch.long)  # image -> its row in adv_all (-1: not kept)
    if kept is not None:
        slot[kept] = torch.arange(len(kept))
    per_image = 1 + sum(map(_attack_cost, attacks.values())) + sum(map(_attack_cost, sweep_attacks.values()))
    aa_n = min(n, ev.autoattack_subset or n) if ev.autoattack else 0
    work = _Work(n * per_image + aa_n * AUTOATTACK_COST, on_progress, should_stop, should_pause)
    checked = _Checked(model, work)
    precision = contextlib.ExitStack()
    precision.enter_context(strict_fp32())  # attacks, AutoAttack included, in true fp32
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            batches = _shares(_batches(data, ev.batch_size, device, channels_last))
            for s, x, y in precision.enter_context(contextlib.closing(batches)):  # closed on a stop too
                e = s + len(y)
                work.at("clean", s * per_image)
                with torch.no_grad():
                    feats, logits = model.forward_all(x)
                logits_all[s:e], feats_all[s:e] = logits.float().cpu(), feats.float().cpu()
                correct["clean"][s:e] = (logits.argmax(1) == y).cpu()
                done = s * per_image + len(y)
                for name, attack in attacks.items():
                    work.at(name, done)
                    x_adv = attack(checked, x, y)
                    correct[name][s:e] = (_predict(model, x_adv) == y).cpu()
                    if name == ref and adv_all is not None:
                        rows = slot[s:e]
                        adv_all[rows[rows >= 0]] = x_adv.cpu()[rows >= 0]
                    done += len(y) * _attack_cost(attack)
                for eps, attack in sweep_attacks.items():
                    work.at(f"{ref}@{eps * 255:.3g}/255", done)
                    sweep_correct[eps][s:e] = (_predict(model, attack(checked, x, y)) == y).cpu()
                    done += len(y) * _attack_cost(attack)
            work.at(work.attack, n * per_image)
        distributed.sum_across(*correct.values(), *sweep_correct.values(), logits_all, feats_all)
        if adv_all is not None:
            distributed.sum_across(adv_all)
        metrics: dict[str, Any] = {"clean_acc": _mean(correct["clean"])}
        for name, row in catalog.EVAL_ATTACKS.items():
            metrics[row.key] = _mean(correct[name]) if name in correct else None
        metrics["autoattack_acc"] = None
        metrics["autoattack_breakdown"] = None
        bits: dict[str, Any] = {"correct": correct}  # per image, for paired tests (gacd_core/per_image.py)
        if ev.autoattack:
            aa_idx = stratified_subset(data.labels, aa_n)
            base = n * per_image

            def aa_progress(attack: str, fraction: float) -> None:
                work.at(f"autoattack/{attack}", base + fraction * aa_n * AUTOATTACK_COST)

            work.local = True  # AutoAttack's reports differ between processes: each checks on its own
            aa_correct, breakdown = _autoattack_shared(
                data.select(aa_idx), lambda part: _autoattack(checked, part, ev, c, seed, device, aa_progress)
            )
            work.local = False
            metrics["autoattack_acc"] = _mean(aa_correct)
            metrics["autoattack_breakdown"] = breakdown
            bits["autoattack"], bits["autoattack_positions"] = aa_correct, aa_idx.cpu()
        labels = data.labels.cpu()
        metrics["per_class"] = {
            "clean": _per_class(correct["clean"], labels, c),
            ref: _per_class(correct[ref], labels, c) if ref in correct else None,
        }
        points = [{"eps": 0.0, "acc": metrics["clean_acc"]}] if 0.0 in ev.eps_sweep else []
        for eps in ev.eps_sweep:
            if eps == 0:
                continue
            acc = _mean(sweep_correct[eps]) if eps in sweep_correct else metrics[REFERENCE.key]
            points.append({"eps": eps, "acc": acc})
        metrics["eps_sweep"] = points
        metrics["seconds"] = time.perf_counter() - t0
    finally:
        precision.close()
        model.train(was)
        model.to(memory_format=fmt_before)
    return Evaluation(metrics, logits_all, feats_all, adv_all, extra={"per_image": bits}, adv_positions=kept)


def _shares(
    batches: Iterator[tuple[int, torch.Tensor, torch.Tensor]],
) -> Generator[tuple[int, torch.Tensor, torch.Tensor], None, None]:
    """This process's rows of each batch (all of them in one process), computed inside
    :func:`gacd_core.distributed.batch_rows` (random starts drawn for the whole batch); a process may
    have none of a last, small batch, and still takes part in its reports."""
    for s, x, y in batches:
        with distributed.batch_rows(len(y)) as rows:
            yield s + (rows.start or 0), x[rows], y[rows]


def _autoattack_shared(
    data: Split, run: Callable[[Split], tuple[torch.Tensor, dict[str, float]]]
) -> tuple[torch.Tensor, dict[str, float]]:
    """``run`` (AutoAttack: per image, whether the model is still right; the robust accuracy after each
    attack) on this process's share of ``data`` (all of it in one process); the results of every share
    summed into place: per image, and the robust count after each attack."""
    if not distributed.active():
        return run(data)
    rows = distributed.rows(len(data))
    share = data.select(torch.arange(len(data))[rows])
    mine, after = run(share) if len(share) else (None, {})
    correct = torch.zeros(len(data), dtype=torch.bool)
    if mine is not None:
        correct[rows] = mine.cpu()
    distributed.sum_across(correct)
    return correct, _robust_after(distributed.gather_objects((len(share), after)), len(data))


def _robust_after(parts: list[tuple[int, dict[str, float]]], n: int) -> dict[str, float]:
    """The robust accuracy after each attack over ``n`` images, from parts of ``m`` images each (their
    rates times ``m``, rounded, are the counts; an attack a part skipped, none of it robust, counts 0)."""
    names = list(dict.fromkeys(name for _, after in parts for name in after))
    robust = {name: sum(round(after.get(name, 0.0) * m) for m, after in parts) for name in names}
    return {name: count / n for name, count in robust.items()}


def _autoattack(
    model: nn.Module,
    data: Split,
    ev: EvaluationSpec,
    num_classes: int,
    seed: int,
    device: torch.device,
    on_progress: Callable[[str, float], None],
) -> tuple[torch.Tensor, dict[str, float]]:
    """Standard AutoAttack on every image of ``data``: per image, whether the model is still right, and
    the robust accuracy after each of its attacks.

    An in-memory set is attacked in one run (seeded ``seed``). A streamed set is decoded and attacked
    :data:`AUTOATTACK_CHUNK_BYTES` of float images at a time, chunk ``k`` seeded ``seed + k``: standard
    AutoAttack treats each image on its own, so chunks change nothing but the random draws of its
    restarts and of Square (a single chunk is the one run). Across chunks the breakdown is the robust
    count after each attack over all images (an attack a chunk skipped, none of it being robust, counts 0).
    """
    n = len(data)
    chunk = n if isinstance(data, ImageSet) else max(1, AUTOATTACK_CHUNK_BYTES // _float_bytes(data))
    log.info("AutoAttack (standard) on %d images%s", n, f", {chunk} at a time" if chunk < n else "")
    correct: list[torch.Tensor] = []
    parts: list[tuple[int, dict[str, float]]] = []
    for k, s in enumerate(range(0, n, chunk)):
        part = (data if chunk >= n else data.select(torch.arange(s, min(s + chunk, n)))).decoded()
        x, y = part.images.to(device).float().div_(255), part.labels.to(device)

        def progress(attack: str, fraction: float, s: int = s, m: int = len(part)) -> None:
            on_progress(attack, (s + fraction * m) / n)

        runner = AutoAttack(ev.eps, num_classes, seed=seed + k, batch_size=min(ev.batch_size, 500))
        result = runner.run(model, x, y, on_progress=progress)
        assert result.correct is not None
        correct.append(result.correct)
        parts.append((len(part), result.breakdown))
    if len(parts) == 1:
        return correct[0], parts[0][1]
    return torch.cat(correct), _robust_after(parts, n)


def per_image_document(evaluation: Evaluation, labels: torch.Tensor, split: str) -> dict[str, Any] | None:
    """The per-image correctness of an evaluation (:mod:`gacd_core.per_image`), or None when it kept none."""
    kept = evaluation.extra.get("per_image")
    if kept is None:
        return None
    aa = kept.get("autoattack")
    return per_image.document(
        split,
        labels.cpu().numpy(),
        {name: bits.numpy() for name, bits in kept["correct"].items()},
        None if aa is None else aa.numpy(),
        None if aa is None else kept["autoattack_positions"].numpy(),
    )


def _memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last when the model's first 4-D parameter is stored that way, else contiguous."""
    for p in model.parameters():
        if p.ndim == 4:
            if p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
                return torch.channels_last
            break
    return torch.contiguous_format


def _mean(mask: torch.Tensor) -> float:
    return float(mask.float().mean()) if len(mask) else float("nan")


def _per_class(mask: torch.Tensor, labels: torch.Tensor, c: int) -> list[float | None]:
    hits = torch.bincount(labels[mask], minlength=c).float()
    totals = torch.bincount(labels, minlength=c).float()
    return [float(h / t) if t > 0 else None for h, t in zip(hits, totals, strict=True)]


# --------------------------------------------------------------------------------------------------
# Structural knowledge
# --------------------------------------------------------------------------------------------------
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith, Norouzi, Lee & Hinton, ICML 2019, Eq. 5) between two representations of
    the same n inputs: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred X (n x p), Y (n x q)."""
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    num = (y.t() @ x).pow(2).sum()
    den = torch.linalg.matrix_norm(x.t() @ x) * torch.linalg.matrix_norm(y.t() @ y)
    return float(num / den) if float(den) > 0 else float("nan")


def class_correlation(logits: torch.Tensor) -> torch.Tensor:
    """The C x C correlation matrix of the logits' columns over samples (constant columns give 0)."""
    z = logits.double()
    z = z - z.mean(0, keepdim=True)
    std = z.pow(2).mean(0).sqrt()
    z = z / torch.where(std > 0, std, torch.ones_like(std))
    return (z.t() @ z) / len(z)


def logit_corr_diff(t_logits: torch.Tensor, s_logits: torch.Tensor) -> float:
    """Mean absolute difference of teacher and student class-correlation matrices (same label set)."""
    return float((class_correlation(t_logits) - class_correlation(s_logits)).abs().mean())


@torch.no_grad()
@strict_fp32()
def features_and_logits(
    model: ImageClassifier, images: torch.Tensor | Split, device: torch.device, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and logits of ``model`` on float images (a CPU tensor) or on the uint8 images of
    a split, read a batch at a time (CPU tensors out)."""
    if isinstance(images, torch.Tensor):
        floats = (images[s : s + batch_size] for s in range(0, len(images), batch_size))
    else:
        floats = (x.float().div(255) for _, x, _ in images.chunks(batch_size, pin=device.type == "cuda"))
    was = model.training
    model.eval()
    feats, logits = [], []
    try:
        for x in floats:
            f, z = model.forward_all(x.to(device))
            feats.append(f.float().cpu())
            logits.append(z.float().cpu())
    finally:
        model.train(was)
    return torch.cat(feats), torch.cat(logits)


@strict_fp32()
def pair_metrics(
    student: ImageClassifier,
    teacher: ImageClassifier,
    s_eval: Evaluation,
    t_eval: Evaluation,
    device: torch.device,
    same_labels: bool,
    batch_size: int = 256,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Teacher-student agreement and structural metrics.

    Adversarial inputs are the student's PGD-20 examples, fed to both models, so that both
    representations describe the same images: all of them, or those the student's evaluation kept
    (``adv_images`` says how many). Agreement and logit correlations need one label set; they are
    None across tasks.
    """
    kept, n = None if s_eval.adv_inputs is None else len(s_eval.adv_inputs), len(s_eval.clean_logits)
    described = "the student's PGD-20 examples, fed to both models"
    if kept is not None and kept < n:
        described += f", on {kept} of the {n} images (the first {kept} of a class-stratified ordering, seed 0)"
    structure: dict[str, Any] = {
        "cka_clean": linear_cka(t_eval.clean_feats, s_eval.clean_feats),
        "cka_adv": None,
        "logit_corr_diff": logit_corr_diff(t_eval.clean_logits, s_eval.clean_logits) if same_labels else None,
        "logit_corr_diff_adv": None,
        "adv_inputs": described,
        "adv_images": kept,
    }
    agreement: dict[str, Any] | None = None
    if same_labels:
        agreement = {"clean": _mean(t_eval.clean_logits.argmax(1) == s_eval.clean_logits.argmax(1)), "adv": None}
    if s_eval.adv_inputs is not None:
        s_feats, s_logits = features_and_logits(student, s_eval.adv_inputs, device, batch_size)
        t_feats, t_logits = features_and_logits(teacher, s_eval.adv_inputs, device, batch_size)
        structure["cka_adv"] = linear_cka(t_feats, s_feats)
        if same_labels and agreement is not None:
            structure["logit_corr_diff_adv"] = logit_corr_diff(t_logits, s_logits)
            agreement["adv"] = _mean(t_logits.argmax(1) == s_logits.argmax(1))
    return agreement, structure


def compression(
    student: ImageClassifier,
    teacher: ImageClassifier | None,
    device: torch.device,
    input_size: int,
    batch_size: int,
    measure: bool = True,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Parameters, MACs and measured inference throughput; ratios are teacher over student, and
    ``speedup`` is the student's throughput over the teacher's (how many times faster it runs)."""
    from gacd_core.models import count_macs, count_params, measure_throughput

    out: dict[str, Any] = {
        "student_params": count_params(student),
        "student_macs": count_macs(student, input_size),
        "teacher_params": None,
        "teacher_macs": None,
        "params_ratio": None,
        "macs_ratio": None,
        "student_images_per_second": None,
        "teacher_images_per_second": None,
        "speedup": None,
        "device": device.type,
        "batch_size": batch_size,
        "input_size": input_size,
        "precision": "bf16" if autocast_dtype is not None else "fp32",
    }
    models: dict[str, nn.Module] = {"student": student}
    if teacher is not None:
        out["teacher_params"] = count_params(teacher)
        out["teacher_macs"] = count_macs(teacher, input_size)
        out["params_ratio"] = out["teacher_params"] / out["student_params"]
        out["macs_ratio"] = out["teacher_macs"] / max(1, out["student_macs"])
        models["teacher"] = teacher
    if measure:
        speed = measure_throughput(models, device, input_size, batch_size, autocast_dtype=autocast_dtype)
        out["student_images_per_second"] = speed["student"]
        if teacher is not None:
            out["teacher_images_per_second"] = speed["teacher"]
            out["speedup"] = speed["student"] / speed["teacher"]
    return out


def summary_line(metrics: dict[str, Any], keys: Sequence[str] = ("clean_acc", REFERENCE.key, "autoattack_acc")) -> str:
    """``clean 81.2% | pgd20 49.0%`` for logs and the CLI."""
    parts = []
    for k in keys:
        v = metrics.get(k)
        if v is not None:
            parts.append(f"{k.removesuffix('_acc')} {100 * v:.1f}%")
    return " | ".join(parts)
