"""A job's events: a Redis stream per job, trimmed to the newest ``events_max``."""

from __future__ import annotations

import json
from typing import Any

import redis

from service.state.records import JobEvent, now_iso
from service.state.store.base import Part
from service.state.store.keys import Keys


def _event(eid: str, f: dict[str, str]) -> JobEvent:
    """An event from its stream entry as Redis returns it."""
    return JobEvent(
        id=eid,
        created_at=f.get("created_at"),
        level=f.get("level", "info"),
        type=f.get("type", ""),
        message=f.get("message", ""),
        data=json.loads(f.get("data") or "{}"),
    )


class Events(Part):
    """The job events.

    Args:
        client: the store's Redis connection.
        keys: the key names.
        events_max: events kept per job.
    """

    def __init__(self, client: redis.Redis, keys: Keys, events_max: int = 10_000) -> None:
        super().__init__(client, keys)
        self.events_max = events_max

    def add(
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
        return str(self._redis.xadd(self._keys.events(job_id), fields, maxlen=self.events_max, approximate=True))

    def read(self, job_id: str, after: str | None = None, limit: int = 100) -> tuple[list[JobEvent], bool]:
        """Events after the id ``after`` (oldest first), and whether more follow."""
        lo = f"({after}" if after else "-"
        rows = self._redis.xrange(self._keys.events(job_id), min=lo, max="+", count=limit + 1)
        return [_event(eid, f) for eid, f in rows[:limit]], len(rows) > limit

    def wait(self, job_id: str, after: str | None, block_ms: int) -> list[JobEvent]:
        """Block up to ``block_ms`` for events after ``after``."""
        res = self._redis.xread({self._keys.events(job_id): after or "0-0"}, count=100, block=block_ms)
        if not res:
            return []
        return [_event(eid, f) for eid, f in res[0][1]]
