"""A running job's voice: gacd_core's progress events become the job's progress and events.

The core sends typed events (:mod:`gacd_core.progress`); :class:`Reporter` turns each kind into what
the API shows: the job's ``progress`` record (stage ``training`` with the epoch, step, loss and ETA;
stage ``evaluating`` with the model, the attack and the fraction; the other stages by their names) and
its ``epoch`` and ``stage`` events. It also answers the core's stop question (a cancellation request or
a lost lease) and fences every file the job writes.

While the store is away, progress writes are skipped (the next one carries the latest state) and
events wait in ``pending``, to be written in order, with the time they happened, once it is back.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from gacd_core.progress import (
    EpochCompleted,
    EvalProgress,
    ProgressEvent,
    Stage,
    StageChanged,
    TrainingEvent,
    TrainingStarted,
    TrainingStep,
)
from service.state.records import Progress, now_iso
from service.state.store import STORE_ERRORS, Fenced, Store
from worker.lease import Lease

log = logging.getLogger("gacd.worker")
PROGRESS_EVERY = 1.0  # seconds between progress writes during an epoch
STOP_CHECK_EVERY = 0.5  # seconds between cancellation checks
EVALUATING = "evaluating"  # the progress record's stage for both evaluation stages (``model`` tells them apart)
EPOCH_FIGURES = ("train_acc", "val_clean_acc", "val_pgd_acc")  # an epoch's figures shown with its progress


class Reporter:
    """Turns gacd_core's callbacks into job progress, events and cancellation checks."""

    def __init__(self, store: Store, job_id: str, token: str, lease: Lease, initial: Progress) -> None:
        self.store, self.job_id, self.token, self.lease = store, job_id, token, lease
        self.last = initial.staged("starting", eta_seconds=None)
        self.pending: list[tuple[str, str, dict[str, Any], str]] = []
        self._written = 0.0
        self._checked = 0.0
        self._stop = False
        self._away = False

    # --- the store ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the pending events, oldest first (raises while the store is away)."""
        while self.pending:
            type_, message, data, at = self.pending[0]
            self.store.events.add(self.job_id, type_, message, data=data, created_at=at)
            self.pending.pop(0)

    def _best_effort(self, progress: Progress | None) -> None:
        try:
            self.flush()
            if progress is not None:
                self.store.jobs.update(self.job_id, {"progress": progress}, self.token)
        except STORE_ERRORS as exc:
            if not self._away:
                log.warning("job %s: the job store is unavailable (%s); training goes on", self.job_id, exc)
            self._away = True
            return
        if self._away:
            log.info("job %s: the job store is back", self.job_id)
        self._away = False

    def _event(self, type_: str, message: str, data: dict[str, Any]) -> None:
        self.pending.append((type_, message, data, now_iso()))
        self._best_effort(None)

    def _write_every(self, period: float) -> None:
        """Write the progress when ``period`` seconds have passed since the last write (0: now)."""
        now = time.monotonic()
        if now - self._written >= period:
            self._written = now
            self._best_effort(self.last)

    # --- the core's progress events ------------------------------------------------------------------
    def progress(self, event: ProgressEvent) -> None:
        """The job's progress callback: each kind of event has its own handler."""
        match event:
            case StageChanged():
                self._stage(event)
            case EvalProgress():
                self._evaluation(event)
            case TrainingStarted() | TrainingStep() | EpochCompleted():
                self._training(event)

    def _training(self, p: TrainingEvent) -> None:
        metrics: dict[str, Any] = {"loss": _finite(p.loss), "lr": p.lr, "images_per_second": p.images_per_second}
        metrics.update({k: _finite(v) for k, v in p.parts.items()})
        ended = p.record if isinstance(p, EpochCompleted) else None
        if ended is not None:
            metrics.update({k: ended[k] for k in EPOCH_FIGURES if ended.get(k) is not None})
        self.last = Progress(
            epoch=p.epoch if ended is not None else p.epoch - 1,
            epochs=p.epochs,
            step=p.step if isinstance(p, TrainingStep) else 0,
            steps_per_epoch=p.steps_per_epoch,
            fraction=round(p.fraction, 5),
            eta_seconds=_finite(p.eta_seconds),
            stage=Stage.TRAINING.value,
            metrics=metrics,
        )
        self._write_every(PROGRESS_EVERY if isinstance(p, TrainingStep) else 0.0)
        if ended is not None:
            text = f"epoch {p.epoch}/{p.epochs}: loss {ended['loss']:.4f}, train acc {100 * ended['train_acc']:.1f}%"
            if ended.get("val_pgd_acc") is not None:
                text += f", val clean {100 * ended['val_clean_acc']:.1f}%, val pgd {100 * ended['val_pgd_acc']:.1f}%"
            self._event("epoch", text, {"epoch": p.epoch, **metrics})

    def _stage(self, event: StageChanged) -> None:
        # Both evaluation stages are stage "evaluating" in the progress record, with the model apart, as
        # the evaluation's own progress says; the event keeps the stage's full name.
        model = event.stage.evaluates
        stage = EVALUATING if model is not None else event.stage.value
        changed = (self.last.stage, self.last.model) != (stage, model)
        if changed:  # what the training or the previous stage left does not describe this one
            self.last = self.last.staged(stage, model=model, attack=None, step=None, eta_seconds=None)
        if model is not None:  # its first evaluation progress, right after, writes the progress
            self._written = 0.0
        else:
            self._write_every(0.0 if changed else PROGRESS_EVERY)
        if changed:
            self._event("stage", event.stage.value, {"stage": event.stage.value})

    def _evaluation(self, p: EvalProgress) -> None:
        """The model, the attack running, the fraction of the evaluation done and its ETA; written at
        most every PROGRESS_EVERY seconds."""
        self.last = self.last.staged(
            EVALUATING, model=p.model, attack=p.attack, fraction=p.fraction, eta_seconds=_finite(p.eta_seconds)
        )
        self._write_every(PROGRESS_EVERY)

    # --- the core's questions ------------------------------------------------------------------------
    def before_write(self) -> None:
        """Fence for files: a worker whose lease went to another writes no checkpoint and no output.

        Raises:
            Fenced: the lease no longer holds this worker's token (or the store cannot say so).
        """
        if self.lease.lost.is_set():
            raise Fenced(self.job_id)
        try:
            held = self.store.leases.holds(self.job_id, self.token)
        except STORE_ERRORS:  # cannot tell: write only while the lease's own time allows
            held = self.lease.fresh()
        if not held:
            self.lease.lost.set()
            log.error("job %s: the lease is gone; writing nothing more", self.job_id)
            raise Fenced(self.job_id)

    def should_stop(self) -> bool:
        """Whether the job is to stop: cancelled (asked at most every STOP_CHECK_EVERY s) or lease lost."""
        if self.lease.lost.is_set():
            return True
        now = time.monotonic()
        if now - self._checked < STOP_CHECK_EVERY:
            return self._stop
        self._checked = now
        try:
            status = self.store.jobs.status(self.job_id)
        except Exception:  # Redis away: go on; the lease decides
            return self._stop
        self._stop = status in ("cancelling", "cancelled") or status is None
        return self._stop


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None
