"""What the API and the workers share: typed records through a real Redis store (each of its parts:
jobs, teachers, datasets, events, leases, quotas, idempotency, the fleet, health; the keys as laid out
before the store was split), and a job specification resolved to files in one call."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _workers import ServiceEnv
from pydantic import ValidationError

from gacd_core.errors import SpecError
from gacd_core.spec import JobSpec, parse_spec
from service.api.schemas import JobPublic, TeacherPublic
from service.state.records import (
    JOB_STATUSES,
    DatasetRecord,
    IdempotencyClaim,
    JobEvent,
    JobRecord,
    Progress,
    TeacherRecord,
    WorkerBeat,
    new_id,
    now_iso,
)
from service.state.settings import Settings
from service.state.store import STORE_ERRORS, Fenced, Keys, Store, TransitionRefused, connect

pytestmark = pytest.mark.unit

DISTIL = {
    "method": "gacd",
    "teacher": {"id": "tch_" + "a" * 24},
    "student": {"arch": "tiny_wrn"},
    "dataset": {"name": "custom", "id": "ds_" + "b" * 24, "train_subset": 64},
    "hyperparameters": {"epochs": 3},
    "metadata": {"run": "r1", "n": 2},
}


@pytest.fixture(scope="module")
def env(start_service: Callable[..., ServiceEnv]) -> ServiceEnv:
    return start_service("state")


@pytest.fixture(scope="module")
def store(env: ServiceEnv) -> Store:
    return env.store


@pytest.fixture(scope="module")
def raw(env: ServiceEnv) -> Any:
    """The Redis beneath the store, to write what an older version wrote and to read the layout."""
    return env.redis


def _teacher(tenant: str = "t") -> TeacherRecord:
    return TeacherRecord(
        id=new_id("tch"), tenant=tenant, name="t", arch="tiny_resnet", dataset="cifar10", sha256="0" * 64,
        bytes=10, status="validating", file="t/teachers/x/weights.pt", created_at=now_iso(),
    )  # fmt: skip


def _dataset(tenant: str = "t") -> DatasetRecord:
    return DatasetRecord(
        id=new_id("ds"), tenant=tenant, name="d", status="validating", file="t/ds/x.npz", created_at=now_iso()
    )


def _job(tenant: str = "t", **refs: Any) -> JobRecord:
    return JobRecord.queued(parse_spec({"method": "at"}), tenant, "q", **refs)


# --------------------------------------------------------------------------------------------------
# The store: one part per concern over one connection
# --------------------------------------------------------------------------------------------------
def test_every_part_shares_the_one_connection_and_the_key_names(store: Store) -> None:
    parts = [store.jobs, store.teachers, store.datasets, store.events, store.leases, store.quotas]
    parts += [store.idempotency, store.fleet, store.health]
    assert len({id(p._redis) for p in parts}) == 1 and len({id(p._keys) for p in parts}) == 1
    assert not hasattr(store, "r") and not hasattr(store, "p")
    assert (store.teachers.record_type, store.datasets.record_type) == (TeacherRecord, DatasetRecord)


def test_the_keys_are_laid_out_as_before() -> None:
    k = Keys()
    named = [k.record("job_1"), k.index("t", "job"), k.sequence, k.events("job_1"), k.lease("job_1")]
    named += [k.fence("job_1"), k.status_counts, k.active, k.unfinished("t"), k.rate("t"), k.workers]
    named += [k.draining, k.api("i"), k.idempotency("t", "key-1")]
    digest = hashlib.sha256(b"key-1").hexdigest()
    assert named == [
        "gacd:rec:job_1", "gacd:idx:t:job", "gacd:seq", "gacd:events:job_1", "gacd:lease:job_1",
        "gacd:fence:job_1", "gacd:jobs_by_status", "gacd:active_jobs", "gacd:unfinished:t", "gacd:rate:t",
        "gacd:workers", "gacd:draining", "gacd:api:i", f"gacd:idem:t:{digest}",
    ]  # fmt: skip
    assert Keys("x:").record("ds_1") == "x:rec:ds_1"


def test_a_job_record_reads_back_as_written_with_its_spec_whole(store: Store, raw: Any) -> None:
    spec = parse_spec(DISTIL)
    rec = JobRecord.queued(spec, "t", "q", spec.teacher and spec.teacher.id, spec.dataset.id)
    assert store.jobs.create(rec, max_unfinished=10)
    back = store.jobs.get(rec.id)
    assert back == rec and isinstance(back.spec, JobSpec) and back.spec.metadata == {"run": "r1", "n": 2}
    assert back.progress == Progress(epochs=3, stage="queued")
    # stored as it always was: one JSON value per field
    assert raw.hgetall(f"gacd:rec:{rec.id}") == {k: json.dumps(v) for k, v in rec.model_dump(mode="json").items()}
    assert raw.zscore("gacd:idx:t:job", rec.id) == float(raw.get("gacd:seq"))
    # the public shape is the one the API always had: the specification without its metadata, beside it
    public = JobPublic.of(back).model_dump(mode="json")
    assert public["metadata"] == {"run": "r1", "n": 2} and "metadata" not in public["spec"]
    assert public["spec"]["teacher"]["id"] == DISTIL["teacher"]["id"] and "tenant" not in public
    assert store.jobs.get(rec.id, tenant="someone else") is None
    assert store.teachers.get(rec.id) is None  # an id names one kind of record
    with pytest.raises(KeyError):
        store.teachers.update(rec.id, {"status": "ready"})


def test_a_job_stored_before_specs_were_kept_whole_still_reads(store: Store, raw: Any) -> None:
    spec = parse_spec(DISTIL)
    rec = JobRecord.queued(spec, "t", "q")
    old = {**rec.model_dump(mode="json"), "metadata": spec.metadata}
    old["spec"] = {k: v for k, v in old["spec"].items() if k != "metadata"}
    raw.hset(f"gacd:rec:{rec.id}", mapping={k: json.dumps(v) for k, v in old.items()})
    back = store.jobs.get(rec.id)
    assert back is not None and back.spec == spec and back.queue == "q"


def test_a_job_whose_record_no_longer_reads_fails_instead_of_waiting_forever(
    store: Store, raw: Any, tmp_path: Path
) -> None:
    from worker.runner import JobRunner

    rec = _job()
    assert store.jobs.create(rec, max_unfinished=10)
    raw.hset(f"gacd:rec:{rec.id}", "spec", json.dumps({"method": "at", "renamed_field": 1}))
    JobRunner(store, Settings(artifact_root=tmp_path), "w").run(rec.id)  # no lease taken, nothing run
    assert store.jobs.status(rec.id) == "failed"
    error = json.loads(raw.hget(f"gacd:rec:{rec.id}", "error"))
    assert error["code"] == "invalid_spec" and "spec.renamed_field" in error["message"]


def test_the_cap_on_unfinished_jobs_is_checked_as_a_job_is_created(store: Store) -> None:
    first, second, third = _job("capped"), _job("capped"), _job("capped")
    before = store.health.status_counts()["queued"]
    assert store.jobs.create(first, max_unfinished=2) and store.jobs.create(second, max_unfinished=2)
    assert not store.jobs.create(third, max_unfinished=2) and store.jobs.get(third.id) is None
    assert store.quotas.unfinished("capped") == 2 and store.health.status_counts()["queued"] == before + 2
    store.jobs.transition(first.id, ["queued"], "cancelled")
    assert store.quotas.unfinished("capped") == 1 and store.jobs.create(third, max_unfinished=2)


def test_a_status_change_keeps_the_counts_and_the_sets(store: Store, raw: Any) -> None:
    rec = _job("mover")
    store.jobs.create(rec, max_unfinished=10)
    counts = store.health.status_counts()
    assert store.jobs.transition(rec.id, ["queued"], "running", {"started_at": now_iso()}) == "queued"
    assert raw.sismember("gacd:active_jobs", rec.id) and store.quotas.unfinished("mover") == 1
    after = store.health.status_counts()
    assert (after["queued"], after["running"]) == (counts["queued"] - 1, counts["running"] + 1)
    with pytest.raises(TransitionRefused) as refused:
        store.jobs.transition(rec.id, ["queued"], "running")
    assert refused.value.current == "running"
    with pytest.raises(TransitionRefused) as gone:
        store.jobs.transition(new_id("job"), ["queued"], "running")
    assert gone.value.current is None
    with pytest.raises(ValidationError):
        store.jobs.transition(rec.id, ["running"], "lost")
    store.jobs.transition(rec.id, ["running"], "succeeded", {"finished_at": now_iso()})
    assert not raw.sismember("gacd:active_jobs", rec.id) and store.quotas.unfinished("mover") == 0
    assert store.jobs.get(rec.id) is not None and store.jobs.get(rec.id).finished_at is not None  # type: ignore[union-attr]


def test_a_worker_that_lost_its_lease_can_no_longer_write_the_job(store: Store) -> None:
    rec = _job()
    store.jobs.create(rec, max_unfinished=10)
    token = store.leases.acquire(rec.id, 5)
    assert token is not None and store.leases.acquire(rec.id, 5) is None  # held
    assert store.leases.holds(rec.id, token) and store.leases.renew(rec.id, token, 5)
    store.jobs.transition(rec.id, ["queued"], "running", token=token)
    store.jobs.update(rec.id, {"attempts": 1}, token)
    store.leases.release(rec.id, token)
    assert not store.leases.holds(rec.id, token) and not store.leases.renew(rec.id, token, 5)
    later = store.leases.acquire(rec.id, 5)
    assert later is not None and int(later) > int(token)  # tokens only grow: the old one never passes again
    with pytest.raises(Fenced):
        store.jobs.update(rec.id, {"attempts": 2}, token)
    with pytest.raises(Fenced):
        store.jobs.transition(rec.id, ["running"], "failed", token=token)
    store.leases.release(rec.id, token)  # not its lease any more: nothing happens
    assert store.leases.holds(rec.id, later) and store.jobs.get(rec.id).attempts == 1  # type: ignore[union-attr]
    store.jobs.update(rec.id, {"attempts": 2})  # the API's writes take no token


def test_a_job_whose_worker_stopped_is_orphaned_until_forgotten(store: Store) -> None:
    rec = _job()
    store.jobs.create(rec, max_unfinished=10)
    token = store.leases.acquire(rec.id, 0.05)
    store.jobs.transition(rec.id, ["queued"], "running", token=token)
    assert rec.id not in store.jobs.orphaned()
    time.sleep(0.1)  # the lease expires
    assert rec.id in store.jobs.orphaned()
    store.jobs.forget_active(rec.id)
    assert rec.id not in store.jobs.orphaned()


def test_a_deleted_job_leaves_its_events_the_counts_and_the_sets(store: Store, raw: Any) -> None:
    rec = _job("deleter")
    store.jobs.create(rec, max_unfinished=10)
    store.events.add(rec.id, "queued", "queued")
    queued = store.health.status_counts()["queued"]
    store.jobs.delete(rec.id, "deleter")
    assert store.jobs.get(rec.id) is None and store.jobs.page("deleter", 10).data == []
    assert not raw.exists(f"gacd:events:{rec.id}") and store.quotas.unfinished("deleter") == 0
    assert store.health.status_counts()["queued"] == queued - 1


def test_updates_are_checked_against_the_record(store: Store) -> None:
    teacher = _teacher()
    store.teachers.create(teacher)
    store.teachers.update(teacher.id, {"status": "ready", "checks": {"cifar10": {"clean_acc": 0.5}}})
    back = store.teachers.get(teacher.id)
    assert back is not None and back.status == "ready" and back.checks["cifar10"]["clean_acc"] == 0.5
    with pytest.raises(KeyError, match="no field 'colour'"):
        store.teachers.update(teacher.id, {"status": "invalid", "colour": "red"})
    with pytest.raises(ValidationError):
        store.teachers.update(teacher.id, {"status": "lost"})
    with pytest.raises(KeyError):
        store.teachers.update(new_id("tch"), {"status": "ready"})  # no such teacher
    assert store.teachers.status(teacher.id) == "ready"  # a refused update writes nothing
    assert TeacherPublic.of(back).model_dump().keys() == TeacherPublic.model_fields.keys()  # no file, no tenant


def test_listing_is_typed_newest_first_and_per_tenant(store: Store) -> None:
    mine = [_teacher("lister") for _ in range(3)]
    for rec in mine:
        store.teachers.create(rec)
    store.teachers.create(_teacher("other"))
    page = store.teachers.page("lister", limit=2)
    assert [r.id for r in page.data] == [mine[2].id, mine[1].id] and page.has_more
    rest = store.teachers.page("lister", limit=2, after=page.next_after)
    assert [r.id for r in rest.data] == [mine[0].id] and not rest.has_more
    with pytest.raises(KeyError):
        store.teachers.page("lister", limit=2, after=_teacher("lister").id)  # not one of them


def test_a_status_filter_pages_through_more_than_one_batch(store: Store) -> None:
    jobs = [_job("filter") for _ in range(60)]
    for rec in jobs:
        store.jobs.create(rec, max_unfinished=100)
    for rec in jobs[::2]:
        store.jobs.transition(rec.id, ["queued"], "cancelled")
    first = store.jobs.page("filter", 20, status="queued")
    rest = store.jobs.page("filter", 20, after=first.next_after, status="queued")
    assert [r.id for r in first.data + rest.data] == [r.id for r in jobs[1::2][::-1]]
    assert first.has_more and not rest.has_more and all(r.status == "queued" for r in rest.data)


def test_datasets_are_their_own_kind_and_jobs_using_them_hold_them(store: Store) -> None:
    dataset, teacher = _dataset("user"), _teacher("user")
    store.datasets.create(dataset)
    store.teachers.create(teacher)
    job = _job("user", teacher_id=teacher.id, dataset_id=dataset.id)
    store.jobs.create(job, max_unfinished=10)
    assert store.datasets.get(dataset.id, "user") == dataset and store.teachers.get(dataset.id) is None
    assert store.jobs.unfinished_using("user", DatasetRecord, dataset.id) == [job.id]
    assert store.jobs.unfinished_using("user", TeacherRecord, teacher.id) == [job.id]
    store.jobs.transition(job.id, ["queued"], "cancelled")
    assert store.jobs.unfinished_using("user", DatasetRecord, dataset.id) == []
    store.datasets.delete(dataset.id, "user")
    assert store.datasets.get(dataset.id) is None and store.datasets.page("user", 10).data == []


def test_events_read_back_typed_in_order_and_are_trimmed(env: ServiceEnv) -> None:
    store = Store(env.redis, events_max=5)
    job_id = new_id("job")
    ids = [store.events.add(job_id, "progress", f"step {i}", data={"i": i}) for i in range(3)]
    late = store.events.add(job_id, "failed", "late", level="error", created_at="2026-01-01T00:00:00.000Z")
    events, more = store.events.read(job_id, limit=2)
    assert [e.id for e in events] == ids[:2] and more and isinstance(events[0], JobEvent)
    second = events[1]
    assert (second.type, second.message, second.level, second.data) == ("progress", "step 1", "info", {"i": 1})
    rest, more = store.events.read(job_id, after=ids[1])
    assert [e.id for e in rest] == [ids[2], late] and not more and rest[1].created_at == "2026-01-01T00:00:00.000Z"
    assert [e.id for e in store.events.wait(job_id, ids[2], 10)] == [late]
    assert store.events.wait(job_id, late, 10) == []  # nothing after the last one
    for i in range(200):
        store.events.add(job_id, "progress", f"more {i}")
    assert len(env.redis.xrange(f"gacd:events:{job_id}")) < 200  # trimmed (approximately) to events_max


def test_the_rate_limit_counts_a_window_and_takes_back_what_was_not_created(store: Store) -> None:
    assert store.quotas.count_submission("rated", 2, "a", window_seconds=60) == 0.0
    assert store.quotas.count_submission("rated", 2, "b", window_seconds=60) == 0.0
    wait = store.quotas.count_submission("rated", 2, "c", window_seconds=60)
    assert 59.0 < wait <= 60.0
    store.quotas.uncount_submission("rated", "b")
    assert store.quotas.count_submission("rated", 2, "c", window_seconds=60) == 0.0
    assert store.quotas.count_submission("quick", 1, "a", window_seconds=0.05) == 0.0
    time.sleep(0.1)
    assert store.quotas.count_submission("quick", 1, "b", window_seconds=0.05) == 0.0  # the window moved on


def test_an_idempotency_key_is_claimed_once_and_released_only_by_its_job(store: Store, raw: Any) -> None:
    assert store.idempotency.earlier("t", "key-1") is None
    assert store.idempotency.claim("t", "key-1", "digest", "job_1") is None
    stored = raw.get(f"gacd:idem:t:{hashlib.sha256(b'key-1').hexdigest()}")
    assert stored == json.dumps({"body": "digest", "job_id": "job_1"})  # as an older API wrote it
    assert store.idempotency.claim("t", "key-1", "other", "job_2") == IdempotencyClaim(body="digest", job_id="job_1")
    assert store.idempotency.claim("u", "key-1", "other", "job_3") is None  # keys are per tenant
    store.idempotency.release("t", "key-1", "job_2")  # not its claim: kept
    assert store.idempotency.earlier("t", "key-1") == IdempotencyClaim(body="digest", job_id="job_1")
    store.idempotency.release("t", "key-1", "job_1")
    assert store.idempotency.earlier("t", "key-1") is None


def test_the_fleet_sees_live_workers_that_consume_the_queue_and_are_not_drained(store: Store, raw: Any) -> None:
    store.fleet.heartbeat("w1", WorkerBeat(device="cpu", pid=1, host="h", node="w1@h", queues=["jobs"]))
    store.fleet.heartbeat("w2", WorkerBeat(device="cpu", pid=2, host="h", node="w2@h", queues=["other"]))
    # a worker older than ``queues`` (and a field newer than this code) still counts
    raw.hset("gacd:workers", "w3", json.dumps({"node": "w3@h", "last_seen": time.time(), "gpu": "h100"}))
    raw.hset("gacd:workers", "w4", json.dumps({"node": "w4@h", "last_seen": time.time() - 60}))  # stale
    stored = json.loads(raw.hget("gacd:workers", "w1"))
    assert list(stored) == ["device", "pid", "host", "node", "queues", "last_seen"]  # as a worker wrote it
    assert sorted(store.fleet.workers(5)) == ["w1", "w2", "w3"] and store.fleet.workers(5)["w3"].model_extra == {
        "gpu": "h100"
    }
    assert sorted(store.fleet.job_consumers("jobs", 5)) == ["w1", "w3"]
    store.fleet.set_draining("w1@h")
    assert store.fleet.is_draining("w1@h") and sorted(store.fleet.job_consumers("jobs", 5)) == ["w3"]
    store.fleet.set_draining("w1@h", False)
    assert not store.fleet.is_draining("w1@h") and "w1" in store.fleet.job_consumers("jobs", 5)
    store.fleet.gone("w1")
    assert "w1" not in store.fleet.workers(5)
    raw.rpush("depth-test", "m1", "m2")
    assert store.fleet.queue_depth("depth-test") == 2 and store.fleet.queue_depth("empty-test") == 0


def test_an_api_process_is_alive_while_its_heartbeat_lasts(store: Store) -> None:
    store.fleet.api_heartbeat("api-1", 0.05)
    store.fleet.api_heartbeat("api-2", 5)
    assert store.fleet.api_alive("api-1") and store.fleet.api_alive("api-2")
    time.sleep(0.1)
    assert not store.fleet.api_alive("api-1")
    store.fleet.api_gone("api-2")
    assert not store.fleet.api_alive("api-2")


def test_health_answers_and_counts_every_status(store: Store, raw: Any) -> None:
    assert store.health.ping()
    counts = store.health.status_counts()
    assert list(counts) == list(JOB_STATUSES) and all(v >= 0 for v in counts.values())
    away = Store(connect("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))
    with pytest.raises(STORE_ERRORS):
        away.health.ping()


def test_progress_is_one_shape_moved_from_stage_to_stage() -> None:
    p = Progress(epoch=2, epochs=5, fraction=0.4, eta_seconds=30.0, stage="training", metrics={"loss": 1.0})
    assert p.staged("requeued") == p.model_copy(update={"stage": "requeued"})
    done = p.staged("done", fraction=1.0, eta_seconds=0.0)
    assert (done.stage, done.fraction, done.eta_seconds, done.epoch) == ("done", 1.0, 0.0, 2)
    assert p.stage == "training"  # a new progress, not a changed one


# --------------------------------------------------------------------------------------------------
# Resolving a job to files: JobSpec.resolved
# --------------------------------------------------------------------------------------------------
def test_a_stored_job_resolves_to_files_in_one_call(tmp_path: Path) -> None:
    spec = parse_spec(DISTIL)
    weights, data = tmp_path / "weights.safetensors", tmp_path / "data.npz"
    run = spec.resolved(teacher_weights=weights, dataset_path=data, device="cpu", download=False)
    assert run.teacher is not None and run.teacher.weights == str(weights)
    assert run.teacher.id == DISTIL["teacher"]["id"]  # the reference stays, for the report
    assert (run.dataset.path, run.dataset.root, run.dataset.download) == (str(data), None, False)
    assert run.device == "cpu" and run.metadata == spec.metadata and run.hyperparameters == spec.hyperparameters
    assert spec.teacher is not None and spec.teacher.weights is None and spec.device == "auto"  # a copy
    assert run.resolved() == run  # nothing left to resolve


def test_the_device_of_the_job_wins_and_built_in_data_comes_from_the_root(tmp_path: Path) -> None:
    spec = parse_spec({"method": "at", "device": "cpu", "dataset": {"name": "cifar10", "download": True}})
    run = spec.resolved(data_root=tmp_path, device="cuda:1", download=False)
    assert (run.device, run.dataset.root, run.dataset.download) == ("cpu", str(tmp_path), False)


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"dataset_path": "x.npz"}, "teacher.weights"),  # the teacher is still only an id
        ({"teacher_weights": "w.safetensors"}, "dataset.path"),  # so is the custom dataset
    ],
)
def test_a_reference_left_unresolved_is_refused_by_field(given: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(DISTIL).resolved(**given)
    assert exc.value.field == field and "resolved" in exc.value.message


def test_paths_for_inputs_the_job_does_not_have_are_refused() -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec({"method": "at"}).resolved(teacher_weights="w.pt", dataset_path="x.npz")
    assert [f for f, _ in exc.value.errors] == ["teacher", "dataset.path"]
