"""The worker's parts, without a worker: the core's typed progress events become the job's progress
record and events exactly as the API shows them (worker/reporter.py), and what a run raised becomes the
job's error ``code`` through one table (worker/failures.py)."""

from __future__ import annotations

import errno
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from _workers import ServiceEnv

from gacd_core.errors import SpecError, TeacherLoadError, TeacherUnfitError
from gacd_core.progress import EpochCompleted, EvalProgress, Stage, StageChanged, TrainingStarted, TrainingStep
from gacd_core.spec import parse_spec
from service.state.records import JobRecord
from service.state.store import Store
from worker.failures import MAX_MESSAGE, job_error
from worker.lease import Lease
from worker.reporter import Reporter

pytestmark = [pytest.mark.unit]


@pytest.fixture(scope="module")
def store(start_service: Callable[..., ServiceEnv]) -> Store:
    return start_service("reporter").store


def _training(kind: type, **over: object) -> object:
    base: dict[str, object] = dict(
        epoch=1, epochs=2, step=0, steps_per_epoch=4, global_step=0, total_steps=8, loss=math.nan, parts={},
        lr=0.1, images_per_second=0.0, eta_seconds=math.nan,
    )  # fmt: skip
    return kind(**{**base, **over})


def test_the_stages_keep_the_names_users_see() -> None:
    assert [s.value for s in Stage] == [
        "loading data", "loading teacher", "checking teacher", "training", "exporting onnx",
        "evaluating student", "evaluating teacher", "structure", "compression", "writing report",
    ]  # fmt: skip
    assert {s: s.evaluates for s in Stage if s.evaluates} == {
        Stage.EVALUATING_STUDENT: "student",
        Stage.EVALUATING_TEACHER: "teacher",
    }


def test_each_event_type_becomes_the_progress_and_events_the_api_shows(store: Store) -> None:
    rec = JobRecord.queued(parse_spec({"method": "at", "hyperparameters": {"epochs": 2}}), "t", "q")
    assert store.jobs.create(rec, max_unfinished=10)
    token = store.leases.acquire(rec.id, 30)
    assert token is not None
    reporter = Reporter(store, rec.id, token, Lease(store, rec.id, token, 30, 10), rec.progress)
    record = {"epoch": 1, "loss": 1.2, "train_acc": 0.5, "val_clean_acc": 0.4, "val_pgd_acc": 0.2}

    reporter.progress(_training(TrainingStarted))
    stored = store.jobs.get(rec.id).progress
    assert (stored.stage, stored.epoch, stored.step, stored.fraction, stored.eta_seconds) == ("training", 0, 0, 0, None)
    assert stored.metrics.loss is None  # NaN before the first step is no figure
    step = _training(TrainingStep, step=2, global_step=2, loss=1.5, parts={"ce": 1.5}, images_per_second=99.0)
    reporter.progress(step)
    assert (reporter.last.step, reporter.last.fraction, reporter.last.metrics.loss) == (2, 0.25, 1.5)
    assert store.jobs.get(rec.id).progress.step == 0  # within a second of the last write: not written
    reporter.progress(_training(EpochCompleted, step=4, global_step=4, loss=1.2, record=record))
    stored = store.jobs.get(rec.id).progress
    assert (stored.epoch, stored.step, stored.metrics.train_acc, stored.metrics.val_pgd_acc) == (1, 0, 0.5, 0.2)

    reporter.progress(StageChanged(Stage.EXPORTING))
    assert store.jobs.get(rec.id).progress.stage == "exporting onnx"
    reporter.progress(StageChanged(Stage.EVALUATING_STUDENT))
    assert (reporter.last.stage, reporter.last.model) == ("evaluating", "student")
    reporter.progress(EvalProgress("pgd20", 0.25, 30.0, 10.0, model="student"))
    stored = store.jobs.get(rec.id).progress
    assert (stored.stage, stored.model, stored.attack, stored.fraction, stored.eta_seconds) == (
        "evaluating", "student", "pgd20", 0.25, 30.0,
    )  # fmt: skip
    reporter.progress(StageChanged(Stage.EVALUATING_STUDENT))  # the same stage again: no second event

    events, _ = store.events.read(rec.id)
    assert [(e.type, e.message) for e in events] == [
        ("epoch", "epoch 1/2: loss 1.2000, train acc 50.0%, val clean 40.0%, val pgd 20.0%"),
        ("stage", "exporting onnx"),
        ("stage", "evaluating student"),
    ]
    assert events[0].data == {
        "epoch": 1, "loss": 1.2, "lr": 0.1, "images_per_second": 0.0,
        "train_acc": 0.5, "val_clean_acc": 0.4, "val_pgd_acc": 0.2,
    }  # fmt: skip
    assert [e.data for e in events[1:]] == [{"stage": "exporting onnx"}, {"stage": "evaluating student"}]


def test_one_table_names_each_failure() -> None:
    root = Path("/store")
    unfit, logged = job_error(TeacherUnfitError("near chance", check={"clean_acc": 0.1}), root)
    assert unfit.model_dump() == {
        "code": "teacher_unfit", "message": "near chance", "field": "teacher", "check": {"clean_acc": 0.1},
    } and logged is None  # fmt: skip
    assert job_error(TeacherLoadError("bad keys", field="teacher.weights"), root)[0].code == "invalid_teacher"
    spec, _ = job_error(SpecError([("teacher.id", "gone")]), root)
    assert spec.model_dump() == {"code": "invalid_spec", "message": "teacher.id: gone", "field": "teacher.id"}

    full, logged = job_error(OSError(errno.ENOSPC, "No space left on device", "/store/t/out"), root)
    assert full.model_dump() == {
        "code": "storage_error", "message": "the artifact store is full (No space left on device: /store/t/out)",
        "field": None,
    } and logged == "job %s: storage error"  # fmt: skip
    other, _ = job_error(OSError(errno.EIO, "I/O error"), root)
    assert other.message == "storage error: [Errno 5] I/O error (I/O error: /store)"

    bug, logged = job_error(ValueError("x" * 3000), root)
    assert bug.code == "internal_error" and bug.message.startswith("the job failed: ValueError: xxx")
    assert len(bug.message) == MAX_MESSAGE and logged == "job %s failed"
