"""Every Redis key the store uses, named in one place.

Layout (every key starts with the prefix, ``gacd:``):

- ``rec:{id}``: a hash per record; each field holds one JSON value (``status``, ``spec``, ...).
  Ids carry their kind: ``job_...``, ``tch_...``, ``ds_...``.
- ``idx:{tenant}:{kind}``: a sorted set of the tenant's ids, scored by a global sequence number
  (``seq``), so that listings are newest first and a cursor (``after``) is exact.
- ``events:{job}``: a stream of the job's events, trimmed to ``events_max``.
- ``lease:{job}``: the fencing token of the worker that runs the job, with a TTL; ``fence:{job}`` is
  the counter tokens are drawn from. Writes by a worker go through scripts that first check that the
  lease still holds its token, so a worker that lost its lease can no longer change the job.
- ``jobs_by_status``: a hash of counts, kept by the status script (for ``/metrics``);
  ``active_jobs``: the set of running and cancelling jobs, kept by it too (for the reaper).
- ``unfinished:{tenant}``: the set of the tenant's queued, running and cancelling jobs, kept by the
  job-creation and status scripts (the per-tenant limit on concurrent jobs counts it).
- ``rate:{tenant}``: a sorted set of the tenant's job submissions of the last minute, scored by the time
  Redis gave them (the per-tenant limit on job creations counts it).
- ``workers``: worker name -> JSON heartbeat (with its Celery node name and the queues it consumes).
- ``draining``: the set of Celery node names drained by ``gacd drain``: such a worker starts no job.
- ``api:{instance}``: an API process's heartbeat (a key with a TTL); uploads it is receiving carry its
  instance id in their ``.partial`` file names, so that a partial of a dead API process can be told
  from one still being written by a live one.
- ``idem:{tenant}:{sha256(key)}``: an idempotency key's body digest and job id (24 h).

The status script builds the ``unfinished:`` key from the record's tenant, so the store needs one Redis
node (not Redis Cluster). Celery's queues are lists named by the queue, without the prefix.
"""

from __future__ import annotations

import hashlib


class Keys:
    """The names of the store's keys under ``prefix``.

    Args:
        prefix: what every key starts with.
    """

    def __init__(self, prefix: str = "gacd:") -> None:
        self.prefix = prefix
        self.sequence = f"{prefix}seq"
        self.status_counts = f"{prefix}jobs_by_status"
        self.active = f"{prefix}active_jobs"
        self.workers = f"{prefix}workers"
        self.draining = f"{prefix}draining"

    def record(self, rid: str) -> str:
        return f"{self.prefix}rec:{rid}"

    def no_lease(self, rid: str) -> str:
        """A key that is never written: the lease of a record that has none (teachers, datasets)."""
        return self.record(rid) + ":nolease"

    def index(self, tenant: str, kind: str) -> str:
        return f"{self.prefix}idx:{tenant}:{kind}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}events:{job_id}"

    def lease(self, job_id: str) -> str:
        return f"{self.prefix}lease:{job_id}"

    def fence(self, job_id: str) -> str:
        return f"{self.prefix}fence:{job_id}"

    def unfinished(self, tenant: str) -> str:
        return f"{self.prefix}unfinished:{tenant}"

    def rate(self, tenant: str) -> str:
        return f"{self.prefix}rate:{tenant}"

    def api(self, instance: str) -> str:
        return f"{self.prefix}api:{instance}"

    def idempotency(self, tenant: str, key: str) -> str:
        # hashed: a client's key is any string, and it should not shape the key space
        return f"{self.prefix}idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"
