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

This module is the job's life; its parts live beside it: :mod:`worker.lease` (the lease's heartbeat,
writes that wait for the store), :mod:`worker.reporter` (the core's progress events as the job's
progress and events, the stop question, the write fence) and :mod:`worker.failures` (the one table from
what a run raised to the job's error ``code``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gacd_core import catalog
from gacd_core.artifacts import CHECKPOINT, JOB_OUTPUTS, TRAIN_LOG
from gacd_core.catalog import STREAMED
from gacd_core.datarefs import resolve_reference
from gacd_core.errors import DatasetNotFound, SpecError, TrainingPaused, TrainingStopped
from gacd_core.report import sha256_file
from gacd_core.spec import JobSpec
from service.state.artifacts import ArtifactStore
from service.state.records import TERMINAL, Artifact, JobRecord, now_iso
from service.state.settings import Settings
from service.state.store import Fenced, Store, TransitionRefused
from worker.failures import job_error
from worker.lease import Lease, patiently
from worker.reporter import Reporter

if TYPE_CHECKING:
    from gacd_core.report_model import Report

log = logging.getLogger("gacd.worker")
OUTPUTS = JOB_OUTPUTS  # named in gacd_core.artifacts, in the order a job's listing shows them

__all__ = ["JobRunner", "patiently"]


@dataclass
class _Attempt:
    """This worker's attempt at a job: the record it started from, its lease and its reporter."""

    rec: JobRecord
    token: str
    lease: Lease
    reporter: Reporter

    @property
    def job_id(self) -> str:
        return self.rec.id


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

    # --- the message and the lease -------------------------------------------------------------------
    def run(self, job_id: str) -> None:
        """Handle one queue message for ``job_id``: run the job here under its lease, or leave it."""
        rec = self._take(job_id)
        if rec is None:
            return
        token = patiently(f"job {job_id}", self.store.leases.acquire, job_id, self.settings.lease_seconds)
        if token is None:
            log.info("job %s: another worker holds its lease; leaving it to that worker", job_id)
            return
        self._hand_back = None
        with Lease(self.store, job_id, token, self.settings.lease_seconds, self.settings.heartbeat_seconds) as lease:
            self._run_leased(rec, token, lease)
        # The lease is released now: the worker that takes the message can take the lease at once.
        if self._hand_back is not None and self.requeue is not None:
            patiently(f"job {job_id}", self.requeue, job_id, self._hand_back or None)

    def _take(self, job_id: str) -> JobRecord | None:
        """The job's record when this worker is to run it; None for a job that is gone or finished, or
        one sent back to the queue because this worker is stopping or drained."""
        try:
            rec = patiently(f"job {job_id}", self.store.jobs.get, job_id)
        except ValidationError as exc:  # stored by a version whose job specification this one cannot read
            self._unreadable(job_id, exc)
            return None
        if rec is None:
            log.warning("job %s: no such job; dropping the message", job_id)
            return None
        if rec.status in TERMINAL:
            log.info("job %s is already %s; nothing to do", job_id, rec.status)
            return None
        if self.stopping.is_set() and self.requeue is not None:
            log.info("job %s: this worker is stopping; the job goes back to the queue", job_id)
            self.requeue(job_id, rec.queue)
            return None
        if self.requeue is not None and patiently(f"job {job_id}", self.draining):
            log.info("job %s: this worker is drained; the job goes back to the queue", job_id)
            time.sleep(1.0)  # until Celery's cancel_consumer, read between jobs, stops the messages
            self.requeue(job_id, rec.queue)
            return None
        return rec

    def _unreadable(self, job_id: str, exc: ValidationError) -> None:
        """Fail a job whose stored record does not validate (no worker could ever run it)."""
        log.error("job %s: its record cannot be read: %s", job_id, exc)
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = f"the job's record cannot be read by this version: {field}: {first['msg']}"
        err = {"code": "invalid_spec", "message": message, "field": None}
        fields = {"finished_at": now_iso(), "error": err}
        try:
            self.store.jobs.transition(job_id, ["queued", "running", "cancelling"], "failed", fields)
        except TransitionRefused:
            return
        self.store.events.add(job_id, "failed", message, level="error", data=err)

    def _run_leased(self, rec: JobRecord, token: str, lease: Lease) -> None:
        if rec.status == "cancelling":  # cancelled while no worker ran it
            self._finish(rec.id, token, "cancelled", ["cancelling"], "cancelled", "cancelled before it resumed")
            return
        if self._start(rec, token):
            self._execute(_Attempt(rec, token, lease, Reporter(self.store, rec.id, token, lease, rec.progress)))

    def _start(self, rec: JobRecord, token: str) -> bool:
        """Mark the job running on this worker (a fenced write) and say so in its events; False when the
        job moved on or the lease expired meanwhile (nothing is written then)."""
        job_id, attempt = rec.id, rec.attempts + 1
        fields = {
            "started_at": rec.started_at or now_iso(),
            "attempts": attempt,
            "worker": self.worker,
            "progress": rec.progress.staged("starting"),
        }
        try:
            jobs = self.store.jobs
            patiently(f"job {job_id}", jobs.transition, job_id, ["queued", "running"], "running", fields, token)
        except TransitionRefused as exc:
            log.info("job %s is %s; not starting it", job_id, exc.current)
            return False
        except Fenced:
            log.info("job %s: the lease expired before the job started; leaving it", job_id)
            return False
        resuming = (self.arts.job_checkpoints(rec.tenant, job_id) / CHECKPOINT).is_file()
        patiently(
            f"job {job_id}",
            self.store.events.add,
            job_id,
            "started",
            f"worker {self.worker} started attempt {attempt}" + (" from the last checkpoint" if resuming else ""),
            data={"worker": self.worker, "attempt": attempt, "resume": resuming},
        )
        return True

    # --- the run -------------------------------------------------------------------------------------
    def _execute(self, run: _Attempt) -> None:
        """Run the job through gacd_core, its log in ``train.log``, and write how it ended."""
        out_dir = self.arts.job_out(run.rec.tenant, run.job_id)
        handler: logging.Handler | None = None
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            handler = _log_to(out_dir / TRAIN_LOG)
            report = self._run_core(run, out_dir)
        except Exception as exc:
            _unlog(handler)
            self._ended_early(run, exc)
            return
        _unlog(handler)
        self._succeeded(run, out_dir, report)

    def _run_core(self, run: _Attempt, out_dir: Path) -> Report:
        """:func:`gacd_core.jobs.run_job` on the job's resolved specification, continuing from its
        checkpoint, with the reporter's callbacks (and a pause when this worker stops)."""
        from gacd_core.jobs import Callbacks, run_job

        reporter = run.reporter
        callbacks = Callbacks(
            progress=reporter.progress,
            should_stop=reporter.should_stop,
            before_write=reporter.before_write,
            should_pause=self.stopping.is_set if self.requeue is not None else None,
        )
        checkpoints = self.arts.job_checkpoints(run.rec.tenant, run.job_id)
        return run_job(self._resolved(run.rec), out_dir, callbacks=callbacks, checkpoint_dir=checkpoints, resume=True)

    def _ended_early(self, run: _Attempt, exc: Exception) -> None:
        """A run that raised: paused (this worker stops), cancelled, fenced (its lease is gone, so it
        writes nothing), or failed with the job error :func:`worker.failures.job_error` finds."""
        if isinstance(exc, TrainingPaused):
            if not run.lease.lost.is_set():
                self._pause(run.rec, run.token, exc, run.reporter)
        elif isinstance(exc, TrainingStopped):
            if not run.lease.lost.is_set():
                self._end(run, "cancelled", ["cancelling", "running"], "cancelled", "cancelled by request")
        elif isinstance(exc, Fenced):
            log.error("job %s: lease lost during the job; another worker owns it now", run.job_id)
        else:
            error, logged = job_error(exc, self.arts.root)
            if logged is not None:
                log.error(logged, run.job_id, exc_info=exc)
            err = error.model_dump()
            self._end(run, "failed", ["running", "cancelling"], "failed", error.message, error=err)

    def _succeeded(self, run: _Attempt, out_dir: Path, report: Report) -> None:
        """List the outputs with their sizes and digests and commit them with status ``succeeded``."""
        artifacts = [
            Artifact(name=name, bytes=path.stat().st_size, sha256=sha256_file(path))
            for name in OUTPUTS
            if (path := out_dir / name).is_file()
        ]
        metrics = report.metrics.accuracies() if report.metrics is not None else dict.fromkeys(catalog.ACCURACY_KEYS)
        progress = run.reporter.last.staged(
            "done", fraction=1.0, eta_seconds=0.0, metrics=metrics, model=None, attack=None, step=None
        )
        self._end(
            run,
            "succeeded",
            ["running", "cancelling"],
            "succeeded",
            "succeeded: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in metrics.items() if v is not None),
            fields={"artifacts": artifacts, "progress": progress},
            data={"metrics": metrics},
        )

    def _end(self, run: _Attempt, status: str, allowed: list[str], event: str, message: str, **kw: Any) -> None:
        """:meth:`_finish` for a run: its pending events are written first."""
        self._finish(run.job_id, run.token, status, allowed, event, message, reporter=run.reporter, **kw)

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
        reporter: Reporter | None = None,
    ) -> None:
        if reporter is not None:  # the events of the run come before the final one
            patiently(f"job {job_id}", reporter.flush)
        try:
            patiently(
                f"job {job_id}",
                self.store.jobs.transition,
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
            self.store.events.add,
            job_id,
            event,
            message,
            level="error" if status == "failed" else "info",
            data=data or error or {},
        )

    def _pause(self, rec: JobRecord, token: str, exc: TrainingPaused, reporter: Reporter) -> None:
        """The worker is stopping: put the paused job back to ``queued`` (sent again once the lease is free)."""
        job_id = rec.id
        where = f"epoch {exc.epoch}, step {exc.step}" if exc.epoch > 0 else "its last epoch checkpoint"
        patiently(f"job {job_id}", reporter.flush)
        progress = reporter.last.staged("requeued", eta_seconds=None)
        try:
            requeued = {"progress": progress}
            patiently(f"job {job_id}", self.store.jobs.transition, job_id, ["running"], "queued", requeued, token)
        except Fenced:
            log.error("job %s: lease lost while pausing; another worker owns it now", job_id)
            return
        except TransitionRefused as exc_t:
            if exc_t.current == "cancelling":  # a cancel came in meanwhile: honour it instead
                self._finish(job_id, token, "cancelled", ["cancelling"], "cancelled", "cancelled by request")
            return
        patiently(
            f"job {job_id}",
            self.store.events.add,
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
            teacher = self.store.teachers.get(rec.teacher_id, rec.tenant)
            if teacher is None or teacher.status != "ready":
                raise SpecError([("teacher.id", f"teacher {rec.teacher_id} is no longer available")])
            teacher_weights = self.arts.absolute(teacher.file)
        if rec.dataset_id:
            dataset = self.store.datasets.get(rec.dataset_id, rec.tenant)
            if dataset is None or dataset.status != "ready" or dataset.path is None:
                raise SpecError([("dataset.id", f"dataset {rec.dataset_id} is no longer available")])
            dataset_path = self.arts.absolute(dataset.path)
        elif rec.spec.dataset.name in STREAMED:
            dataset_path = self._data_folder(rec)
        return rec.spec.resolved(
            teacher_weights=teacher_weights,
            dataset_path=dataset_path,
            data_root=None if dataset_path else self.settings.data_root,
            device=self.settings.worker_device,
            download=False,
        )


    def _data_folder(self, rec: JobRecord) -> Path:
        """The real folder of an ``imagefolder`` or ``shards`` job, under this worker's data roots, in
        the job's tenant's part of them.

        Raises:
            DatasetError: ``dataset_path_forbidden``, ``dataset_not_found`` (the job fails with that code).
        """
        assert rec.spec.dataset.path is not None
        if not self.settings.data_roots:
            raise DatasetNotFound("this worker has no data roots (GACD_DATA_ROOTS)", field="dataset.path")
        return resolve_reference(rec.spec.dataset.path, self.settings.data_roots, tenant=rec.tenant)


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
