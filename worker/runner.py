"""A job's life on a worker: lease, run through gacd_core, report progress and events, finish.

1. The job's record is read; a finished or cancelled job is left alone.
2. The worker takes the job's lease (a fencing token with a TTL) or, if another worker holds it,
   leaves the job to that worker. A heartbeat thread renews the lease; if renewing fails, the job stops
   and this worker writes nothing more, because every write below is checked against the token.
3. The job runs through :func:`gacd_core.jobs.run_job` with the teacher and dataset resolved to files in
   the artifact store. Its progress callback becomes the job's progress and ``epoch`` events; its stop
   callback checks for a cancellation request (and a lost lease) every few steps. A checkpoint is
   written every epoch into the artifact store, and a job that starts with one continues from it.
4. The outputs (``student.safetensors``, ``report.json``, ``report.html``, ``train.log``) are listed
   with their sizes and SHA-256 and committed with the final status, in one fenced write.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path
from typing import Any

from gacd_core.errors import GACDError, TrainingStopped
from gacd_core.report import sha256_file
from service.artifacts import ArtifactStore
from service.settings import Settings
from service.store import TERMINAL, Fenced, Store, TransitionRefused, now_iso

log = logging.getLogger("gacd.worker")
OUTPUTS = ("student.safetensors", "report.json", "report.html", "train.log")
PROGRESS_EVERY = 1.0  # seconds between progress writes during an epoch
STOP_CHECK_EVERY = 0.5  # seconds between cancellation checks


class _Lease:
    """Holds a job's lease and renews it from a thread until stopped; ``lost`` once a renewal fails."""

    def __init__(self, store: Store, job_id: str, token: str, ttl: float, every: float) -> None:
        self.store, self.job_id, self.token, self.ttl, self.every = store, job_id, token, ttl, every
        self.lost = threading.Event()
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
            except Exception as exc:  # Redis away: keep the lease while the TTL allows
                log.warning("job %s: lease renewal failed (%s); retrying", self.job_id, exc)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.store.release_lease(self.job_id, self.token)
        except Exception as exc:
            log.warning("job %s: could not release the lease: %s", self.job_id, exc)


class JobRunner:
    def __init__(self, store: Store, settings: Settings, worker_name: str) -> None:
        self.store, self.settings, self.worker = store, settings, worker_name
        self.arts = ArtifactStore(settings.artifact_root)

    # --- the lifecycle ------------------------------------------------------------------------------
    def run(self, job_id: str) -> None:
        rec = self.store.get(job_id)
        if rec is None:
            log.warning("job %s: no such job; dropping the message", job_id)
            return
        if rec["status"] in TERMINAL:
            log.info("job %s is already %s; nothing to do", job_id, rec["status"])
            return
        token = self.store.acquire_lease(job_id, self.settings.lease_seconds)
        if token is None:
            log.info("job %s: another worker holds its lease; leaving it to that worker", job_id)
            return
        with _Lease(self.store, job_id, token, self.settings.lease_seconds, self.settings.heartbeat_seconds) as lease:
            self._run_leased(rec, token, lease)

    def _run_leased(self, rec: dict[str, Any], token: str, lease: _Lease) -> None:
        job_id, tenant = rec["id"], rec["tenant"]
        if rec["status"] == "cancelling":  # cancelled while no worker ran it
            self._finish(job_id, token, "cancelled", ["cancelling"], "cancelled", "cancelled before it resumed")
            return
        attempt = int(rec.get("attempts", 0)) + 1
        try:
            self.store.transition(
                job_id,
                ["queued", "running"],
                "running",
                {
                    "started_at": rec.get("started_at") or now_iso(),
                    "attempts": attempt,
                    "worker": self.worker,
                    "progress": {**(rec.get("progress") or {}), "stage": "starting"},
                },
                token,
            )
        except TransitionRefused as exc:
            log.info("job %s is %s; not starting it", job_id, exc.current)
            return
        out_dir = self.arts.job_out(tenant, job_id)
        ckpt_dir = self.arts.job_checkpoints(tenant, job_id)
        resuming = (ckpt_dir / "checkpoint.pt").is_file()
        self.store.add_event(
            job_id,
            "started",
            f"worker {self.worker} started attempt {attempt}" + (" from the last checkpoint" if resuming else ""),
            data={"worker": self.worker, "attempt": attempt, "resume": resuming},
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        handler = _log_to(out_dir / "train.log")
        reporter = _Reporter(self.store, job_id, token, lease, rec.get("progress") or {})
        try:
            from gacd_core.jobs import Callbacks, run_job

            spec = self._resolve_spec(rec)
            report = run_job(
                spec,
                out_dir,
                callbacks=Callbacks(progress=reporter.progress, stage=reporter.stage, should_stop=reporter.should_stop),
                checkpoint_dir=ckpt_dir,
                resume=True,
            )
        except TrainingStopped:
            _unlog(handler)
            if lease.lost.is_set():
                return
            self._finish(job_id, token, "cancelled", ["cancelling", "running"], "cancelled", "cancelled by request")
            return
        except Fenced:
            _unlog(handler)
            log.error("job %s: lease lost during the job; another worker owns it now", job_id)
            return
        except GACDError as exc:
            _unlog(handler)
            err = {"code": exc.code, "message": exc.message, "field": exc.field}
            self._finish(job_id, token, "failed", ["running", "cancelling"], "failed", exc.message, error=err)
            return
        except OSError as exc:
            _unlog(handler)
            log.exception("job %s: storage error", job_id)
            reason = {
                errno.ENOSPC: "the artifact store is full",
                errno.EACCES: "the artifact store is not writable",
                errno.EROFS: "the artifact store is read-only",
            }.get(exc.errno or 0, f"storage error: {exc}")
            err = {"code": "storage_error", "message": reason, "field": None}
            self._finish(job_id, token, "failed", ["running", "cancelling"], "failed", reason, error=err)
            return
        except Exception as exc:
            _unlog(handler)
            log.exception("job %s failed", job_id)
            message = f"the job failed: {type(exc).__name__}: {exc}"[:2000]
            err = {"code": "internal_error", "message": message, "field": None}
            self._finish(job_id, token, "failed", ["running", "cancelling"], "failed", message, error=err)
            return
        _unlog(handler)
        artifacts = []
        for name in OUTPUTS:
            path = out_dir / name
            if path.is_file():
                artifacts.append({"name": name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        metrics = {
            k: report["metrics"].get(k) for k in ("clean_acc", "fgsm_acc", "pgd20_acc", "cw_acc", "autoattack_acc")
        }
        progress = {**reporter.last, "fraction": 1.0, "eta_seconds": 0.0, "stage": "done", "metrics": metrics}
        self._finish(
            job_id,
            token,
            "succeeded",
            ["running", "cancelling"],
            "succeeded",
            "succeeded: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in metrics.items() if v is not None),
            fields={"artifacts": artifacts, "progress": progress},
            data={"metrics": metrics},
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
    ) -> None:
        try:
            self.store.transition(
                job_id, allowed, status, {"finished_at": now_iso(), "error": error, **(fields or {})}, token
            )
        except Fenced:
            log.error("job %s: lease lost; the final status was not written", job_id)
            return
        except TransitionRefused as exc:
            log.warning("job %s: could not move from %s to %s", job_id, exc.current, status)
            return
        self.store.add_event(
            job_id, event, message, level="error" if status == "failed" else "info", data=data or error or {}
        )

    # --- inputs --------------------------------------------------------------------------------------
    def _resolve_spec(self, rec: dict[str, Any]) -> Any:
        from gacd_core.errors import SpecError
        from gacd_core.spec import parse_spec

        doc = {**rec["spec"], "metadata": rec.get("metadata", {})}
        tenant = rec["tenant"]
        if rec.get("teacher_id"):
            teacher = self.store.get(rec["teacher_id"], tenant)
            if teacher is None or teacher.get("status") != "ready":
                raise SpecError([("teacher.id", f"teacher {rec['teacher_id']} is no longer available")])
            doc["teacher"] = {**doc["teacher"], "weights": str(self.arts.absolute(teacher["file"]))}
        dataset = dict(doc["dataset"])
        if rec.get("dataset_id"):
            ds = self.store.get(rec["dataset_id"], tenant)
            if ds is None or ds.get("status") != "ready":
                raise SpecError([("dataset.id", f"dataset {rec['dataset_id']} is no longer available")])
            dataset["path"] = str(self.arts.absolute(ds["path"]))
        else:
            dataset["root"] = str(self.settings.data_root)
        dataset["download"] = False
        doc["dataset"] = dataset
        if doc.get("device", "auto") == "auto":
            doc["device"] = self.settings.worker_device
        return parse_spec(doc)


class _Reporter:
    """Turns gacd_core's callbacks into job progress, events and cancellation checks."""

    def __init__(self, store: Store, job_id: str, token: str, lease: _Lease, initial: dict[str, Any]) -> None:
        self.store, self.job_id, self.token, self.lease = store, job_id, token, lease
        self.last: dict[str, Any] = {
            "epoch": initial.get("epoch", 0),
            "epochs": initial.get("epochs", 0),
            "fraction": initial.get("fraction", 0.0),
            "eta_seconds": None,
            "stage": "starting",
            "metrics": initial.get("metrics") or {},
        }
        self._written = 0.0
        self._checked = 0.0
        self._stop = False

    def progress(self, p: Any) -> None:
        metrics: dict[str, Any] = {"loss": _finite(p.loss), "lr": p.lr, "images_per_second": p.images_per_second}
        metrics.update({k: _finite(v) for k, v in p.parts.items()})
        if p.record is not None:
            for k in ("train_acc", "val_clean_acc", "val_pgd_acc"):
                if p.record.get(k) is not None:
                    metrics[k] = p.record[k]
        self.last = {
            "epoch": p.epoch if p.phase == "epoch" else p.epoch - 1,
            "epochs": p.epochs,
            "fraction": round(p.fraction, 5),
            "eta_seconds": _finite(p.eta_seconds),
            "stage": "training",
            "metrics": metrics,
        }
        now = time.monotonic()
        if p.phase in ("epoch", "start") or now - self._written >= PROGRESS_EVERY:
            self._written = now
            self.store.update(self.job_id, {"progress": self.last}, self.token)
        if p.phase == "epoch" and p.record is not None:
            r = p.record
            text = f"epoch {p.epoch}/{p.epochs}: loss {r['loss']:.4f}, train acc {100 * r['train_acc']:.1f}%"
            if r.get("val_pgd_acc") is not None:
                text += f", val clean {100 * r['val_clean_acc']:.1f}%, val pgd {100 * r['val_pgd_acc']:.1f}%"
            self.store.add_event(self.job_id, "epoch", text, data={"epoch": p.epoch, **metrics})

    def stage(self, name: str, fraction: float) -> None:
        changed = self.last.get("stage") != name
        self.last = {**self.last, "stage": name}
        now = time.monotonic()
        if changed or now - self._written >= PROGRESS_EVERY:
            self._written = now
            self.store.update(
                self.job_id, {"progress": {**self.last, "stage_fraction": round(fraction, 4)}}, self.token
            )
        if changed:
            self.store.add_event(self.job_id, "stage", name, data={"stage": name})

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


def _unlog(handler: logging.Handler) -> None:
    logging.getLogger("gacd").removeHandler(handler)
    handler.close()
