"""One trainer for every method: SGD, a per-step learning-rate schedule, checkpoints that resume exactly.

The trainer knows nothing about any method: it feeds batches to ``method.training_step`` and steps the
optimiser on the loss it returns. Around that it provides what a job needs: the fast path (bf16
autocast and channels-last where a short measured probe at the start finds them faster, see
:mod:`gacd_core.fastpath`), a progress callback (the typed events of :mod:`gacd_core.progress`: epoch,
step, loss parts, images/s, ETA), a stop callback
checked every few steps, per-epoch monitoring on a held-out validation split, and a checkpoint after
every epoch holding everything needed to continue exactly (student, extra modules and buffers such as
projection heads and memory bank, optimiser, scheduler, RNG states, history). A pause callback, checked
before every step, writes a checkpoint at that step boundary (with the epoch's running sums) and stops:
resuming from it gives the same weights, bit for bit, as a run that never paused.

In a job of several processes (:mod:`gacd_core.distributed`) every process runs this trainer on its
slice of each global batch: the step goes through ``DistributedDataParallel``, batch-norm statistics are
averaged after it, the processes agree before every step whether to pause or stop, the epoch's sums are
summed over them, and only rank 0 writes checkpoints and reports progress. Resuming at the same number
of processes is exact too; at another it continues, not bit for bit.
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gacd_core import distributed, fastpath
from gacd_core.artifacts import CHECKPOINT
from gacd_core.attacks import PGD
from gacd_core.data import Batches, ImageSet, StreamBatches, StreamedSet, Transform, batches_of
from gacd_core.errors import CheckpointError, TrainingPaused, TrainingStopped
from gacd_core.methods import Method
from gacd_core.methods.base import StepOutput
from gacd_core.progress import EpochCompleted, TrainingEvent, TrainingStarted, TrainingStep
from gacd_core.spec import HyperParameters

log = logging.getLogger("gacd.trainer")
CHECKPOINT_FORMAT = "gacd-checkpoint/1"
# A checkpoint taken inside an epoch (a pause): also the step and the epoch's running sums. Its own
# format, so that a reader that knows only epoch checkpoints refuses it instead of resuming it wrongly.
MID_EPOCH_FORMAT = "gacd-checkpoint/2"
CHECKPOINT_NAME = CHECKPOINT  # named in gacd_core.artifacts, with the job's outputs


@dataclass
class TrainResult:
    epochs: int
    seconds: float
    images_per_second: float
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    fast_path: dict[str, Any] | None = None  # the setting trained in and, when probed, the probe's figures


@dataclass
class _Run:
    """One call of :meth:`Trainer.fit`: when it started, the steps it took, when it last asked the stop
    callback and last reported (the rate and ETA are this run's, not those of the runs it resumes)."""

    start: float
    total_steps: int
    steps: int = 0
    last_check: float = 0.0
    last_report: float = 0.0


def lr_factor(hyper: HyperParameters, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning-rate multiplier at optimiser step ``s`` (0-based), evaluated per step so that short
    runs get a smooth schedule: linear warm-up, then piecewise (x gamma at each milestone fraction of
    training), cosine to zero, or constant."""
    total = hyper.epochs * steps_per_epoch
    warm = hyper.warmup_epochs * steps_per_epoch

    def factor(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        if hyper.schedule == "piecewise":
            return float(hyper.gamma ** sum(s >= m * total for m in hyper.milestones))
        if hyper.schedule == "cosine":
            t = (s - warm) / max(1.0, total - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return 1.0

    return factor


def _rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)), *list(np_state)[2:]],
        "python": random.getstate(),
    }
    if distributed.active() and torch.cuda.is_available():
        # each process draws on its own device; the state of that device is the same on every process
        state.update(cuda=[torch.cuda.get_rng_state()], cuda_current_device=True)
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        if state.get("cuda_current_device"):
            torch.cuda.set_rng_state(state["cuda"][0])
        else:
            torch.cuda.set_rng_state_all(state["cuda"])
    n = state.get("numpy")
    if n:
        np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    if state.get("python"):
        random.setstate(_as_tuple(state["python"]))


def _as_tuple(obj: Any) -> Any:
    return tuple(_as_tuple(o) for o in obj) if isinstance(obj, list | tuple) else obj


class _Accumulator:
    """Sums of the loss, its parts and correct predictions over an epoch, kept on the device."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.parts: dict[str, torch.Tensor] = {}
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss += loss.detach().float()
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, torch.zeros_like(self.loss)) + v.detach().float()
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.seen += len(y)

    def means(self, steps: int, epoch: int) -> tuple[float, dict[str, float]]:
        """Mean loss and parts over ``steps`` steps; a non-finite loss stops training."""
        loss = float(self.loss) / max(1, steps)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss} in epoch {epoch}")
        return loss, {k: float(v) / max(1, steps) for k, v in self.parts.items()}

    def accuracy(self) -> float:
        return int(self.correct) / max(1, self.seen)

    def state(self) -> dict[str, Any]:
        return {
            "loss": self.loss.cpu(),
            "parts": {k: v.cpu() for k, v in self.parts.items()},
            "correct": self.correct.cpu(),
            "seen": self.seen,
        }

    def restore(self, state: dict[str, Any]) -> None:
        device = self.loss.device
        self.loss = state["loss"].to(device)
        self.parts = {k: v.to(device) for k, v in state["parts"].items()}
        self.correct = state["correct"].to(device)
        self.seen = int(state["seen"])

    def reduce(self) -> None:
        """Every process's sums as one process's over the global batch: the loss and its parts averaged
        over the processes (each step's, a mean over an equal slice), correct predictions and images
        summed. Nothing with one process."""
        world = distributed.world_size()
        if world == 1:
            return
        floats = torch.stack([self.loss, *self.parts.values()]).double()
        counts = torch.stack([self.correct, torch.tensor(self.seen, device=self.correct.device)])
        distributed.sum_across(floats, counts)
        floats /= world
        self.loss = floats[0].to(self.loss.dtype)
        self.parts = {k: floats[i + 1].to(v.dtype) for i, (k, v) in enumerate(self.parts.items())}
        self.correct, self.seen = counts[0], int(counts[1])


def own_sums(mid_epoch: dict[str, Any]) -> dict[str, Any]:
    """This process's running sums in a mid-epoch checkpoint: its own when the checkpoint was written by
    as many processes as run now; at another count, rank 0 takes them all (the loss and parts scaled to
    the new count, as :meth:`_Accumulator.reduce` divides by it) and the other processes none."""
    saved = mid_epoch.get("rank_sums") or [mid_epoch["sums"]]
    world, rank = distributed.world_size(), distributed.rank()
    if len(saved) == world:
        return saved[rank]
    keep = 1.0 if rank == 0 else 0.0
    scale = keep * world / len(saved)
    return {
        "loss": sum(s["loss"] for s in saved) * scale,
        "parts": {k: sum(s["parts"][k] for s in saved) * scale for k in saved[0]["parts"]},
        "correct": sum(s["correct"] for s in saved) * int(keep),
        "seen": sum(int(s["seen"]) for s in saved) * int(keep),
    }


def _resident(train: ImageSet | StreamedSet, device: torch.device, share: float = 0.25) -> ImageSet | StreamedSet:
    """The training set where batches are cut: on a CUDA device when it takes at most ``share`` of the
    device's memory (augmentation then runs there too), else in pinned host memory, from which batches
    are copied without blocking. On the CPU it stays where it is; a streamed split stays on disk."""
    if isinstance(train, StreamedSet) or device.type != "cuda" or train.images.device.type == "cuda":
        return train
    total = torch.cuda.get_device_properties(device).total_memory
    if train.images.numel() <= share * total:
        return train.to(device)
    return ImageSet(train.images.pin_memory(), train.labels.pin_memory())


def _forced_setting(
    method: Method, device: torch.device, precision: str, channels_last: bool | None, compile: bool
) -> fastpath.Setting | None:
    """The fast-path setting the arguments force (None under ``auto``: the probe chooses); refuses a
    precision or a ``compile`` that cannot run, and drops a channels-last that is not safe here."""
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be fp32, bf16 or auto, not {precision!r}")
    if precision == "bf16" and not fastpath.bf16_supported(device):
        log.warning("bf16 was asked for, but %s has no bf16 arithmetic: it will be emulated (slow)", device)
    if compile and (why := fastpath.compile_available(device)):
        raise ValueError(f"compile: {why}")
    if channels_last and not fastpath.channels_last_safe(method, device):
        log.warning("channels-last is not safe for this model on %s (see gacd_core.fastpath); NCHW", device)
        channels_last = False
    if precision == "auto":
        return None
    return fastpath.Setting(precision, device.type == "cuda" if channels_last is None else channels_last)


def _optimiser(
    method: Method, hyper: HyperParameters, steps_per_epoch: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD over the method's trainable parameters, with the per-step schedule of :func:`lr_factor`."""
    optimizer = torch.optim.SGD(
        list(method.trainable_parameters()),
        lr=hyper.lr,
        momentum=hyper.momentum,
        weight_decay=hyper.weight_decay,
        nesterov=hyper.nesterov and hyper.momentum > 0,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(hyper, steps_per_epoch))


class Trainer:
    """Train ``method`` on ``train``.

    Args:
        method: the method, already on ``device``.
        train: the training split, in memory or streamed (:class:`~gacd_core.data.StreamedSet`).
        hyper: epochs, batch size, optimiser and schedule.
        device: where training runs.
        precision: ``fp32`` or ``bf16`` (autocast on CUDA or the CPU) force the precision; ``auto``
            measures a few training steps in every candidate setting when training starts and keeps
            the fastest (:func:`gacd_core.fastpath.probe`; bf16 is a candidate only where the device
            has bf16 arithmetic). The choice is saved in the checkpoint, and a resumed run keeps it.
        seed: seeds data order and augmentation (with the epoch number).
        val: a held-out split, in memory or streamed, for per-epoch clean and PGD-10 accuracy (never used
            to pick a model).
        augment: random crop and flip.
        checkpoint_dir: where ``checkpoint.pt`` is written after every epoch.
        progress: receives :class:`~gacd_core.progress.TrainingStarted` once, then
            :class:`~gacd_core.progress.TrainingStep` every ``log_every`` steps or ``log_seconds`` of
            training, whichever comes first, and :class:`~gacd_core.progress.EpochCompleted` after every
            epoch, so that a long step or a short epoch still shows progress.
        should_stop: checked at the first step of every epoch and then every ``check_every`` steps or
            ``check_seconds``, whichever comes first (a cancel lands within about a step plus
            ``check_seconds``), and before every batch of the per-epoch validation; when it returns
            True, training raises :class:`TrainingStopped` (the last epoch's checkpoint remains).
        before_write: called right before each checkpoint is written; it may raise to prevent the write.
        should_pause: checked before every step; when it returns True, the trainer writes a checkpoint at
            that step boundary and raises :class:`TrainingPaused` (resuming continues from that step).
        channels_last: channels-last memory format; ``None``: probed under ``auto``, else on CUDA only.
        probe_steps: steps per setting and round of the ``auto`` probe.
        compile: run the student's and the teacher's bodies through ``torch.compile`` while training
            (:func:`gacd_core.fastpath.compiled`); monitoring and evaluation stay eager.
        val_eps: the radius of the per-epoch PGD-10 monitoring.
        fingerprint: identifies the job; a checkpoint with another fingerprint is refused.
        transform: the declared training transform of an in-memory split (default: the CIFAR
            augmentation); a streamed split carries its own.
        workers: loader processes of a streamed split.
        sync_batchnorm: in a job of several CUDA processes, SyncBatchNorm while training
            (:func:`gacd_core.distributed.sync_batchnorm`); default batch norm per process.
    """

    def __init__(
        self,
        method: Method,
        train: ImageSet | StreamedSet,
        hyper: HyperParameters,
        *,
        device: torch.device,
        precision: str = "fp32",
        seed: int = 0,
        val: ImageSet | StreamedSet | None = None,
        augment: bool = True,
        checkpoint_dir: Path | None = None,
        progress: Callable[[TrainingEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        before_write: Callable[[], None] | None = None,
        should_pause: Callable[[], bool] | None = None,
        check_every: int = 10,
        log_every: int = 20,
        check_seconds: float = 1.0,
        log_seconds: float = 2.0,
        channels_last: bool | None = None,
        val_eps: float = 8 / 255,
        fingerprint: str | None = None,
        probe_steps: int = 2,
        compile: bool = False,
        transform: Transform | None = None,
        workers: int | None = None,
        sync_batchnorm: bool = False,
    ) -> None:
        self.method, self.hyper, self.device, self.val = method, hyper, device, val
        self.sync_batchnorm, self.synced_batchnorm = sync_batchnorm, False
        self._ddp: torch.nn.Module | None = None  # the step in DistributedDataParallel, made at the first step
        self.checkpoint_dir = checkpoint_dir
        self.progress, self.should_stop, self.before_write = progress, should_stop, before_write
        self.should_pause = should_pause
        self._mid_epoch: dict[str, Any] | None = None  # set by a mid-epoch checkpoint, used once by fit()
        self.check_every, self.log_every = max(1, check_every), max(1, log_every)
        self.check_seconds, self.log_seconds = check_seconds, log_seconds
        self.val_eps = val_eps
        self.fingerprint = fingerprint
        self.setting: fastpath.Setting | None = _forced_setting(method, device, precision, channels_last, compile)
        self.precision, self.probe_steps, self.compile = precision, probe_steps, compile
        self._channels_last_arg = channels_last  # as asked: the probe under ``auto`` reads it
        self.probe_result: fastpath.ProbeResult | None = None
        self.channels_last = False
        self.train_data = _resident(train, device)
        self.seed = seed
        self.transform, self.workers = transform, workers
        self.batches = self._batches(augment, seed)
        if self.setting is not None:
            self._apply(self.setting)
        self.steps_per_epoch = len(self.batches)
        self.optimizer, self.scheduler = _optimiser(method, hyper, self.steps_per_epoch)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0  # completed epochs
        self.seconds = 0.0  # training time of completed epochs, this run and earlier ones

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self, mid_epoch: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything needed to continue; ``mid_epoch`` (step, running sums) for a checkpoint inside an epoch."""
        return {
            "format": CHECKPOINT_FORMAT if mid_epoch is None else MID_EPOCH_FORMAT,
            "mid_epoch": mid_epoch,
            "fingerprint": self.fingerprint,
            "epoch": self.epoch,
            "seconds": self.seconds,
            "student": self.method.student.state_dict(),
            "extras": self.method.extras.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "rng": _rng_state(),
            # Batch order and augmentation come from generators seeded with (seed, epoch), so the epoch
            # above restores them; the fast-path setting is kept so that a resumed run computes alike.
            "data": {"seed": self.seed, "epoch": self.epoch, "world_size": distributed.world_size()},
            "fast_path": None if self.setting is None else self.setting.as_dict(),
        }

    def save_checkpoint(self, mid_epoch: dict[str, Any] | None = None) -> Path | None:
        """Write ``checkpoint.pt``: rank 0 writes, every process calls it. A mid-epoch checkpoint holds the
        running sums of every process, and every process returns once it is on disk (the job stops
        there, and whatever runs next in this process may read it)."""
        if mid_epoch is None or not distributed.active():
            return self._write_checkpoint(mid_epoch)
        mid_epoch = {**mid_epoch, "rank_sums": distributed.gather_objects(mid_epoch["sums"])}
        path = self._write_checkpoint(mid_epoch)
        distributed.barrier()
        return path

    def _write_checkpoint(self, mid_epoch: dict[str, Any] | None) -> Path | None:
        if self.checkpoint_dir is None or not distributed.is_main():
            return None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / CHECKPOINT_NAME
        tmp = path.with_name(path.name + ".tmp")
        # Serialised in memory, then written by Python: a full or read-only disk raises OSError with its
        # errno (torch's own file writer would raise a RuntimeError that hides it); fsync before the
        # rename, so that a crash leaves the old checkpoint or the new one, never half of one.
        buf = io.BytesIO()
        torch.save(self.state_dict(mid_epoch), buf)
        if self.before_write is not None:
            self.before_write()
        try:
            with open(tmp, "wb") as f:
                f.write(buf.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (read with ``weights_only=True``)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(state, dict) or state.get("format") not in (CHECKPOINT_FORMAT, MID_EPOCH_FORMAT):
            raise CheckpointError(f"{path} is not a gacd checkpoint")
        if self.fingerprint is not None and state.get("fingerprint") not in (None, self.fingerprint):
            raise CheckpointError(f"{path} belongs to another job (its specification differs)")
        if state["epoch"] > self.hyper.epochs:
            raise CheckpointError(f"{path} is at epoch {state['epoch']}, past this job's {self.hyper.epochs} epochs")
        try:
            self.method.student.load_state_dict(state["student"])
            self.method.extras.load_state_dict(state["extras"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} does not match this job: {str(exc).splitlines()[0]}") from None
        self.epoch, self.seconds, self.history = int(state["epoch"]), float(state["seconds"]), list(state["history"])
        self._mid_epoch = state.get("mid_epoch") if state["format"] == MID_EPOCH_FORMAT else None
        trained_by = int(state.get("data", {}).get("world_size", 1))
        if trained_by != distributed.world_size():
            now = distributed.world_size()
            log.warning("%s was written by %d processes, this run has %d: not bit for bit", path, trained_by, now)
        _set_rng_state(state["rng"])
        fast = state.get("fast_path")
        if fast is not None:
            cl = bool(fast["channels_last"]) and fastpath.channels_last_safe(self.method, self.device)
            saved = fastpath.Setting(str(fast["precision"]), cl)
            if self.setting is not None and saved != self.setting:
                log.info("the checkpoint was trained with %s; continuing with it", saved.name)
            self._apply(saved)

    # --- fast path ----------------------------------------------------------------------------
    def _apply(self, setting: fastpath.Setting) -> None:
        self.setting = setting
        self.channels_last = setting.channels_last
        self.batches.channels_last = setting.channels_last
        self.method.to(memory_format=torch.channels_last if setting.channels_last else torch.contiguous_format)

    def choose_setting(self) -> fastpath.Setting:
        """The fast-path setting: forced, restored from a checkpoint, or measured now (``auto``)."""
        if self.setting is not None:
            return self.setting
        probe_batches = self._batches(self.batches.augment, self.seed + 1)
        sample = [b for _, b in zip(range(2), probe_batches, strict=False)]
        side = int(sample[0][0].shape[-1]) if sample else None
        settings = fastpath.candidates(self.device, self.precision, self._channels_last_arg, self.method, side)
        with distributed.batch_rows(self._global_batch()):
            result = fastpath.probe(
                self.method, self._probe_step, sample, settings, self.device, steps=self.probe_steps
            )
        result = distributed.broadcast(result)  # rank 0's measurement decides for every process
        self.probe_result = result
        log.info("%s", fastpath.describe(result))
        self._apply(result.chosen)
        return result.chosen

    def _global_batch(self) -> int:
        """The images of one step over every process (a split smaller than the batch: all of it)."""
        return min(self.hyper.batch_size, len(self.train_data))

    def _batches(self, augment: bool, seed: int) -> Batches | StreamBatches:
        """The training batches (shuffled, whole batches only), in memory or streamed; in a job of several
        processes, this process's slice of each."""
        shard = (distributed.rank(), distributed.world_size()) if distributed.active() else None
        return batches_of(
            self.train_data,
            self.hyper.batch_size,
            transform=self.transform,
            workers=self.workers,
            shuffle=True,
            augment=augment,
            drop_last=True,
            device=self.device,
            seed=seed,
            shard=shard,
        )

    def _probe_step(self, method: torch.nn.Module, setting: fastpath.Setting, batch: tuple) -> None:
        assert isinstance(method, Method)
        x, y, idx = batch
        with fastpath.autocast(self.device, setting):
            out = method.training_step(x, y, idx)
        out.loss.backward()

    def train_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        """One optimisation step on a batch in the chosen setting: the method's step (its inner attack
        included) under autocast, backward, optimiser and schedule."""
        setting = self.setting or self.choose_setting()
        with fastpath.autocast(self.device, setting), distributed.batch_rows(self._global_batch()):
            out = self._forward(x, y, idx)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        distributed.average_batchnorm_stats(self.method.student)
        return out

    def _forward(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        """The method's step: as it is in one process; through DistributedDataParallel in several
        (:func:`gacd_core.distributed.wrap_step`, made at the first step, once the fast path is set)."""
        if not distributed.active():
            return self.method.training_step(x, y, idx)
        if self._ddp is None:
            self._ddp = distributed.wrap_step(self.method)
        loss, logits, parts = self._ddp(x, y, idx)
        return StepOutput(loss, parts, logits)

    # --- training -----------------------------------------------------------------------------
    def fit(self, resume_from: Path | None = None) -> TrainResult:
        """Train for the remaining epochs; with ``resume_from``, continue from that checkpoint."""
        resumed = None
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            resumed = self.epoch
            log.info("resumed from %s at epoch %d", resume_from, self.epoch)
        if self.epoch < self.hyper.epochs:
            self.choose_setting()
        run = _Run(time.perf_counter(), self.hyper.epochs * self.steps_per_epoch)
        if self.progress is not None and self.epoch < self.hyper.epochs:
            self._report(TrainingStarted, self.epoch + 1, 0, run, float("nan"), {})
        with (
            distributed.sync_batchnorm(self.method.student, self.sync_batchnorm) as synced,
            fastpath.compiled(self.method.student, self.method.teacher, enabled=self.compile),
        ):
            self.synced_batchnorm = synced
            try:
                self._epochs(run)
            finally:
                self._ddp = None  # it holds the SyncBatchNorm layers, which leave with this block
        images = sum(r["images_per_second"] * r["seconds"] for r in self.history)
        fast = None
        if self.setting is not None:
            probe = self.probe_result.as_dict() if self.probe_result is not None else {}
            fast = {**probe, **self.setting.as_dict(), "requested": self.precision, "compile": self.compile}
        return TrainResult(
            self.epoch, self.seconds, images / max(self.seconds, 1e-9), list(self.history), resumed, fast
        )

    def _epochs(self, run: _Run) -> None:
        """The remaining epochs: steps, per-epoch record, validation monitor, checkpoint, progress."""
        run.last_check = run.last_report = time.perf_counter()
        for epoch in range(self.epoch + 1, self.hyper.epochs + 1):
            acc, seconds = self._train_epoch(epoch, run)
            self._end_epoch(epoch, acc, seconds, run)

    def _train_epoch(self, epoch: int, run: _Run) -> tuple[_Accumulator, float]:
        """The steps of ``epoch`` (those after a mid-epoch checkpoint's); its sums and training seconds."""
        t0 = time.perf_counter()
        self.method.train()
        # Running sums stay on the device; the host reads them only when it reports.
        acc = _Accumulator(self.device)
        done = 0  # steps of this epoch already taken before a mid-epoch checkpoint
        if self._mid_epoch is not None:
            done = int(self._mid_epoch["step"])
            acc.restore(own_sums(self._mid_epoch))
            t0 -= float(self._mid_epoch["seconds"])
            self._mid_epoch = None
        # the epoch's plan (order, augmentation) is drawn whole again; its first `done` batches are skipped
        self.batches.set_epoch(epoch, start=done)
        for step, (x, y, idx) in enumerate(self.batches, start=done + 1):
            self._before_step(epoch, step, run, acc, t0)
            out = self.train_step(x, y, idx)
            run.steps += 1
            acc.add(out.loss, out.parts, out.logits, y)
            now = time.perf_counter()
            if self.progress is not None and (step % self.log_every == 0 or now - run.last_report >= self.log_seconds):
                run.last_report = now
                loss_mean, parts = acc.means(step, epoch)
                self._report(TrainingStep, epoch, step, run, loss_mean, parts)
        return acc, time.perf_counter() - t0

    def _before_step(self, epoch: int, step: int, run: _Run, acc: _Accumulator, t0: float) -> None:
        """Pause (a checkpoint at this step boundary) or stop, when asked, before step ``step``. Processes
        of one job decide together (:func:`gacd_core.distributed.agree`, every step): any one asked, all do.

        Raises:
            TrainingPaused: the pause callback said pause (after the checkpoint).
            TrainingStopped: the stop callback said stop.
        """
        pause = self.should_pause is not None and self.should_pause()
        if not distributed.active():
            if pause:
                self._pause(epoch, step - 1, acc, time.perf_counter() - t0)
            self._check_stop(epoch, step, run)
            return
        pause, stop = distributed.agree(pause, self._stop_due(step, run))
        if pause:
            self._pause(epoch, step - 1, acc, time.perf_counter() - t0)
        if stop:
            raise TrainingStopped(epoch, step)

    def _stop_due(self, step: int, run: _Run) -> bool:
        """Whether the stop callback, asked every ``check_every`` steps or ``check_seconds`` (whichever
        comes first), says stop."""
        now = time.perf_counter()
        due = (step - 1) % self.check_every == 0 or now - run.last_check >= self.check_seconds
        if self.should_stop is None or not due:
            return False
        run.last_check = now
        return bool(self.should_stop())

    def _check_stop(self, epoch: int, step: int, run: _Run) -> None:
        """Raises:
        TrainingStopped: the stop callback, when asked (:meth:`_stop_due`), said stop.
        """
        if self._stop_due(step, run):
            raise TrainingStopped(epoch, step)

    def _end_epoch(self, epoch: int, acc: _Accumulator, train_seconds: float, run: _Run) -> None:
        """The epoch's history row (with the validation monitor), its checkpoint, log line and progress."""
        self.seconds += train_seconds
        acc.reduce()  # every process's sums: the global batch's
        loss_mean, parts = acc.means(self.steps_per_epoch, epoch)
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "loss": loss_mean,
            "loss_parts": parts,
            "train_acc": acc.accuracy(),
            "seconds": train_seconds,
            "images_per_second": acc.seen / max(train_seconds, 1e-9),
        }
        if self.val is not None:
            record.update(self.monitor())
        self.history.append(record)
        self.epoch = epoch
        self.save_checkpoint()
        log.info(
            "epoch %d/%d loss %.4f train_acc %.4f %.0f img/s",
            epoch,
            self.hyper.epochs,
            record["loss"],
            record["train_acc"],
            record["images_per_second"],
        )
        if self.progress is not None:
            self._report(EpochCompleted, epoch, self.steps_per_epoch, run, loss_mean, parts, record=record)

    def _pause(self, epoch: int, done: int, acc: _Accumulator, seconds: float) -> None:
        """Checkpoint after ``done`` steps of ``epoch`` (RNG states as they are now), then stop."""
        self.save_checkpoint({"step": done, "sums": acc.state(), "seconds": seconds})
        log.info("paused at epoch %d, step %d/%d; checkpoint written", epoch, done, self.steps_per_epoch)
        raise TrainingPaused(epoch, done)

    def _report(
        self,
        event: type[TrainingStarted] | type[TrainingStep] | type[EpochCompleted],
        epoch: int,
        step: int,
        run: _Run,
        loss: float,
        parts: dict[str, float],
        **extra: Any,
    ) -> None:
        """Send the progress callback an ``event`` of this type, with the rate and ETA measured over
        this run's steps; ``extra``: the fields of that event type only (an epoch's ``record``)."""
        assert self.progress is not None
        elapsed = time.perf_counter() - run.start
        global_step = (epoch - 1) * self.steps_per_epoch + step
        rate = run.steps / max(elapsed, 1e-9)
        eta = (run.total_steps - global_step) / rate if rate > 0 else float("nan")
        self.progress(
            event(
                epoch=epoch,
                epochs=self.hyper.epochs,
                step=step,
                steps_per_epoch=self.steps_per_epoch,
                global_step=global_step,
                total_steps=run.total_steps,
                loss=loss,
                parts=parts,
                lr=self.optimizer.param_groups[0]["lr"],
                images_per_second=rate * self.hyper.batch_size,
                eta_seconds=eta,
                **extra,
            )
        )

    @torch.no_grad()
    def _accuracy(self, batches: Batches | StreamBatches, attack: PGD | None) -> float:
        """The fraction right on ``batches`` (under ``attack``). Processes of one job each take their rows
        of every batch, agree on a stop request before it, and sum their counts."""
        model = self.method.student
        correct = torch.zeros((), dtype=torch.long)
        for x, y, _ in batches:
            stop = self.should_stop is not None and self.should_stop()  # a long validation split: cancel here too
            if distributed.agree(stop)[0]:
                raise TrainingStopped(self.epoch + 1, self.steps_per_epoch)
            with distributed.batch_rows(len(y)) as rows:
                x, y = x[rows], y[rows]
                if not len(y):
                    continue
                if attack is not None:
                    with torch.enable_grad():
                        x = attack(model, x, y)
                correct += int((model(x).argmax(1) == y).sum())
        distributed.sum_across(correct)
        return int(correct) / max(1, len(batches.data))

    def monitor(self) -> dict[str, float]:
        """Clean and PGD-10 (eps/4 steps) accuracy on the validation split, student in eval mode."""
        assert self.val is not None
        model = self.method.student
        was = model.training
        model.eval()
        try:
            batches = batches_of(
                self.val, 256, workers=self.workers, device=self.device, channels_last=self.channels_last
            )
            with fastpath.eager(model):  # other batch sizes than training's: no recompilation for them
                return {
                    "val_clean_acc": self._accuracy(batches, None),
                    "val_pgd_acc": self._accuracy(batches, PGD(self.val_eps, 10, self.val_eps / 4)),
                }
        finally:
            model.train(was)
