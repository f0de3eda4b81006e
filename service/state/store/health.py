"""What ``/readyz`` and ``/metrics`` ask the store: whether Redis answers, and the jobs per status."""

from __future__ import annotations

from service.state.records import JOB_STATUSES
from service.state.store.base import Part


class Health(Part):
    """The store's health and its counts."""

    def ping(self) -> bool:
        """Whether Redis answers (raises :data:`StoreError` when it does not)."""
        return bool(self._redis.ping())

    def status_counts(self) -> dict[str, int]:
        """How many jobs are in each status (the counts the status script keeps)."""
        raw = self._redis.hgetall(self._keys.status_counts)
        return {s: max(0, int(raw.get(s, 0))) for s in JOB_STATUSES}
