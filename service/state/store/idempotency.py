"""Idempotency keys: a repeated ``POST /v1/jobs`` with the same key answers with the job the first one
created, for 24 hours."""

from __future__ import annotations

import json

from service.state.records import IdempotencyClaim
from service.state.store.base import Part

IDEMPOTENCY_TTL = 24 * 3600


class Idempotency(Part):
    """The claims on idempotency keys, per tenant."""

    def claim(self, tenant: str, key: str, body_digest: str, job_id: str) -> IdempotencyClaim | None:
        """Claim ``key`` for a new job; returns the earlier claim instead when the key was used."""
        value = json.dumps(IdempotencyClaim(body=body_digest, job_id=job_id).model_dump())
        if self._redis.set(self._keys.idempotency(tenant, key), value, nx=True, ex=IDEMPOTENCY_TTL):
            return None
        return self.earlier(tenant, key)

    def earlier(self, tenant: str, key: str) -> IdempotencyClaim | None:
        """The claim on an idempotency key, if any (without claiming it)."""
        raw = self._redis.get(self._keys.idempotency(tenant, key))
        return IdempotencyClaim.model_validate(json.loads(raw)) if raw else None

    def release(self, tenant: str, key: str, job_id: str) -> None:
        """Give up a claim whose job was not created (only if it is still this job's claim)."""
        claim = self.earlier(tenant, key)
        if claim is not None and claim.job_id == job_id:
            self._redis.delete(self._keys.idempotency(tenant, key))
