"""The store's methods before it was split by concern, delegating to the parts, while callers move to
``store.<part>.<operation>``. To be removed once no caller uses them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from service.state.records import DatasetRecord, JobRecord, Record, TeacherRecord, WorkerBeat

if TYPE_CHECKING:
    from service.state.store.events import Events
    from service.state.store.fleet import Fleet
    from service.state.store.health import Health
    from service.state.store.idempotency import Idempotency
    from service.state.store.jobs import Jobs
    from service.state.store.leases import Leases
    from service.state.store.quotas import Quotas
    from service.state.store.repository import Page, Repository, Uploads

R = TypeVar("R", bound=Record)


class Legacy:
    jobs: Jobs
    teachers: Uploads[TeacherRecord]
    datasets: Uploads[DatasetRecord]
    events: Events
    leases: Leases
    quotas: Quotas
    idempotency: Idempotency
    fleet: Fleet
    health: Health

    def _repo(self, rid_or_type: str | type[Record]) -> Repository[Any]:
        prefix = rid_or_type.prefix if isinstance(rid_or_type, type) else rid_or_type.split("_", 1)[0]
        repos: dict[str, Repository[Any]] = {"job": self.jobs, "tch": self.teachers, "ds": self.datasets}
        return repos[prefix]

    def create(self, record: TeacherRecord | DatasetRecord) -> None:
        self._repo(type(record)).create(record)  # type: ignore[attr-defined]

    def create_job(self, record: JobRecord, max_unfinished: int) -> bool:
        return self.jobs.create(record, max_unfinished)

    def count_submission(self, tenant: str, limit: int, member: str, window_seconds: float = 60.0) -> float:
        return self.quotas.count_submission(tenant, limit, member, window_seconds)

    def uncount_submission(self, tenant: str, member: str) -> None:
        self.quotas.uncount_submission(tenant, member)

    def get(self, record_type: type[R], rid: str, tenant: str | None = None) -> R | None:
        return self._repo(record_type).get(rid, tenant)

    def get_status(self, rid: str) -> str | None:
        return self.jobs.status(rid)

    def update(self, rid: str, fields: Mapping[str, Any], token: str | None = None) -> None:
        if rid.startswith("job_"):
            self.jobs.update(rid, fields, token)
        else:
            self._repo(rid).update(rid, fields)

    def delete(self, rid: str, tenant: str) -> None:
        self._repo(rid).delete(rid, tenant)

    def list_records(
        self, record_type: type[R], tenant: str, limit: int, after: str | None = None, status: str | None = None
    ) -> Page[R]:
        return self._repo(record_type).page(tenant, limit, after, status)

    def active_jobs_using(self, tenant: str, record_type: type[TeacherRecord | DatasetRecord], rid: str) -> Any:
        return self.jobs.unfinished_using(tenant, record_type, rid)

    def transition(
        self,
        job_id: str,
        allowed: Iterable[str],
        new: str,
        fields: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> str:
        return self.jobs.transition(job_id, allowed, new, fields, token)

    def forget_active(self, job_id: str) -> None:
        self.jobs.forget_active(job_id)

    def orphaned_jobs(self) -> list[str]:
        return self.jobs.orphaned()

    def status_counts(self) -> dict[str, int]:
        return self.health.status_counts()

    def add_event(self, job_id: str, type: str, message: str, **kw: Any) -> str:
        return self.events.add(job_id, type, message, **kw)

    def wait_events(self, job_id: str, after: str | None, block_ms: int) -> list[dict[str, Any]]:
        return [e.model_dump() for e in self.events.wait(job_id, after, block_ms)]

    def acquire_lease(self, job_id: str, ttl_seconds: float) -> str | None:
        return self.leases.acquire(job_id, ttl_seconds)

    def renew_lease(self, job_id: str, token: str, ttl_seconds: float) -> bool:
        return self.leases.renew(job_id, token, ttl_seconds)

    def holds_lease(self, job_id: str, token: str) -> bool:
        return self.leases.holds(job_id, token)

    def release_lease(self, job_id: str, token: str) -> None:
        self.leases.release(job_id, token)

    def claim_idempotency(self, tenant: str, key: str, body_digest: str, job_id: str) -> dict[str, Any] | None:
        claim = self.idempotency.claim(tenant, key, body_digest, job_id)
        return None if claim is None else claim.model_dump()

    def earlier_claim(self, tenant: str, key: str) -> dict[str, Any] | None:
        claim = self.idempotency.earlier(tenant, key)
        return None if claim is None else claim.model_dump()

    def release_idempotency(self, tenant: str, key: str, job_id: str) -> None:
        self.idempotency.release(tenant, key, job_id)

    def worker_heartbeat(self, name: str, info: dict[str, Any]) -> None:
        self.fleet.heartbeat(name, WorkerBeat.model_validate(info))

    def workers(self, stale_seconds: float) -> dict[str, dict[str, Any]]:
        return {n: b.model_dump(exclude_unset=True) for n, b in self.fleet.workers(stale_seconds).items()}

    def set_draining(self, node: str, draining: bool = True) -> None:
        self.fleet.set_draining(node, draining)

    def is_draining(self, node: str) -> bool:
        return self.fleet.is_draining(node)

    def job_consumers(self, queue: str, stale_seconds: float) -> dict[str, dict[str, Any]]:
        return {n: b.model_dump(exclude_unset=True) for n, b in self.fleet.job_consumers(queue, stale_seconds).items()}

    def api_heartbeat(self, instance: str, ttl_seconds: float) -> None:
        self.fleet.api_heartbeat(instance, ttl_seconds)

    def api_alive(self, instance: str) -> bool:
        return self.fleet.api_alive(instance)

    def api_gone(self, instance: str) -> None:
        self.fleet.api_gone(instance)

    def ping(self) -> bool:
        return self.health.ping()

    def queue_depth(self, queue: str) -> int:
        return self.fleet.queue_depth(queue)
