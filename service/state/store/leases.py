"""Job leases: the fencing token of the worker that runs a job, kept alive by its heartbeat.

A token is drawn from a counter that only grows, so a worker whose lease expired and was taken over can
never pass for the new holder: the scripts that write a job compare the lease with the writer's token."""

from __future__ import annotations

import redis

from service.state.store.base import Part
from service.state.store.keys import Keys

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


class Leases(Part):
    """The leases on jobs."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self, job_id: str, ttl_seconds: float) -> str | None:
        """A new fencing token if nobody holds the job's lease, else None."""
        token = str(self._redis.incr(self._keys.fence(job_id)))
        ok = self._redis.set(self._keys.lease(job_id), token, nx=True, px=int(ttl_seconds * 1000))
        return token if ok else None

    def renew(self, job_id: str, token: str, ttl_seconds: float) -> bool:
        """Extend the lease by ``ttl_seconds`` if it still holds ``token``; whether it did."""
        return bool(self._renew(keys=[self._keys.lease(job_id)], args=[token, int(ttl_seconds * 1000)]))

    def holds(self, job_id: str, token: str) -> bool:
        """Whether the job's lease still holds ``token`` (checked by a worker right before it writes files)."""
        return bool(self._redis.get(self._keys.lease(job_id)) == token)

    def release(self, job_id: str, token: str) -> None:
        """Give the lease up, if it still holds ``token``."""
        self._release(keys=[self._keys.lease(job_id)], args=[token])
