"""A job's life on a worker: lease, run through gacd_core, report progress and events, finish.

1. The job's record is read; a finished or cancelled job is left alone.
2. The worker takes the job's lease (a fencing token with a TTL) or, if another worker holds it,
   leaves the job to that worker. A heartbeat thread renews the lease; if renewing fails, the job stops
   and this worker writes nothing more, because every write below is checked against the token.
3. The job runs through :func:`gacd_core.jobs.run_job` with the teacher and dataset resolved to files in
   the artifact store. Its progress callback becomes the job's progress and ``epoch`` events; its stop
   callback checks for a cancellation request (and a lost lease) every few steps. A checkpoint is
   written every epoch into the artifact store, and a job that starts with one continues from it.
4. The outputs (``student.safetensors``, ``student.onnx``, ``report.json``, ``report.html``,
   ``train.log``) are listed with their sizes and SHA-256 and committed with the final status, in one
   fenced write.
5. A worker asked to stop (SIGTERM) pauses its job at the next training step: the trainer writes a
   checkpoint there, the job goes back to ``queued`` (a fenced write), the lease is released, and only
   then is the job sent to the queue again, so the next free worker takes it at once and continues from
   that step (the result is the same, bit for bit). A stopping worker starts no new job: it sends the
   message back to the queue.

While Redis is away (restarted, loading its append-only file), the job goes on: progress writes are
skipped, events are kept and written in order once the store is back, the lease is renewed again, and
the writes a job cannot go on without (taking the job, the final status) wait for the store with a
growing pause. If the store stays away for longer than the lease, the lease is gone when it returns:
this worker stops writing and the reaper hands the job on, to resume from its last checkpoint.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from gacd_core import catalog
from gacd_core.errors import GACDError, SpecError, TrainingPaused, TrainingStopped
from gacd_core.report import sha256_file
from gacd_core.spec import JobSpec
from service.state.artifacts import ArtifactStore
from service.state.records import TERMINAL, Artifact, DatasetRecord, JobRecord, Progress, TeacherRecord, now_iso
from service.state.settings import Settings
from service.state.store import STORE_ERRORS, Fenced, Store, TransitionRefused

log = logging.getLogger("gacd.worker")
OUTPUTS = ("student.safetensors", "student.onnx", "report.json", "report.html", "train.log")
PROGRESS_EVERY = 1.0  # seconds between progress writes during an epoch
STOP_CHECK_EVERY = 0.5  # seconds between cancellation checks
T = TypeVar("T")


def patiently(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried with a growing pause (0.5 s up to 5 s) while the store is away."""
    pause = 0.5
    while True:
        try:
            return fn(*args, **kwargs)
        except STORE_ERRORS as exc:
            log.warning("%s: the job store is unavailable (%s); retrying in %.1f s", what, exc, pause)
            time.sleep(pause)
            pause = min(2 * pause, 5.0)


class _Lease:
    """Holds a job's lease and renews it from a thread until stopped; ``lost`` once a renewal fails."""

    def __init__(self, store: Store, job_id: str, token: str, ttl: float, every: float) -> None:
        self.store, self.job_id, self.token, self.ttl, self.every = store, job_id, token, ttl, every
        self.lost = threading.Event()
        self.renewed = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.store.renew_lease(self.job_id, self.token, self.ttl):
                    log.error("job %s: lease lost; stopping without further writes", self.job_id)
                    self.lost.set()
                    return
                self.renewed = time.monotonic()
            except Exception as exc:  # Redis away: keep the lease while the TTL allows
                log.warning("job %s: lease renewal failed (%s); retrying", self.job_id, exc)

    def fresh(self) -> bool:
        """Whether the last renewal is recent enough that the lease cannot have expired yet."""
        return time.monotonic() - self.renewed < self.ttl - self.every

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.store.release_lease(self.job_id, self.token)
        except Exception as exc:
            log.warning("job %s: could not release the lease: %s", self.job_id, exc)


class JobRunner:
    """Runs one job on this worker.

    Args:
        stopping: set when the worker is shutting down: the job pauses at its next step and is re-queued.
        requeue: ``requeue(job_id, queue)`` sends the job to the queue again (needed with ``stopping``).
        draining: True when the worker was drained (``gacd drain``): it starts no job, sending each
            message it still receives back to the queue.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        worker_name: str,
        *,
        stopping: threading.Event | None = None,
        requeue: Callable[[str, str | None], None] | None = None,
        draining: Callable[[], bool] | None = None,
    ) -> None:
        self.store, self.settings, self.worker = store, settings, worker_name
        self.arts = ArtifactStore(settings.artifact_root)
        self.stopping = stopping or threading.Event()
        self.requeue = requeue
        self.draining = draining or (lambda: False)
        self._hand_back: str | None = None  # set to the job's queue when a paused job is to be re-sent

    # --- the lifecycle ------------------------------------------------------------------------------
    def run(self, job_id: str) -> None:
        try:
            rec = patiently(f"job {job_id}", self.store.get, JobRecord, job_id)
        except ValidationError as exc:  # stored by a version whose job specification this one cannot read
            self._unreadable(job_id, exc)
            return
        if rec is None:
            log.warning("job %s: no such job; dropping the message", job_id)
            return
        if rec.status in TERMINAL:
            log.info("job %s is already %s; nothing to do", job_id, rec.status)
            return
        if self.stopping.is_set() and self.requeue is not None:
            log.info("job %s: this worker is stopping; the job goes back to the queue", job_id)
            self.requeue(job_id, rec.queue)
            return
        if self.requeue is not None and patiently(f"job {job_id}", self.draining):
            log.info("job %s: this worker is drained; the job goes back to the queue", job_id)
            time.sleep(1.0)  # until Celery's cancel_consumer, read between jobs, stops the messages
            self.requeue(job_id, rec.queue)
            return
        token = patiently(f"job {job_id}", self.store.acquire_lease, job_id, self.settings.lease_seconds)
        if token is None:
            log.info("job %s: another worker holds its lease; leaving it to that worker", job_id)
            return
        self._hand_back = None
        with _Lease(self.store, job_id, token, self.settings.lease_seconds, self.settings.heartbeat_seconds) as lease:
            self._run_leased(rec, token, lease)
        # The lease is released now: the worker that takes the message can take the lease at once.
        if self._hand_back is not None and self.requeue is not None:
            patiently(f"job {job_id}", self.requeue, job_id, self._hand_back or None)

    def _unreadable(self, job_id: str, exc: ValidationError) -> None:
        """Fail a job whose stored record does not validate (no worker could ever run it)."""
        log.error("job %s: its record cannot be read: %s", job_id, exc)
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = f"the job's record cannot be read by this version: {field}: {first['msg']}"
        err = {"code": "invalid_spec", "message": message, "field": None}
        fields = {"finished_at": now_iso(), "error": err}
        try:
            self.store.transition(job_id, ["queued", "running", "cancelling"], "failed", fields)
        except TransitionRefused:
            return
        self.store.add_event(job_id, "failed", message, level="error", data=err)

    def _run_leased(self, rec: JobRecord, token: str, lease: _Lease) -> None:
        job_id, tenant = rec.id, rec.tenant
        if rec.status == "cancelling":  # cancelled while no worker ran it
            self._finish(job_id, token, "cancelled", ["cancelling"], "cancelled", "cancelled before it resumed")
            return
        attempt = rec.attempts + 1
        try:
            patiently(
                f"job {job_id}",
                self.store.transition,
                job_id,
                ["queued", "running"],
                "running",
                {
                    "started_at": rec.started_at or now_iso(),
                    "attempts": attempt,
                    "worker": self.worker,
                    "progress": rec.progress.staged("starting"),
                },
                token,
            )
        except TransitionRefused as exc:
            log.info("job %s is %s; not starting it", job_id, exc.current)
            return
        except Fenced:
            log.info("job %s: the lease expired before the job started; leaving it", job_id)
            return
        out_dir = self.arts.job_out(tenant, job_id)
        ckpt_dir = self.arts.job_checkpoints(tenant, job_id)
        resuming = (ckpt_dir / "checkpoint.pt").is_file()
        patiently(
            f"job {job_id}",
            self.store.add_event,
            job_id,
            "started",
            f"worker {self.worker} started attempt {attempt}" + (" from the last checkpoint" if resuming else ""),
            data={"worker": self.worker, "attempt": attempt, "resume": resuming},
        )
        reporter = _Reporter(self.store, job_id, token, lease, rec.progress)
        handler: logging.Handler | None = None
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            handler = _log_to(out_dir / "train.log")
            from gacd_core.jobs import Callbacks, run_job

            report = run_job(
                self._resolved(rec),
                out_dir,
                callbacks=Callbacks(
                    progress=reporter.progress,
                    stage=reporter.stage,
                    evaluation=reporter.evaluation,
                    should_stop=reporter.should_stop,
                    before_write=reporter.before_write,
                    should_pause=self.stopping.is_set if self.requeue is not None else None,
                ),
                checkpoint_dir=ckpt_dir,
                resume=True,
            )
        except TrainingPaused as exc:
            _unlog(handler)
            if not lease.lost.is_set():
                self._pause(rec, token, exc, reporter)
            return
        except TrainingStopped:
            _unlog(handler)
            if lease.lost.is_set():
                return
            self._finish(
                job_id,
                token,
                "cancelled",
                ["cancelling", "running"],
                "cancelled",
                "cancelled by request",
                reporter=reporter,
            )
            return
        except Fenced:
            _unlog(handler)
            log.error("job %s: lease lost during the job; another worker owns it now", job_id)
            return
        except GACDError as exc:
            _unlog(handler)
            err = {"code": exc.code, "message": exc.message, "field": exc.field}
            check = getattr(exc, "check", None)
            if check:  # teacher_unfit: the figures that refused the teacher
                err["check"] = check
            self._finish(
                job_id, token, "failed", ["running", "cancelling"], "failed", exc.message, error=err, reporter=reporter
            )
            return
        except OSError as exc:
            _unlog(handler)
            log.exception("job %s: storage error", job_id)
            reason = {
                errno.ENOSPC: "the artifact store is full",
                errno.EACCES: "the artifact store is not writable",
                errno.EROFS: "the artifact store is read-only",
                errno.EDQUOT: "the artifact store's quota is exhausted",
            }.get(exc.errno or 0, f"storage error: {exc}")
            reason += f" ({exc.strerror or exc}: {exc.filename or self.arts.root})"
            err = {"code": "storage_error", "message": reason, "field": None}
            self._finish(
                job_id, token, "failed", ["running", "cancelling"], "failed", reason, error=err, reporter=reporter
            )
            return
        except Exception as exc:
            _unlog(handler)
            log.exception("job %s failed", job_id)
            message = f"the job failed: {type(exc).__name__}: {exc}"[:2000]
            err = {"code": "internal_error", "message": message, "field": None}
            self._finish(
                job_id, token, "failed", ["running", "cancelling"], "failed", message, error=err, reporter=reporter
            )
            return
        _unlog(handler)
        artifacts = [
            Artifact(name=name, bytes=path.stat().st_size, sha256=sha256_file(path))
            for name in OUTPUTS
            if (path := out_dir / name).is_file()
        ]
        metrics = {k: report["metrics"].get(k) for k in catalog.ACCURACY_KEYS}
        progress = reporter.last.staged(
            "done", fraction=1.0, eta_seconds=0.0, metrics=metrics, model=None, attack=None, step=None
        )
        self._finish(
            job_id,
            token,
            "succeeded",
            ["running", "cancelling"],
            "succeeded",
            "succeeded: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in metrics.items() if v is not None),
            fields={"artifacts": artifacts, "progress": progress},
            data={"metrics": metrics},
            reporter=reporter,
        )

    def _finish(
        self,
        job_id: str,
        token: str,
        status: str,
        allowed: list[str],
        event: str,
        message: str,
        *,
        error: dict[str, Any] | None = None,
        fields: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        reporter: _Reporter | None = None,
    ) -> None:
        if reporter is not None:  # the events of the run come before the final one
            patiently(f"job {job_id}", reporter.flush)
        try:
            patiently(
                f"job {job_id}",
                self.store.transition,
                job_id,
                allowed,
                status,
                {"finished_at": now_iso(), "error": error, **(fields or {})},
                token,
            )
        except Fenced:
            log.error("job %s: lease lost; the final status was not written", job_id)
            return
        except TransitionRefused as exc:
            log.warning("job %s: could not move from %s to %s", job_id, exc.current, status)
            return
        patiently(
            f"job {job_id}",
            self.store.add_event,
            job_id,
            event,
            message,
            level="error" if status == "failed" else "info",
            data=data or error or {},
        )

    def _pause(self, rec: JobRecord, token: str, exc: TrainingPaused, reporter: _Reporter) -> None:
        """The worker is stopping: put the paused job back to ``queued`` (sent again once the lease is free)."""
        job_id = rec.id
        where = f"epoch {exc.epoch}, step {exc.step}" if exc.epoch > 0 else "its last epoch checkpoint"
        patiently(f"job {job_id}", reporter.flush)
        progress = reporter.last.staged("requeued", eta_seconds=None)
        try:
            patiently(
                f"job {job_id}", self.store.transition, job_id, ["running"], "queued", {"progress": progress}, token
            )
        except Fenced:
            log.error("job %s: lease lost while pausing; another worker owns it now", job_id)
            return
        except TransitionRefused as exc_t:
            if exc_t.current == "cancelling":  # a cancel came in meanwhile: honour it instead
                self._finish(job_id, token, "cancelled", ["cancelling"], "cancelled", "cancelled by request")
            return
        patiently(
            f"job {job_id}",
            self.store.add_event,
            job_id,
            "requeued",
            f"worker {self.worker} is shutting down; the job goes back to the queue and resumes from {where}",
            level="warning",
            data={"worker": self.worker, "reason": "shutdown", "epoch": exc.epoch, "step": exc.step},
        )
        self._hand_back = rec.queue or ""

    # --- inputs --------------------------------------------------------------------------------------
    def _resolved(self, rec: JobRecord) -> JobSpec:
        """The job's specification with its inputs resolved on this worker: the teacher's weights and a
        custom dataset's data in the artifact store, the built-in datasets under the data root, this
        worker's device for ``auto``, and no downloads.

        Raises:
            SpecError: the teacher or the dataset is gone, or no longer ready.
        """
        teacher_weights = dataset_path = None
        if rec.teacher_id:
            teacher = self.store.get(TeacherRecord, rec.teacher_id, rec.tenant)
            if teacher is None or teacher.status != "ready":
                raise SpecError([("teacher.id", f"teacher {rec.teacher_id} is no longer available")])
            teacher_weights = self.arts.absolute(teacher.file)
        if rec.dataset_id:
            dataset = self.store.get(DatasetRecord, rec.dataset_id, rec.tenant)
            if dataset is None or dataset.status != "ready" or dataset.path is None:
                raise SpecError([("dataset.id", f"dataset {rec.dataset_id} is no longer available")])
            dataset_path = self.arts.absolute(dataset.path)
        return rec.spec.resolved(
            teacher_weights=teacher_weights,
            dataset_path=dataset_path,
            data_root=None if dataset_path else self.settings.data_root,
            device=self.settings.worker_device,
            download=False,
        )


class _Reporter:
    """Turns gacd_core's callbacks into job progress, events and cancellation checks.

    While the store is away, progress writes are skipped (the next one carries the latest state) and
    events wait in ``pending``, to be written in order, with the time they happened, once it is back.
    """

    def __init__(self, store: Store, job_id: str, token: str, lease: _Lease, initial: Progress) -> None:
        self.store, self.job_id, self.token, self.lease = store, job_id, token, lease
        self.last = initial.staged("starting", eta_seconds=None)
        self.pending: list[tuple[str, str, dict[str, Any], str]] = []
        self._written = 0.0
        self._checked = 0.0
        self._stop = False
        self._away = False

    def flush(self) -> None:
        """Write the pending events, oldest first (raises while the store is away)."""
        while self.pending:
            type_, message, data, at = self.pending[0]
            self.store.add_event(self.job_id, type_, message, data=data, created_at=at)
            self.pending.pop(0)

    def _best_effort(self, progress: Progress | None) -> None:
        try:
            self.flush()
            if progress is not None:
                self.store.update(self.job_id, {"progress": progress}, self.token)
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

    def progress(self, p: Any) -> None:
        metrics: dict[str, Any] = {"loss": _finite(p.loss), "lr": p.lr, "images_per_second": p.images_per_second}
        metrics.update({k: _finite(v) for k, v in p.parts.items()})
        if p.record is not None:
            for k in ("train_acc", "val_clean_acc", "val_pgd_acc"):
                if p.record.get(k) is not None:
                    metrics[k] = p.record[k]
        self.last = Progress(
            epoch=p.epoch if p.phase == "epoch" else p.epoch - 1,
            epochs=p.epochs,
            step=p.step if p.phase == "step" else 0,
            steps_per_epoch=p.steps_per_epoch,
            fraction=round(p.fraction, 5),
            eta_seconds=_finite(p.eta_seconds),
            stage="training",
            metrics=metrics,
        )
        now = time.monotonic()
        if p.phase in ("epoch", "start") or now - self._written >= PROGRESS_EVERY:
            self._written = now
            self._best_effort(self.last)
        if p.phase == "epoch" and p.record is not None:
            r = p.record
            text = f"epoch {p.epoch}/{p.epochs}: loss {r['loss']:.4f}, train acc {100 * r['train_acc']:.1f}%"
            if r.get("val_pgd_acc") is not None:
                text += f", val clean {100 * r['val_clean_acc']:.1f}%, val pgd {100 * r['val_pgd_acc']:.1f}%"
            self._event("epoch", text, {"epoch": p.epoch, **metrics})

    def stage(self, name: str, fraction: float) -> None:
        # The core names the evaluation's stages "evaluating student" and "evaluating teacher"; the
        # progress record says stage "evaluating" and the model apart, as evaluation() does.
        stage, _, model = name.partition(" ") if name.startswith("evaluating ") else (name, "", "")
        changed = (self.last.stage, self.last.model) != (stage, model or None)
        if changed:  # what the training or the previous stage left does not describe this one
            self.last = self.last.staged(stage, model=model or None, attack=None, step=None, eta_seconds=None)
        now = time.monotonic()
        if stage == "evaluating":  # its first evaluation() report, right after, writes the progress
            self._written = 0.0
        elif changed or now - self._written >= PROGRESS_EVERY:
            self._written = now
            self._best_effort(self.last)
        if changed:
            self._event("stage", name, {"stage": name})

    def evaluation(self, p: Any) -> None:
        """Evaluation progress (gacd_core.evaluation.EvalProgress): the model, the attack running, the
        fraction of the evaluation done and its ETA; written at most every PROGRESS_EVERY seconds."""
        self.last = self.last.staged(
            "evaluating", model=p.model, attack=p.attack, fraction=p.fraction, eta_seconds=_finite(p.eta_seconds)
        )
        now = time.monotonic()
        if now - self._written >= PROGRESS_EVERY:
            self._written = now
            self._best_effort(self.last)

    def before_write(self) -> None:
        """Fence for files: a worker whose lease went to another writes no checkpoint and no output.

        Raises:
            Fenced: the lease no longer holds this worker's token (or the store cannot say so).
        """
        if self.lease.lost.is_set():
            raise Fenced(self.job_id)
        try:
            held = self.store.holds_lease(self.job_id, self.token)
        except STORE_ERRORS:  # cannot tell: write only while the lease's own time allows
            held = self.lease.fresh()
        if not held:
            self.lease.lost.set()
            log.error("job %s: the lease is gone; writing nothing more", self.job_id)
            raise Fenced(self.job_id)

    def should_stop(self) -> bool:
        if self.lease.lost.is_set():
            return True
        now = time.monotonic()
        if now - self._checked < STOP_CHECK_EVERY:
            return self._stop
        self._checked = now
        try:
            status = self.store.get_status(self.job_id)
        except Exception:  # Redis away: go on; the lease decides
            return self._stop
        self._stop = status in ("cancelling", "cancelled") or status is None
        return self._stop


def _finite(v: float | None) -> float | None:
    import math

    return v if v is not None and math.isfinite(v) else None


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("gacd")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def _unlog(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    logging.getLogger("gacd").removeHandler(handler)
    handler.close()
