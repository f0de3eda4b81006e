"""Recovering jobs whose worker stopped reporting (killed, out of memory, machine lost).

A running job's lease expires ``lease_seconds`` after its worker's last heartbeat. Every worker looks
for such jobs at each of its own heartbeats and puts each back in the queue, where the next free worker
takes it and resumes from its last checkpoint (at most one epoch of work is lost). The status change
is atomic, so when several workers notice the same job only one re-queues it; and a worker that was
only slow, not dead, finds its lease gone and stops writing (its writes are fenced). A job that has
lost its worker ``max_attempts`` times fails instead of looping forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from service.state.records import now_iso
from service.state.store import Store, TransitionRefused

log = logging.getLogger("gacd.worker")


def reap(store: Store, requeue: Callable[[str, str | None], None], max_attempts: int) -> list[str]:
    """Re-queue (or finish) every orphaned job; returns the ids acted on.

    ``requeue(job_id, queue)`` sends the job to ``queue``, the queue it was first sent to (None for a job
    recorded before jobs kept their queue: the reaping worker's own queue then).
    """
    acted = []
    for job_id in store.jobs.orphaned():
        rec = store.jobs.get(job_id)
        if rec is None:
            store.jobs.forget_active(job_id)
            continue
        try:
            if rec.status == "cancelling":
                store.jobs.transition(job_id, ["cancelling"], "cancelled", {"finished_at": now_iso()})
                store.events.add(job_id, "cancelled", "cancelled (its worker stopped before it could)")
            elif rec.attempts >= max_attempts:
                message = f"the worker running the job stopped reporting, {rec.attempts} times"
                err = {"code": "worker_lost", "message": message, "field": None}
                store.jobs.transition(job_id, ["running"], "failed", {"finished_at": now_iso(), "error": err})
                store.events.add(job_id, "failed", message, level="error", data=err)
            else:
                store.jobs.transition(job_id, ["running"], "queued", {"progress": rec.progress.staged("requeued")})
                store.events.add(
                    job_id,
                    "requeued",
                    f"worker {rec.worker} stopped reporting; the job goes back to the queue and resumes "
                    "from its last checkpoint",
                    level="warning",
                    data={"worker": rec.worker, "attempts": rec.attempts},
                )
                requeue(job_id, rec.queue)
        except TransitionRefused:
            continue  # another worker acted first, or the job moved on
        log.warning("job %s: its worker stopped reporting; %s", job_id, "handled")
        acted.append(job_id)
    return acted
