"""Jobs: their records, created against the tenant's cap on unfinished jobs, and their status changes,
which keep the counts, the set of active jobs and the tenants' sets of unfinished jobs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from service.state.records import TERMINAL, DatasetRecord, JobRecord, TeacherRecord
from service.state.store.base import Fenced, TransitionRefused
from service.state.store.keys import Keys
from service.state.store.repository import Repository, encoded, encoded_record

# Change a job's status if it is one of the allowed ones, optionally checking the lease token, and
# keep the counts, the set of active (running or cancelling) jobs and the tenant's set of unfinished jobs
# (KEYS: rec, lease, counts, active set; ARGV: token, new status JSON, allowed JSON list, job id,
# the unfinished sets' key without the tenant, f1, v1, ...).
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
  redis.call('SREM', ARGV[5] .. tenant, ARGV[4])
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


class Jobs(Repository[JobRecord]):
    """The job records. A worker's writes pass its lease's fencing token, and are refused
    (:class:`Fenced`) once the lease no longer holds it."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys, JobRecord)
        self._transition = client.register_script(_TRANSITION)
        self._create = client.register_script(_CREATE_JOB)

    def create(self, record: JobRecord, max_unfinished: int) -> bool:
        """Store and index a new job, and count it, unless its tenant already has ``max_unfinished``
        unfinished jobs; False then, and nothing is written. The check and the write are one script."""
        rid, tenant, k = record.id, record.tenant, self._keys
        keys = [k.record(rid), k.index(tenant, "job"), k.status_counts, k.unfinished(tenant), k.sequence]
        args: list[Any] = [rid, max_unfinished, record.status, *encoded_record(record)]
        return bool(int(self._create(keys=keys, args=args)))

    def update(self, rid: str, fields: Mapping[str, Any], token: str | None = None) -> None:
        """Set fields of a job's record (as for any record); with ``token``, only while the job's lease
        holds it.

        Raises:
            Fenced: the lease no longer holds ``token``.
            KeyError: no such job, or a field the record does not have.
            pydantic.ValidationError: a value that does not fit its field.
        """
        self._fenced_update(rid, fields, token, self._keys.lease(rid))

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
        k = self._keys
        status = encoded(JobRecord, {"status": new})[1]
        head = [token or "", status, json.dumps(list(allowed)), job_id, k.unfinished("")]
        args = [*head, *encoded(JobRecord, fields or {})]
        code, cur = self._transition(keys=[k.record(job_id), k.lease(job_id), k.status_counts, k.active], args=args)
        code = int(code)
        if code == 0:
            raise Fenced(job_id)
        if code == -1:
            raise TransitionRefused(None)
        if code == -2:
            raise TransitionRefused(json.loads(cur))
        return str(json.loads(cur))

    def _delete_more(self, pipe: Any, rid: str, tenant: str) -> None:
        """A job leaves the counts, its tenant's unfinished set, and its events go."""
        status = self.status(rid)
        if status is not None:
            pipe.hincrby(self._keys.status_counts, status, -1)
        pipe.delete(self._keys.events(rid))
        pipe.srem(self._keys.unfinished(tenant), rid)

    def unfinished_using(self, tenant: str, record_type: type[TeacherRecord | DatasetRecord], rid: str) -> list[str]:
        """Ids of the tenant's unfinished jobs that use the teacher or dataset ``rid``."""
        out = []
        for jid in self._redis.zrange(self._keys.index(tenant, "job"), 0, -1):
            status, ref = self._redis.hmget(self._keys.record(jid), ["status", f"{record_type.noun}_id"])
            if status and json.loads(status) not in TERMINAL and ref and json.loads(ref) == rid:
                out.append(jid)
        return out

    def orphaned(self) -> list[str]:
        """Running or cancelling jobs whose lease has expired: their worker stopped reporting."""
        return [jid for jid in self._redis.smembers(self._keys.active) if not self._redis.exists(self._keys.lease(jid))]

    def forget_active(self, job_id: str) -> None:
        """Drop ``job_id`` from the set of active jobs (its record is gone: nothing is left to recover)."""
        self._redis.srem(self._keys.active, job_id)
