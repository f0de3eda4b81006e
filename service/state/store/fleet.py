"""The processes around the store: workers' heartbeats, drained workers, the job queue's consumers and
depth, and the API processes' heartbeats."""

from __future__ import annotations

import json
import time

from service.state.records import WorkerBeat, now_iso
from service.state.store.base import Part


class Fleet(Part):
    """Who is alive and taking work."""

    def heartbeat(self, name: str, beat: WorkerBeat) -> None:
        """Record that the worker ``name`` is alive now (its fields as given, ``last_seen`` now)."""
        info = {**beat.model_dump(exclude_unset=True), "last_seen": time.time()}
        self._redis.hset(self._keys.workers, name, json.dumps(info))

    def gone(self, name: str) -> None:
        """Forget the worker ``name`` (it stopped)."""
        self._redis.hdel(self._keys.workers, name)

    def workers(self, stale_seconds: float) -> dict[str, WorkerBeat]:
        """Workers seen in the last ``stale_seconds``."""
        cutoff = time.time() - stale_seconds
        raw = self._redis.hgetall(self._keys.workers)
        beats = {name: WorkerBeat.model_validate(json.loads(info)) for name, info in raw.items()}
        return {name: beat for name, beat in beats.items() if beat.last_seen >= cutoff}

    def set_draining(self, node: str, draining: bool = True) -> None:
        """Mark the worker whose Celery node name is ``node`` as drained (it starts no job), or not."""
        if draining:
            self._redis.sadd(self._keys.draining, node)
        else:
            self._redis.srem(self._keys.draining, node)

    def is_draining(self, node: str) -> bool:
        return bool(self._redis.sismember(self._keys.draining, node))

    def job_consumers(self, queue: str, stale_seconds: float) -> dict[str, WorkerBeat]:
        """The live workers that take jobs from ``queue``: those that consume it (as their heartbeat
        says; a heartbeat without ``queues`` comes from an older worker, counted as before) and that
        are not drained."""
        draining = self._redis.smembers(self._keys.draining)
        return {
            name: beat
            for name, beat in self.workers(stale_seconds).items()
            if (beat.queues is None or queue in beat.queues) and beat.node not in draining
        }

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in the Celery queue (the broker's list of that name)."""
        return int(self._redis.llen(queue))

    def api_heartbeat(self, instance: str, ttl_seconds: float) -> None:
        """Record that the API process ``instance`` is alive, for ``ttl_seconds``."""
        self._redis.set(self._keys.api(instance), now_iso(), px=int(ttl_seconds * 1000))

    def api_alive(self, instance: str) -> bool:
        return bool(self._redis.exists(self._keys.api(instance)))

    def api_gone(self, instance: str) -> None:
        self._redis.delete(self._keys.api(instance))
