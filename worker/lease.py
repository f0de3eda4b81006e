"""Holding a job while Redis comes and goes: the lease of a running job, and writes that wait for the store.

A job runs under a lease, a fencing token with a TTL in the job store: :class:`Lease` renews it from a
thread every ``heartbeat_seconds``. While the store is away a renewal fails and is tried again, and the
lease holds as long as its TTL allows; once a renewal is refused (the TTL ran out and the reaper handed
the job on), ``lost`` is set and the job writes nothing more. :func:`patiently` is for the writes a job
cannot go on without (taking the job, its final status): they wait for the store with a growing pause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from service.state.store import STORE_ERRORS, Store

log = logging.getLogger("gacd.worker")
T = TypeVar("T")


def patiently(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried with a growing pause (0.5 s up to 5 s) while the store is away."""
    pause = 0.5
    while True:
        try:
            return fn(*args, **kwargs)
        except STORE_ERRORS as exc:
            log.warning("%s: the job store is unavailable (%s); retrying in %.1f s", what, exc, pause)
            time.sleep(pause)
            pause = min(2 * pause, 5.0)


class Lease:
    """Holds a job's lease and renews it from a thread until stopped; ``lost`` once a renewal fails."""

    def __init__(self, store: Store, job_id: str, token: str, ttl: float, every: float) -> None:
        self.store, self.job_id, self.token, self.ttl, self.every = store, job_id, token, ttl, every
        self.lost = threading.Event()
        self.renewed = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.store.leases.renew(self.job_id, self.token, self.ttl):
                    log.error("job %s: lease lost; stopping without further writes", self.job_id)
                    self.lost.set()
                    return
                self.renewed = time.monotonic()
            except Exception as exc:  # Redis away: keep the lease while the TTL allows
                log.warning("job %s: lease renewal failed (%s); retrying", self.job_id, exc)

    def fresh(self) -> bool:
        """Whether the last renewal is recent enough that the lease cannot have expired yet."""
        return time.monotonic() - self.renewed < self.ttl - self.every

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.store.leases.release(self.job_id, self.token)
        except Exception as exc:
            log.warning("job %s: could not release the lease: %s", self.job_id, exc)
