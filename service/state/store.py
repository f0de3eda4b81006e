"""The job store in Redis: records of teachers, datasets and jobs, job events, leases and worker
heartbeats. Torch-free; the API and the workers share it, and nothing else talks to Redis.

Records are the typed models of :mod:`service.state.records`: the store takes and returns them, and
checks every field it writes against its record's model.

Layout (every key starts with ``gacd:``):

- ``rec:{id}``: a hash per record; each field holds one JSON value (``status``, ``spec``, ...).
  Ids carry their kind: ``job_...``, ``tch_...``, ``ds_...``.
- ``idx:{tenant}:{kind}``: a sorted set of the tenant's ids, scored by a global sequence number, so
  that listings are newest first and a cursor (``after``) is exact.
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

The scripts build the ``unfinished:`` key from the record's tenant, so the store needs one Redis node
(not Redis Cluster).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

import redis
from pydantic import TypeAdapter

from service.state.records import (
    JOB_STATUSES,
    RECORD_TYPES,
    TERMINAL,
    DatasetRecord,
    JobRecord,
    Record,
    TeacherRecord,
    now_iso,
)

IDEMPOTENCY_TTL = 24 * 3600
R = TypeVar("R", bound=Record)


class Fenced(Exception):
    """A worker's write was refused: its lease on the job is gone (another worker may hold it)."""


class TransitionRefused(Exception):
    """A status change that the job's current status does not allow."""

    def __init__(self, current: str | None) -> None:
        super().__init__(f"the job is {current}")
        self.current = current


# Set fields of a record if the lease holds the token (KEYS: rec, lease; ARGV: token, f1, v1, ...).
_FENCED_HSET = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# Change a job's status if it is one of the allowed ones, optionally checking the lease token, and
# keep the counts, the set of active (running or cancelling) jobs and the tenant's set of unfinished jobs
# (KEYS: rec, lease, counts, active set; ARGV: token, new status JSON, allowed JSON list, job id,
# key prefix, f1, v1, ...).
_TRANSITION = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return {0, ''} end
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {-1, ''} end
local allowed = cjson.decode(ARGV[3])
local ok = false
for _, s in ipairs(allowed) do if cjson.encode(s) == cur then ok = true end end
if not ok then return {-2, cur} end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', KEYS[3], cjson.decode(cur), -1)
local new = cjson.decode(ARGV[2])
redis.call('HINCRBY', KEYS[3], new, 1)
if new == 'running' or new == 'cancelling' then
  redis.call('SADD', KEYS[4], ARGV[4])
else
  redis.call('SREM', KEYS[4], ARGV[4])
end
if new == 'succeeded' or new == 'failed' or new == 'cancelled' then
  local tenant = cjson.decode(redis.call('HGET', KEYS[1], 'tenant'))
  redis.call('SREM', ARGV[5] .. 'unfinished:' .. tenant, ARGV[4])
end
return {1, cur}
"""

# Store a new job unless its tenant already has ``limit`` unfinished jobs
# (KEYS: rec, tenant's job index, counts, tenant's unfinished set, sequence;
#  ARGV: job id, limit, status, f1, v1, ...). Returns 1, or 0 when the tenant is at its limit.
_CREATE_JOB = """
if redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[2]) then return 0 end
local seq = redis.call('INCR', KEYS[5])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('SADD', KEYS[4], ARGV[1])
return 1
"""

# Count one submission against a sliding window, by Redis's clock (KEYS: the tenant's rate set;
# ARGV: limit, window ms, member). Returns 0 when counted, else the milliseconds until a slot frees.
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""

# Renew a lease if it still holds the token (KEYS: lease; ARGV: token, ttl ms).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Release a lease if it holds the token (KEYS: lease; ARGV: token).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Page(Generic[R]):
    """One page of a listing: the records, whether more follow, and the cursor for the next page."""

    data: list[R]
    has_more: bool
    next_after: str | None


@cache
def _field(record_type: type[Record], name: str) -> TypeAdapter[Any]:
    """The validator of one field of a record type (KeyError for a field the record does not have)."""
    field = record_type.model_fields.get(name)
    if field is None or field.annotation is None:
        raise KeyError(f"{record_type.__name__} has no field {name!r}")
    return TypeAdapter(field.annotation)


def _encoded(record_type: type[Record], fields: Mapping[str, Any]) -> list[str]:
    """``[name, JSON value, ...]`` of some fields of a record, each value validated as the record's field."""
    out: list[str] = []
    for name, value in fields.items():
        adapter = _field(record_type, name)
        out += [name, json.dumps(adapter.dump_python(adapter.validate_python(value), mode="json"))]
    return out


def _record_type(rid: str) -> type[Record]:
    return RECORD_TYPES[rid.split("_", 1)[0]]


class Store:
    """Records, events, leases and heartbeats in one Redis database.

    Args:
        client: a ``redis.Redis`` with ``decode_responses=True``.
        events_max: events kept per job.
    """

    def __init__(self, client: redis.Redis, events_max: int = 10_000, prefix: str = "gacd:") -> None:
        # redis-py's annotations do not know about decode_responses=True: treat replies as Any here.
        self.r: Any = client
        self.events_max = events_max
        self.p = prefix
        self._fenced_hset = client.register_script(_FENCED_HSET)
        self._transition = client.register_script(_TRANSITION)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._create_job = client.register_script(_CREATE_JOB)
        self._rate = client.register_script(_RATE)

    # --- keys ------------------------------------------------------------------------------------
    def k_rec(self, rid: str) -> str:
        return f"{self.p}rec:{rid}"

    def k_idx(self, tenant: str, kind: str) -> str:
        return f"{self.p}idx:{tenant}:{kind}"

    def k_events(self, job_id: str) -> str:
        return f"{self.p}events:{job_id}"

    def k_lease(self, job_id: str) -> str:
        return f"{self.p}lease:{job_id}"

    def k_fence(self, job_id: str) -> str:
        return f"{self.p}fence:{job_id}"

    @property
    def k_counts(self) -> str:
        return f"{self.p}jobs_by_status"

    @property
    def k_active(self) -> str:
        return f"{self.p}active_jobs"

    def k_unfinished(self, tenant: str) -> str:
        return f"{self.p}unfinished:{tenant}"

    def k_rate(self, tenant: str) -> str:
        return f"{self.p}rate:{tenant}"

    @property
    def k_workers(self) -> str:
        return f"{self.p}workers"

    # --- records ---------------------------------------------------------------------------------
    def create(self, record: TeacherRecord | DatasetRecord) -> None:
        """Store a new teacher or dataset record and index it. Jobs go through :meth:`create_job`, which
        also counts them."""
        fields = self._fields(record)
        seq = self.r.incr(f"{self.p}seq")
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k_rec(record.id), mapping=dict(zip(fields[::2], fields[1::2], strict=True)))
        pipe.zadd(self.k_idx(record.tenant, record.prefix), {record.id: seq})
        pipe.execute()

    def create_job(self, record: JobRecord, max_unfinished: int) -> bool:
        """Store a new job (as :meth:`create`) unless its tenant already has ``max_unfinished``
        unfinished jobs; False then, and nothing is written. The check and the write are one script."""
        rid, tenant = record.id, record.tenant
        keys = [self.k_rec(rid), self.k_idx(tenant, "job"), self.k_counts, self.k_unfinished(tenant), f"{self.p}seq"]
        args: list[Any] = [rid, max_unfinished, record.status, *self._fields(record)]
        return bool(int(self._create_job(keys=keys, args=args)))

    @staticmethod
    def _fields(record: Record) -> list[str]:
        """``[name, JSON value, ...]`` of every field of a record."""
        out: list[str] = []
        for name, value in record.model_dump(mode="json").items():
            out += [name, json.dumps(value)]
        return out

    def count_submission(self, tenant: str, limit: int, member: str, window_seconds: float = 60.0) -> float:
        """Count a job submission against the tenant's ``limit`` per ``window_seconds``.

        Returns 0.0 when counted, else the seconds until the oldest submission in the window leaves it.
        """
        wait_ms = int(self._rate(keys=[self.k_rate(tenant)], args=[limit, int(window_seconds * 1000), member]))
        return wait_ms / 1000.0

    def uncount_submission(self, tenant: str, member: str) -> None:
        """Take back a submission counted by :meth:`count_submission` (the job was not created)."""
        self.r.zrem(self.k_rate(tenant), member)

    def get(self, record_type: type[R], rid: str, tenant: str | None = None) -> R | None:
        """The record ``rid`` of ``record_type``, or None when there is no such record of that type or it
        belongs to another tenant."""
        if not rid.startswith(record_type.prefix + "_"):
            return None
        return self._decoded(record_type, self.r.hgetall(self.k_rec(rid)), tenant)

    @staticmethod
    def _decoded(record_type: type[R], raw: dict[str, str], tenant: str | None, status: str | None = None) -> R | None:
        """A record from its hash as Redis returns it, if it is the tenant's (and has ``status``)."""
        if not raw:
            return None
        fields = {k: json.loads(v) for k, v in raw.items()}
        if tenant is not None and fields.get("tenant") != tenant:
            return None
        if status is not None and fields.get("status") != status:
            return None
        return record_type.model_validate(fields)

    def get_status(self, rid: str) -> str | None:
        """Only the ``status`` field of a record (cheap: workers poll it for cancellation)."""
        raw = self.r.hget(self.k_rec(rid), "status")
        return json.loads(raw) if raw else None

    def update(self, rid: str, fields: Mapping[str, Any], token: str | None = None) -> None:
        """Set fields of a record, each checked against the record's model; with ``token``, only while
        the job's lease holds it.

        Raises:
            Fenced: the lease no longer holds ``token``.
            KeyError: no such record, or a field the record does not have.
            pydantic.ValidationError: a value that does not fit its field.
        """
        args = [token or "", *_encoded(_record_type(rid), fields)]
        lease = self.k_lease(rid) if rid.startswith("job_") else self.k_rec(rid) + ":nolease"
        res = int(self._fenced_hset(keys=[self.k_rec(rid), lease], args=args))
        if res == 0:
            raise Fenced(rid)
        if res == -1:
            raise KeyError(rid)

    def delete(self, rid: str, tenant: str) -> None:
        """Remove a record, its index entry and (for a job) its events and its place in the counts."""
        kind = rid.split("_", 1)[0]
        status = self.get_status(rid) if kind == "job" else None
        pipe = self.r.pipeline(transaction=True)
        if status is not None:
            pipe.hincrby(self.k_counts, status, -1)
        pipe.delete(self.k_rec(rid))
        pipe.zrem(self.k_idx(tenant, kind), rid)
        if kind == "job":
            pipe.delete(self.k_events(rid))
            pipe.srem(self.k_unfinished(tenant), rid)
        pipe.execute()

    def list_records(
        self, record_type: type[R], tenant: str, limit: int, after: str | None = None, status: str | None = None
    ) -> Page[R]:
        """The tenant's records of ``record_type``, newest first, ``limit`` at a time after the cursor
        ``after`` (KeyError when it is not one of them), only those with ``status`` when given."""
        key = self.k_idx(tenant, record_type.prefix)
        hi: str = "+inf"
        if after is not None:
            score = self.r.zscore(key, after)
            if score is None:
                raise KeyError(after)
            hi = f"({int(score)}"
        out: list[R] = []
        # Without a status filter nearly every id is a row: read a page (and one more) at a time.
        batch = limit + 1 if status is None else max(limit + 1, 50)
        while len(out) <= limit:
            ids = self.r.zrevrangebyscore(key, hi, "-inf", start=0, num=batch, withscores=True)
            if not ids:
                break
            pipe = self.r.pipeline(transaction=False)  # the batch's records in one round trip
            for rid, _ in ids:
                pipe.hgetall(self.k_rec(rid))
            for (_, score), raw in zip(ids, pipe.execute(), strict=True):
                rec = self._decoded(record_type, raw, tenant, status)
                hi = f"({int(score)}"
                if rec is None:
                    continue
                out.append(rec)
                if len(out) > limit:
                    break
            if len(ids) < batch:
                break
        has_more = len(out) > limit
        data = out[:limit]
        return Page(data, has_more, data[-1].id if has_more and data else None)

    def active_jobs_using(self, tenant: str, record_type: type[TeacherRecord | DatasetRecord], rid: str) -> list[str]:
        """Ids of the tenant's unfinished jobs that use the teacher or dataset ``rid``."""
        out = []
        for jid in self.r.zrange(self.k_idx(tenant, "job"), 0, -1):
            status, ref = self.r.hmget(self.k_rec(jid), ["status", f"{record_type.noun}_id"])
            if status and json.loads(status) not in TERMINAL and ref and json.loads(ref) == rid:
                out.append(jid)
        return out

    # --- jobs: status --------------------------------------------------------------------------
    def transition(
        self,
        job_id: str,
        allowed: Iterable[str],
        new: str,
        fields: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> str:
        """Set the job's status to ``new`` if it is one of ``allowed``, with ``fields`` of its record;
        returns the previous status.

        Raises:
            TransitionRefused: the job's status is not one of ``allowed`` (or the job is gone).
            Fenced: ``token`` is given and the lease no longer holds it.
        """
        status = _encoded(JobRecord, {"status": new})[1]
        args = [token or "", status, json.dumps(list(allowed)), job_id, self.p, *_encoded(JobRecord, fields or {})]
        keys = [self.k_rec(job_id), self.k_lease(job_id), self.k_counts, self.k_active]
        code, cur = self._transition(keys=keys, args=args)
        code = int(code)
        if code == 0:
            raise Fenced(job_id)
        if code == -1:
            raise TransitionRefused(None)
        if code == -2:
            raise TransitionRefused(json.loads(cur))
        return str(json.loads(cur))

    def forget_active(self, job_id: str) -> None:
        """Drop ``job_id`` from the set of active jobs (its record is gone: nothing is left to recover)."""
        self.r.srem(self.k_active, job_id)

    def orphaned_jobs(self) -> list[str]:
        """Running or cancelling jobs whose lease has expired: their worker stopped reporting."""
        out = []
        for jid in self.r.smembers(self.k_active):
            if not self.r.exists(self.k_lease(jid)):
                out.append(jid)
        return out

    def status_counts(self) -> dict[str, int]:
        raw = self.r.hgetall(self.k_counts)
        return {s: max(0, int(raw.get(s, 0))) for s in JOB_STATUSES}

    # --- jobs: events ----------------------------------------------------------------------------
    def add_event(
        self,
        job_id: str,
        type: str,
        message: str,
        *,
        level: str = "info",
        data: dict[str, Any] | None = None,
        created_at: str | None = None,
    ) -> str:
        """Append an event to the job's stream; returns its id. ``created_at`` defaults to now (a worker
        passes the time it saw the event when it writes it late, after the store was away)."""
        fields = {
            "created_at": created_at or now_iso(),
            "level": level,
            "type": type,
            "message": message,
            "data": json.dumps(data or {}),
        }
        return str(self.r.xadd(self.k_events(job_id), fields, maxlen=self.events_max, approximate=True))

    def events(self, job_id: str, after: str | None = None, limit: int = 100) -> tuple[list[dict[str, Any]], bool]:
        """Events after the id ``after`` (oldest first), and whether more follow."""
        lo = f"({after}" if after else "-"
        rows = self.r.xrange(self.k_events(job_id), min=lo, max="+", count=limit + 1)
        out = [self._event(eid, f) for eid, f in rows[:limit]]
        return out, len(rows) > limit

    def wait_events(self, job_id: str, after: str | None, block_ms: int) -> list[dict[str, Any]]:
        """Block up to ``block_ms`` for events after ``after``."""
        res = self.r.xread({self.k_events(job_id): after or "0-0"}, count=100, block=block_ms)
        if not res:
            return []
        return [self._event(eid, f) for eid, f in res[0][1]]

    @staticmethod
    def _event(eid: str, f: dict[str, str]) -> dict[str, Any]:
        return {
            "id": eid,
            "created_at": f.get("created_at"),
            "level": f.get("level", "info"),
            "type": f.get("type", ""),
            "message": f.get("message", ""),
            "data": json.loads(f.get("data") or "{}"),
        }

    # --- jobs: leases ----------------------------------------------------------------------------
    def acquire_lease(self, job_id: str, ttl_seconds: float) -> str | None:
        """A new fencing token if nobody holds the job's lease, else None."""
        token = str(self.r.incr(self.k_fence(job_id)))
        ok = self.r.set(self.k_lease(job_id), token, nx=True, px=int(ttl_seconds * 1000))
        return token if ok else None

    def renew_lease(self, job_id: str, token: str, ttl_seconds: float) -> bool:
        return bool(self._renew(keys=[self.k_lease(job_id)], args=[token, int(ttl_seconds * 1000)]))

    def holds_lease(self, job_id: str, token: str) -> bool:
        """Whether the job's lease still holds ``token`` (checked by a worker right before it writes files)."""
        return bool(self.r.get(self.k_lease(job_id)) == token)

    def release_lease(self, job_id: str, token: str) -> None:
        self._release(keys=[self.k_lease(job_id)], args=[token])

    # --- idempotency -----------------------------------------------------------------------------
    def claim_idempotency(self, tenant: str, key: str, body_digest: str, job_id: str) -> dict[str, Any] | None:
        """Claim ``key`` for a new job; returns the earlier claim instead when the key was used."""
        k = self._k_idem(tenant, key)
        value = json.dumps({"body": body_digest, "job_id": job_id})
        if self.r.set(k, value, nx=True, ex=IDEMPOTENCY_TTL):
            return None
        return self.earlier_claim(tenant, key)

    def earlier_claim(self, tenant: str, key: str) -> dict[str, Any] | None:
        """The claim on an idempotency key, if any (without claiming it)."""
        raw = self.r.get(self._k_idem(tenant, key))
        return json.loads(raw) if raw else None

    def release_idempotency(self, tenant: str, key: str, job_id: str) -> None:
        """Give up a claim whose job was not created (only if it is still this job's claim)."""
        claim = self.earlier_claim(tenant, key)
        if claim is not None and claim.get("job_id") == job_id:
            self.r.delete(self._k_idem(tenant, key))

    def _k_idem(self, tenant: str, key: str) -> str:
        return f"{self.p}idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"

    # --- workers ---------------------------------------------------------------------------------
    def worker_heartbeat(self, name: str, info: dict[str, Any]) -> None:
        self.r.hset(self.k_workers, name, json.dumps({**info, "last_seen": time.time()}))

    def worker_gone(self, name: str) -> None:
        self.r.hdel(self.k_workers, name)

    def workers(self, stale_seconds: float) -> dict[str, dict[str, Any]]:
        """Workers seen in the last ``stale_seconds``."""
        cutoff = time.time() - stale_seconds
        out = {}
        for name, raw in self.r.hgetall(self.k_workers).items():
            info = json.loads(raw)
            if info.get("last_seen", 0) >= cutoff:
                out[name] = info
        return out

    def set_draining(self, node: str, draining: bool = True) -> None:
        """Mark the worker whose Celery node name is ``node`` as drained (it starts no job), or not."""
        if draining:
            self.r.sadd(f"{self.p}draining", node)
        else:
            self.r.srem(f"{self.p}draining", node)

    def is_draining(self, node: str) -> bool:
        return bool(self.r.sismember(f"{self.p}draining", node))

    def job_consumers(self, queue: str, stale_seconds: float) -> dict[str, dict[str, Any]]:
        """The live workers that take jobs from ``queue``: those that consume it (as their heartbeat
        says; a heartbeat without ``queues`` comes from an older worker, counted as before) and that
        are not drained."""
        draining = self.r.smembers(f"{self.p}draining")
        return {
            name: info
            for name, info in self.workers(stale_seconds).items()
            if queue in info.get("queues", [queue]) and info.get("node") not in draining
        }

    def api_heartbeat(self, instance: str, ttl_seconds: float) -> None:
        self.r.set(f"{self.p}api:{instance}", now_iso(), px=int(ttl_seconds * 1000))

    def api_alive(self, instance: str) -> bool:
        return bool(self.r.exists(f"{self.p}api:{instance}"))

    def api_gone(self, instance: str) -> None:
        self.r.delete(f"{self.p}api:{instance}")

    def ping(self) -> bool:
        """Whether Redis answers (raises :data:`StoreError` when it does not)."""
        return bool(self.r.ping())

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in the Celery queue (the broker's list of that name)."""
        return int(self.r.llen(queue))


STORE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
"""What a client sees while Redis is away (restarting, loading its append-only file, unreachable)."""
StoreError = redis.exceptions.RedisError
"""Any error of the store's Redis, :data:`STORE_ERRORS` included."""


def connect(url: str, **kw: Any) -> redis.Redis:
    """A Redis client that decodes responses and fails fast when Redis is away."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=kw.pop("socket_connect_timeout", 2.0),
        socket_timeout=kw.pop("socket_timeout", 10.0),
        health_check_interval=kw.pop("health_check_interval", 15),
        **kw,
    )
