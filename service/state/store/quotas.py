"""A tenant's limits: job submissions per minute (a sliding window by Redis's clock) and unfinished
jobs at once (that cap is checked when a job is created, in the same script: see ``Jobs.create``)."""

from __future__ import annotations

import redis

from service.state.store.base import Part
from service.state.store.keys import Keys

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


class Quotas(Part):
    """The tenants' limits on job submissions."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys)
        self._rate = client.register_script(_RATE)

    def count_submission(self, tenant: str, limit: int, member: str, window_seconds: float = 60.0) -> float:
        """Count a job submission against the tenant's ``limit`` per ``window_seconds``.

        Returns 0.0 when counted, else the seconds until the oldest submission in the window leaves it.
        """
        wait_ms = int(self._rate(keys=[self._keys.rate(tenant)], args=[limit, int(window_seconds * 1000), member]))
        return wait_ms / 1000.0

    def uncount_submission(self, tenant: str, member: str) -> None:
        """Take back a submission counted by :meth:`count_submission` (the job was not created)."""
        self._redis.zrem(self._keys.rate(tenant), member)

    def unfinished(self, tenant: str) -> int:
        """How many of the tenant's jobs are queued, running or cancelling (what the cap counts)."""
        return int(self._redis.scard(self._keys.unfinished(tenant)))
