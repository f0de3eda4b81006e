"""What the API and the workers share: typed records through a real Redis store, and a job specification
resolved to files in one call."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _workers import ServiceEnv
from pydantic import ValidationError

from gacd_core.errors import SpecError
from gacd_core.spec import JobSpec, parse_spec
from service.api.schemas import JobPublic, TeacherPublic
from service.state.records import JobRecord, Progress, TeacherRecord, new_id, now_iso
from service.state.settings import Settings
from service.state.store import Store

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
def store(start_service: Callable[..., ServiceEnv]) -> Store:
    return start_service("state").store


def _teacher(tenant: str = "t") -> TeacherRecord:
    return TeacherRecord(
        id=new_id("tch"), tenant=tenant, name="t", arch="tiny_resnet", dataset="cifar10", sha256="0" * 64,
        bytes=10, status="validating", file="t/teachers/x/weights.pt", created_at=now_iso(),
    )  # fmt: skip


def test_a_job_record_reads_back_as_written_with_its_spec_whole(store: Store) -> None:
    spec = parse_spec(DISTIL)
    rec = JobRecord.queued(spec, "t", "q", spec.teacher and spec.teacher.id, spec.dataset.id)
    assert store.create_job(rec, max_unfinished=10)
    back = store.get(JobRecord, rec.id)
    assert back == rec and isinstance(back.spec, JobSpec) and back.spec.metadata == {"run": "r1", "n": 2}
    assert back.progress == Progress(epochs=3, stage="queued")
    # the public shape is the one the API always had: the specification without its metadata, beside it
    public = JobPublic.of(back).model_dump(mode="json")
    assert public["metadata"] == {"run": "r1", "n": 2} and "metadata" not in public["spec"]
    assert public["spec"]["teacher"]["id"] == DISTIL["teacher"]["id"] and "tenant" not in public
    assert store.get(JobRecord, rec.id, tenant="someone else") is None
    assert store.get(TeacherRecord, rec.id) is None  # an id names one kind of record


def test_a_job_stored_before_specs_were_kept_whole_still_reads(store: Store) -> None:
    spec = parse_spec(DISTIL)
    rec = JobRecord.queued(spec, "t", "q")
    old = {**rec.model_dump(mode="json"), "metadata": spec.metadata}
    old["spec"] = {k: v for k, v in old["spec"].items() if k != "metadata"}
    store.r.hset(store.k_rec(rec.id), mapping={k: json.dumps(v) for k, v in old.items()})
    back = store.get(JobRecord, rec.id)
    assert back is not None and back.spec == spec and back.queue == "q"


def test_a_job_whose_record_no_longer_reads_fails_instead_of_waiting_forever(store: Store, tmp_path: Path) -> None:
    from worker.runner import JobRunner

    rec = JobRecord.queued(parse_spec({"method": "at"}), "t", "q")
    assert store.create_job(rec, max_unfinished=10)
    store.r.hset(store.k_rec(rec.id), "spec", json.dumps({"method": "at", "renamed_field": 1}))
    JobRunner(store, Settings(artifact_root=tmp_path), "w").run(rec.id)  # no lease taken, nothing run
    assert store.get_status(rec.id) == "failed"
    error = json.loads(store.r.hget(store.k_rec(rec.id), "error"))
    assert error["code"] == "invalid_spec" and "spec.renamed_field" in error["message"]


def test_updates_are_checked_against_the_record(store: Store) -> None:
    teacher = _teacher()
    store.create(teacher)
    store.update(teacher.id, {"status": "ready", "checks": {"cifar10": {"clean_acc": 0.5}}})
    back = store.get(TeacherRecord, teacher.id)
    assert back is not None and back.status == "ready" and back.checks["cifar10"]["clean_acc"] == 0.5
    with pytest.raises(KeyError, match="no field 'colour'"):
        store.update(teacher.id, {"status": "invalid", "colour": "red"})
    with pytest.raises(ValidationError):
        store.update(teacher.id, {"status": "lost"})
    assert store.get_status(teacher.id) == "ready"  # a refused update writes nothing
    assert TeacherPublic.of(back).model_dump().keys() == TeacherPublic.model_fields.keys()  # no file, no tenant


def test_listing_is_typed_newest_first_and_per_tenant(store: Store) -> None:
    mine = [_teacher("lister") for _ in range(3)]
    for rec in mine:
        store.create(rec)
    store.create(_teacher("other"))
    page = store.list_records(TeacherRecord, "lister", limit=2)
    assert [r.id for r in page.data] == [mine[2].id, mine[1].id] and page.has_more
    rest = store.list_records(TeacherRecord, "lister", limit=2, after=page.next_after)
    assert [r.id for r in rest.data] == [mine[0].id] and not rest.has_more


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
