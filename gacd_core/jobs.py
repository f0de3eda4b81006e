"""Whole jobs: a :class:`~gacd_core.spec.JobSpec` in, ``student.safetensors``, ``student.onnx`` and the
reports out.

:func:`run_job` is what the CLI's ``train`` and ``distill`` and the service's workers call;
:func:`run_evaluation` is ``gacd evaluate``. Both take callbacks (training progress, stages of the
evaluation, a stop request) so that callers can show progress or cancel.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gacd_core import distributed, per_image
from gacd_core import evaluation as E
from gacd_core.artifacts import PER_IMAGE, STUDENT_WEIGHTS
from gacd_core.data import DatasetBundle, Split, load_dataset
from gacd_core.errors import (
    SpecError,
    TeacherLoadError,
    TrainingPaused,
    TrainingStopped,
    UnknownNameError,
    WeightsError,
)
from gacd_core.methods import METHODS, Method, MethodContext
from gacd_core.models import ImageClassifier, create_model, load_model_file, read_info, save_weights
from gacd_core.normalization import text as norm_text
from gacd_core.progress import EvalProgress, ProgressEvent, Stage, StageChanged
from gacd_core.report import (
    dataset_section,
    environment,
    metrics_section,
    now,
    student_section,
    teacher_section,
    training_section,
    write_report,
)
from gacd_core.report_model import Agreement, Compression, Export, Kind, OnnxCheck, Protocol, Report, Structure
from gacd_core.spec import EvaluationSpec, JobSpec, TeacherSpec
from gacd_core.teacher_check import TeacherCheck, check_teacher, enforce
from gacd_core.trainer import CHECKPOINT_NAME, Trainer, TrainResult

log = logging.getLogger("gacd.jobs")
STUDENT_FILE = STUDENT_WEIGHTS  # named in gacd_core.artifacts, with every other output
ONNX_CHECK_IMAGES = 500  # of a streamed split, the images the ONNX graph is checked on (in memory: all)


@dataclass
class Callbacks:
    """Hooks a caller passes to a job.

    Attributes:
        progress: receives every :data:`~gacd_core.progress.ProgressEvent` of the job: training
            progress (every few steps and after each epoch), each :class:`~gacd_core.progress.Stage`
            outside training as the job enters it, and the evaluation's progress (which model, which
            attack, the fraction of the evaluation done and an ETA) before every attack on every batch.
        should_stop: polled during training and evaluation (between attacks, between batches and before
            every forward pass of an attack); True stops the job with
            :class:`~gacd_core.errors.TrainingStopped` (:class:`~gacd_core.errors.EvaluationStopped`
            during the evaluation).
        before_write: called right before each file the job writes (checkpoint, student, reports). A
            caller that may have lost the job to another process (the service's workers, whose leases
            expire) checks here and raises, so that a stale process writes nothing.
        should_pause: polled before every training step and at every stage; True stops the job with
            :class:`~gacd_core.errors.TrainingPaused`, after a checkpoint at that step when training (a
            worker shutting down: the job continues elsewhere from that checkpoint).
    """

    progress: Callable[[ProgressEvent], None] | None = None
    should_stop: Callable[[], bool] | None = None
    before_write: Callable[[], None] | None = None
    should_pause: Callable[[], bool] | None = None

    def evaluation_pause(self) -> Callable[[], bool] | None:
        """The pause callback the evaluation polls itself: in a job of several processes only."""
        return self.should_pause if distributed.active() else None

    def writing(self) -> None:
        if self.before_write is not None:
            self.before_write()

    def at(self, stage: Stage, fraction: float = 0.0) -> None:
        """The job enters ``stage``: a pause or a stop request is honoured here, then the caller hears of it."""
        if self.should_pause is not None and self.should_pause():
            raise TrainingPaused(-1, -1)  # outside training: the last epoch checkpoint is the place to resume
        if self.should_stop is not None and self.should_stop():
            raise TrainingStopped(-1, -1)
        if self.progress is not None:
            self.progress(StageChanged(stage, fraction))

    def evaluating(self, p: EvalProgress) -> None:
        """Evaluation progress: a pause request stops here too (the evaluation is redone on resuming; in
        a job of several processes the evaluation asks, and the processes agree: :meth:`evaluation_pause`)."""
        if self.should_pause is not None and self.should_pause() and not distributed.active():
            raise TrainingPaused(-1, -1)
        if self.progress is not None:
            self.progress(p)


class _Passes:
    """Progress over the models a job evaluates (the student, then the teacher): the fraction and ETA
    of all of them, each pass's ETA extrapolated to the passes still to come."""

    def __init__(self, cb: Callbacks, count: int) -> None:
        self.cb, self.count = cb, count

    def pass_(self, index: int, model: str) -> Callable[[EvalProgress], None]:
        def report(p: EvalProgress) -> None:
            eta = p.eta_seconds
            if eta is not None:
                eta += (self.count - 1 - index) * (p.seconds + eta)  # the later passes, as long as this one
            fraction = round((index + p.fraction) / self.count, 5)
            self.cb.evaluating(replace(p, model=model, fraction=fraction, eta_seconds=eta))

        return report


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; an unavailable device is a spec error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError([("device", f"{name} was asked for but this machine has no CUDA device")])
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SpecError([("device", f"{name} does not exist ({torch.cuda.device_count()} CUDA devices)")])
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SpecError([("device", "mps was asked for but is not available")])
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def load_teacher(ts: TeacherSpec, input_size: int = 32) -> ImageClassifier:
    """Load the teacher a job names; every failure is a :class:`TeacherLoadError` naming the field.

    The normalisation is :func:`gacd_core.normalization.resolve_input`'s, from the file and the
    specification's ``normalization``/``mean``/``std``: a file without gacd metadata is not normalised
    unless it carries ``mu``/``sigma`` buffers or the specification names a normalisation;
    ``teacher.normalization()`` says which and where it came from.
    """
    if ts.weights is None:
        raise SpecError([("teacher.weights", "a teacher id must be resolved to a weights file before the job runs")])
    try:
        return load_model_file(
            ts.weights,
            arch=ts.arch,
            num_classes=ts.num_classes,
            normalization=ts.normalization,
            mean=ts.mean,
            std=ts.std,
            input_size=input_size,
        )
    except UnknownNameError as exc:
        raise TeacherLoadError(exc.message, field="teacher.arch") from None
    except WeightsError as exc:
        named = ("arch", "num_classes", "normalization", "mean", "std")
        field = f"teacher.{exc.field}" if exc.field in named else "teacher.weights"
        raise TeacherLoadError(exc.message, field=field) from None


def check_job_teacher(
    teacher: ImageClassifier,
    data: DatasetBundle,
    device: torch.device,
    *,
    allow_weak: bool,
    cross_task: bool | None = None,
    cb: Callbacks | None = None,
) -> TeacherCheck:
    """Measure the teacher on the job's test split and refuse it when near chance (unless ``allow_weak``).

    Raises:
        TeacherUnfitError: code ``teacher_unfit``; nothing has been trained or written.
    """
    if cb is not None:
        cb.at(Stage.CHECKING_TEACHER)
    log.info("teacher %s: input normalisation %s", teacher.arch, norm_text(teacher.normalization()))
    check = check_teacher(
        teacher,
        data.test,
        dataset=data.name,
        num_classes=data.num_classes,
        device=device,
        dataset_norm=(data.mean, data.std),
        cross_task=cross_task,
    )
    log.info("%s", check.summary())
    enforce(check, allow_weak)
    if check.message:
        log.warning("teacher: %s", check.message)
    return check


def fingerprint(spec: JobSpec) -> str:
    """A digest of what determines training (not evaluation or metadata): a checkpoint resumes only a
    job with the same fingerprint."""
    d = spec.public_dict()
    keep = {k: d[k] for k in ("method", "teacher", "student", "dataset", "hyperparameters", "seed", "precision")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def run_job(
    spec: JobSpec,
    out_dir: str | Path,
    *,
    callbacks: Callbacks | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
) -> Report:
    """Train (``natural``, ``at``) or distil (the others), save the student, evaluate, write reports.

    Args:
        spec: the job, its inputs files that this process reads (the HTTP service's workers pass
            :meth:`JobSpec.resolved`; a job whose teacher or custom dataset is only an id is refused).
        out_dir: receives ``student.safetensors``, ``report.json`` and ``report.html``.
        checkpoint_dir: where the per-epoch checkpoint goes (default ``out_dir``); with ``resume``, an
            existing checkpoint there is continued from.

    A job of several processes (``resources``) runs this in each of them, as torchrun starts them
    (:func:`gacd_core.distributed.job_group`; ``gacd train --gpus N`` does it): they train and evaluate
    together, and rank 0 alone reports progress and writes the checkpoints, the student and the reports.

    Returns:
        The typed report (:class:`~gacd_core.report_model.Report`), also written to ``out_dir``.
    """
    spec = spec.resolved()  # nothing left to resolve: refused here, before any data is read
    res = spec.resources
    with distributed.job_group(res.world_size, gpus=res.gpus is not None) as rank_device:
        cb = callbacks or Callbacks()
        if not distributed.is_main():  # the other processes only listen for stop and pause requests
            cb = Callbacks(should_stop=cb.should_stop, should_pause=cb.should_pause)
        device = rank_device or resolve_device(spec.device)
        return _train_and_report(spec, Path(out_dir), checkpoint_dir, device, cb, resume)


def _train_and_report(
    spec: JobSpec, out: Path, checkpoint_dir: str | Path | None, device: torch.device, cb: Callbacks, resume: bool
) -> Report:
    """:func:`run_job` in this process, on ``device``."""
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else out
    seed_everything(spec.seed)
    data, teacher, check = _job_inputs(spec, device, cb)
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused teacher leaves nothing behind
    method = _job_method(spec, data, teacher, device)
    trainer = _job_trainer(spec, method, data, device, ckpt_dir, cb)
    ckpt = ckpt_dir / CHECKPOINT_NAME
    result = trainer.fit(resume_from=ckpt if resume and ckpt.is_file() else None)
    student = method.student
    student_path, info = _save_student(spec, data, student, out, cb)
    kind: Kind = "distill" if spec.params.needs_teacher else "train"
    subject = ReportSubject(
        kind,
        spec.method,
        spec,
        data,
        student,
        student_path,
        teacher=teacher,
        training=result,
        teacher_check=check,
        same_labels=teacher is not None and not method.cross_task,
        sync_batchnorm=trainer.synced_batchnorm,
    )
    return evaluate_and_report(
        subject,
        device,
        out,
        cb,
        precision=trainer.setting.precision if trainer.setting is not None else "fp32",
        channels_last=trainer.channels_last,
        onnx_info=info,
    )


def _job_inputs(
    spec: JobSpec, device: torch.device, cb: Callbacks
) -> tuple[DatasetBundle, ImageClassifier | None, TeacherCheck | None]:
    """The job's data, its teacher on ``device`` and the teacher's check (None, None without a teacher).

    Raises:
        TeacherUnfitError: the teacher is near chance on the data (nothing has been written).
    """
    cb.at(Stage.LOADING_DATA)
    on_gpu = spec.dataset.on_device and device.type == "cuda"
    data = load_dataset(spec.dataset, device=device if on_gpu else None)
    if spec.teacher is None:
        return data, None, None
    cb.at(Stage.LOADING_TEACHER)
    teacher = load_teacher(spec.teacher, data.image_size).to(device)
    check = check_job_teacher(
        teacher,
        data,
        device,
        allow_weak=spec.teacher.allow_weak,
        cross_task=getattr(spec.params, "cross_task", None),
        cb=cb,
    )
    return data, teacher, check


def _job_method(spec: JobSpec, data: DatasetBundle, teacher: ImageClassifier | None, device: torch.device) -> Method:
    """A new student (normalised with the user's statistics, else the dataset's) in the job's method."""
    student = create_model(
        spec.student.arch,
        data.num_classes,
        mean=spec.student.mean or data.mean,
        std=spec.student.std or data.std,
        input_size=data.image_size,  # a library student (a ViT) is built for the job's images
    )
    student.normalization_source = "user" if spec.student.mean is not None else "dataset"
    context = MethodContext(
        data.num_classes, data.train.labels, spec.hyperparameters.attack, spec.hyperparameters.epochs
    )
    return METHODS.get(spec.method)(student, teacher, spec.params, context).to(device)


def _job_trainer(
    spec: JobSpec, method: Method, data: DatasetBundle, device: torch.device, ckpt_dir: Path, cb: Callbacks
) -> Trainer:
    """The trainer of the job, wired to the caller's callbacks, checkpointing into ``ckpt_dir``."""
    trainer = Trainer(
        method,
        data.train,
        spec.hyperparameters,
        device=device,
        precision=spec.precision,
        seed=spec.seed,
        val=data.val,
        augment=spec.dataset.augment,
        checkpoint_dir=ckpt_dir,
        progress=cb.progress,
        should_stop=cb.should_stop,
        before_write=cb.before_write,
        should_pause=cb.should_pause,
        val_eps=spec.evaluation.eps,
        fingerprint=fingerprint(spec),
        compile=spec.compile,
        transform=data.transform,
        workers=spec.dataset.workers,
        sync_batchnorm=spec.resources.sync_batchnorm,
    )
    log.info(
        "%s: training %s (%s) on %s, %d images, %d epochs, device %s",
        spec.method,
        spec.student.arch,
        "teacher " + method.teacher.arch if method.teacher is not None else "no teacher",
        data.name,
        len(data.train),
        spec.hyperparameters.epochs,
        device,
    )
    return trainer


def _save_student(
    spec: JobSpec, data: DatasetBundle, student: ImageClassifier, out: Path, cb: Callbacks
) -> tuple[Path, dict[str, Any]]:
    """Write the trained student (in eval mode) to ``student.safetensors``; its path and its metadata."""
    student.eval()
    info = {
        "method": spec.method,
        "dataset": data.name,
        "class_names": data.class_names,
        "classes": spec.dataset.classes,
        "input_size": data.image_size,
    }  # no timestamp: the same weights give the same file (and the same SHA-256) whenever they are saved
    if not distributed.is_main():  # rank 0 writes it
        return out / STUDENT_FILE, info
    cb.writing()
    return save_weights(student, out / STUDENT_FILE, info), info


def run_evaluation(
    weights: str | Path,
    out_dir: str | Path,
    spec: JobSpec,
    *,
    teacher_weights: str | Path | None = None,
    teacher: TeacherSpec | None = None,
    callbacks: Callbacks | None = None,
) -> Report:
    """Evaluate a saved model under the protocol (and against a teacher, when given).

    Args:
        teacher_weights: a teacher's weights file with gacd metadata (shorthand for ``teacher``).
        teacher: the teacher to compare with, as in a job (``arch``, normalisation, ``allow_weak``);
            it is checked like a job's teacher before anything is evaluated.

    Returns:
        The report (also written to ``out_dir``).
    """
    cb = callbacks or Callbacks()
    if teacher is None and teacher_weights is not None:
        teacher = TeacherSpec(weights=str(teacher_weights))
    device = resolve_device(spec.device)
    cb.at(Stage.LOADING_DATA)
    data = load_dataset(spec.dataset)
    try:
        model = load_model_file(weights, input_size=data.image_size)
    except WeightsError as exc:
        raise WeightsError(exc.message, field="weights") from None
    if model.num_classes != data.num_classes:
        raise SpecError([("dataset", f"the model has {model.num_classes} classes, {data.name} has {data.num_classes}")])
    t_model, check = None, None
    if teacher is not None:
        cb.at(Stage.LOADING_TEACHER)
        t_model = load_teacher(teacher, data.image_size).to(device)
        check = check_job_teacher(t_model, data, device, allow_weak=teacher.allow_weak, cb=cb)
    subject = ReportSubject(
        "evaluate",
        read_info(weights).get("method"),
        spec,
        data,
        model.to(device),
        Path(weights),
        teacher=t_model,
        teacher_check=check,
    )
    return evaluate_and_report(subject, device, Path(out_dir), cb, precision=spec.precision)


@dataclass
class ReportSubject:
    """What a job hands to its evaluation: the models, the data, and what its report says about them.

    Attributes:
        kind: ``train``, ``distill`` or ``evaluate``.
        method: the method that trained the student (None when its weights file does not say).
        spec: the job: its evaluation protocol, and the report's ``spec`` (every default written out).
        data: the job's data; the protocol runs on its test split (or validation images).
        student: the model evaluated, on the job's device.
        student_file: its weights file (the report keeps its name and SHA-256).
        teacher: the teacher, on the job's device, if any.
        training: the training's result (None for an evaluation).
        teacher_check: what the check before training measured (kept in the report's ``teacher``).
        same_labels: teacher and student share one label set (teacher accuracy, agreement and logit
            correlations are then meaningful); default: when their class counts are equal. A job
            that declares ``cross_task`` says False even when the counts are equal.
        sync_batchnorm: the student trained with SyncBatchNorm (several CUDA processes).
    """

    kind: Kind
    method: str | None
    spec: JobSpec
    data: DatasetBundle
    student: ImageClassifier
    student_file: Path
    teacher: ImageClassifier | None = None
    training: TrainResult | None = None
    teacher_check: TeacherCheck | None = None
    same_labels: bool | None = None
    sync_batchnorm: bool = False

    @property
    def shares_labels(self) -> bool:
        """Whether the pair has one label set (False without a teacher)."""
        if self.teacher is None:
            return False
        if self.same_labels is not None:
            return self.same_labels
        return self.teacher.num_classes == self.student.num_classes

    @property
    def evaluates_teacher(self) -> bool:
        """Whether the protocol also runs on the teacher (one label set, and the job asks for it)."""
        return self.shares_labels and self.spec.evaluation.teacher


@dataclass
class _Measured:
    """What the protocol measured: each model's evaluation and the pair's figures."""

    student: E.Evaluation
    teacher: E.Evaluation | None = None
    agreement: dict[str, Any] | None = None
    structure: dict[str, Any] | None = None


def evaluate_and_report(
    subject: ReportSubject,
    device: torch.device,
    out_dir: Path,
    cb: Callbacks,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    onnx_info: dict[str, Any] | None = None,
) -> Report:
    """Run the protocol on the student (and teacher), measure compression, write both reports.

    With ``onnx_info`` (what a training job passes), the student is also exported to ``student.onnx``
    (its metadata gets ``onnx_info``) and checked against PyTorch on the evaluation images; the report's
    ``export.onnx`` records the check.

    The protocol runs in fp32 whatever ``precision`` (which sets only the throughput measurement);
    ``channels_last`` is the memory format the student's training found faster. In a job of several
    processes they share the protocol's images (:func:`gacd_core.evaluation.evaluate_model`); rank 0
    alone exports, measures the throughput and writes.
    """
    ev = subject.spec.evaluation
    main = distributed.is_main()
    test = _evaluation_images(subject.data, ev)
    onnx = _export_onnx(subject.student, test, out_dir, onnx_info, cb) if onnx_info is not None and main else None
    measured = _measure(subject, test, device, cb, channels_last)
    cb.at(Stage.COMPRESSION, 0.0)
    autocast = torch.bfloat16 if precision == "bf16" and device.type == "cuda" else None
    comp = Compression.model_validate(
        E.compression(
            subject.student,
            subject.teacher,
            device,
            subject.data.image_size,
            min(ev.batch_size, 256),
            measure=ev.throughput and main,
            autocast_dtype=autocast,
        )
    )
    report = _report(subject, test, measured, comp, onnx, device)
    if not main:
        return report
    cb.at(Stage.WRITING, 1.0)
    cb.writing()
    write_report(report, out_dir)
    bits = E.per_image_document(measured.student, test.labels, ev.split)
    if bits is not None:
        per_image.write(out_dir / PER_IMAGE, bits)
    return report


def _evaluation_images(data: DatasetBundle, ev: EvaluationSpec) -> Split:
    """The images the protocol runs on: the test split, or the validation images held out of training."""
    if ev.split != "val":
        return E.evaluation_set(data.test, ev)
    if data.val is None:
        raise SpecError([("evaluation.split", "'val' needs held-out training images: set dataset.val_size")])
    return E.evaluation_set(data.val, ev)


def _export_onnx(
    student: ImageClassifier, test: Split, out_dir: Path, onnx_info: dict[str, Any], cb: Callbacks
) -> OnnxCheck:
    """Export the student to ``student.onnx`` and check it against PyTorch on the evaluation images (of
    a streamed split, :data:`ONNX_CHECK_IMAGES` of them: :func:`~gacd_core.evaluation.resident`)."""
    from gacd_core.export import ONNX_FILE, export_and_verify

    cb.at(Stage.EXPORTING, 0.0)
    images = E.resident(test, ONNX_CHECK_IMAGES).images
    check = export_and_verify(student, out_dir / ONNX_FILE, images, info=onnx_info, before_write=cb.writing)
    return OnnxCheck.model_validate(check)


def _measure(
    subject: ReportSubject, test: Split, device: torch.device, cb: Callbacks, channels_last: bool
) -> _Measured:
    """The protocol on the student, then on the teacher (or only its features, across tasks), then the
    figures that compare the two."""
    ev, student, teacher = subject.spec.evaluation, subject.student, subject.teacher
    passes = _Passes(cb, 2 if subject.evaluates_teacher else 1)
    cb.at(Stage.EVALUATING_STUDENT, 0.0)
    measured = _Measured(
        E.evaluate_model(
            student,
            test,
            ev,
            device,
            keep_adv=teacher is not None,
            on_progress=passes.pass_(0, "student"),
            should_stop=cb.should_stop,
            should_pause=cb.evaluation_pause(),
            channels_last=channels_last,
        )
    )
    log.info("student: %s", E.summary_line(measured.student.metrics))
    if teacher is None:
        return measured
    if subject.evaluates_teacher:
        cb.at(Stage.EVALUATING_TEACHER, 0.0)
        measured.teacher = E.evaluate_model(
            teacher,
            test,
            ev,
            device,
            on_progress=passes.pass_(1, "teacher"),
            should_stop=cb.should_stop,
            should_pause=cb.evaluation_pause(),
            channels_last=channels_last,
        )
        log.info("teacher: %s", E.summary_line(measured.teacher.metrics))
    else:  # across tasks the teacher's accuracy means nothing here; its features still do
        feats, logits = E.features_and_logits(teacher, test, device, ev.batch_size)
        measured.teacher = E.Evaluation({}, logits, feats)
    cb.at(Stage.STRUCTURE, 0.0)
    measured.agreement, measured.structure = E.pair_metrics(
        student, teacher, measured.student, measured.teacher, device, subject.shares_labels, ev.batch_size
    )
    return measured


def _report(
    subject: ReportSubject,
    test: Split,
    measured: _Measured,
    comp: Compression,
    onnx: OnnxCheck | None,
    device: torch.device,
) -> Report:
    """The report, section by section."""
    ev, teacher = subject.spec.evaluation, subject.teacher
    return Report(
        kind=subject.kind,
        method=subject.method,
        created_at=now(),
        spec=subject.spec.public_dict(),
        student=student_section(subject.student, comp, subject.student_file),
        teacher=None if teacher is None else teacher_section(teacher, comp, subject.teacher_check),
        dataset=dataset_section(subject.data, len(test), ev.split),
        protocol=Protocol.model_validate(E.protocol_description(ev, len(test), subject.student.num_classes)),
        metrics=metrics_section(measured.student.metrics),
        teacher_metrics=None if measured.teacher is None else metrics_section(measured.teacher.metrics),
        agreement=None if measured.agreement is None else Agreement.model_validate(measured.agreement),
        structure=None if measured.structure is None else Structure.model_validate(measured.structure),
        compression=comp,
        training=training_section(subject.training),
        export=None if onnx is None else Export(onnx=onnx),
        environment=environment(device, sync_batchnorm=subject.sync_batchnorm),
    )


__all__ = [
    "STUDENT_FILE",
    "Callbacks",
    "ReportSubject",
    "check_job_teacher",
    "fingerprint",
    "load_teacher",
    "resolve_device",
    "run_evaluation",
    "run_job",
]
