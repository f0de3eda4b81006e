"""The job store in Redis, one part per concern over one connection. Torch-free; the API and the workers
share it, and nothing else talks to Redis.

:class:`Store` is what a process holds: ``store.jobs``, ``store.teachers`` and ``store.datasets`` keep
the typed records of :mod:`service.state.records` (checking every field they write against its model),
``store.events`` the jobs' events, ``store.leases`` the workers' leases on jobs, ``store.quotas`` the
tenants' limits, ``store.idempotency`` the idempotency keys, ``store.fleet`` the workers' and API
processes' heartbeats, and ``store.health`` what ``/readyz`` and ``/metrics`` ask. The keys are named in
:mod:`service.state.store.keys`, which describes the layout.
"""

from __future__ import annotations

import redis

from service.state.records import DatasetRecord, TeacherRecord
from service.state.store.base import STORE_ERRORS, Fenced, StoreError, TransitionRefused, connect
from service.state.store.events import Events
from service.state.store.fleet import Fleet
from service.state.store.health import Health
from service.state.store.idempotency import IDEMPOTENCY_TTL, Idempotency
from service.state.store.jobs import Jobs
from service.state.store.keys import Keys
from service.state.store.leases import Leases
from service.state.store.quotas import Quotas
from service.state.store.repository import Page, Repository, Uploads

__all__ = [
    "IDEMPOTENCY_TTL",
    "STORE_ERRORS",
    "Fenced",
    "Keys",
    "Page",
    "Repository",
    "Store",
    "StoreError",
    "TransitionRefused",
    "connect",
]


class Store:
    """Records, events, leases, limits and heartbeats in one Redis database, one part per concern.

    Args:
        client: a ``redis.Redis`` with ``decode_responses=True`` (see :func:`connect`); every part uses it.
        events_max: events kept per job.
        prefix: what every key starts with.
    """

    def __init__(self, client: redis.Redis, events_max: int = 10_000, prefix: str = "gacd:") -> None:
        keys = Keys(prefix)
        self.jobs = Jobs(client, keys)
        self.teachers: Uploads[TeacherRecord] = Uploads(client, keys, TeacherRecord)
        self.datasets: Uploads[DatasetRecord] = Uploads(client, keys, DatasetRecord)
        self.events = Events(client, keys, events_max)
        self.leases = Leases(client, keys)
        self.quotas = Quotas(client, keys)
        self.idempotency = Idempotency(client, keys)
        self.fleet = Fleet(client, keys)
        self.health = Health(client, keys)
