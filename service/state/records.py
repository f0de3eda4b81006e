"""The records the store keeps, one typed model per stored thing: a job, a teacher, a dataset.

Each record has a public part (``JobBase``, ``TeacherBase``, ``DatasetBase``: what a user may see of
it, which the API's response models derive from) and the service's own fields on top (the tenant,
file paths inside the artifact store, the queue a job was sent to). Records are written and read only
through :class:`service.state.store.Store`, one JSON value per field of a Redis hash, so a record read
back is validated against the same model that wrote it. Unknown stored fields are ignored, so records
written by an older version still read.

Torch-free: the API and the workers both import this module.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from gacd_core.spec import AnyJobSpec, JobSpec

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
TERMINAL: tuple[str, ...] = ("succeeded", "failed", "cancelled")
UploadStatus = Literal["validating", "ready", "invalid"]
# A time as now_iso() writes it; the documents say so (``format: date-time``), the value stays the string.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    """``job_``/``tch_``/``ds_`` followed by 24 random hex digits."""
    assert prefix in RECORD_TYPES
    return f"{prefix}_{secrets.token_hex(12)}"


def valid_id(value: str, prefix: str) -> bool:
    """Whether ``value`` is an id as :func:`new_id` makes them, of the kind ``prefix``."""
    rest = value[len(prefix) + 1 :]
    return value.startswith(prefix + "_") and len(rest) == 24 and all(c in "0123456789abcdef" for c in rest)


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Record(_Shape):
    """What every stored record has: an id that carries its kind, and the tenant it belongs to."""

    prefix: ClassVar[str]  # the kind in the id: job, tch, ds
    noun: ClassVar[str]  # the kind in messages: job, teacher, dataset

    id: str
    tenant: str


# --- jobs --------------------------------------------------------------------------------------------
class ProgressMetrics(_Shape):
    """The latest figures of a running job: while training, the step's loss (and its named parts, such as
    ``ce`` or ``nce``), learning rate and throughput, and the epoch's accuracies; once it succeeded, the
    protocol's accuracies (``clean_acc``, ``pgd20_acc``, ...). Every value is a number or null."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, float | None] = Field(init=False)

    loss: float | None = None
    lr: float | None = None
    images_per_second: float | None = None
    train_acc: float | None = None
    val_clean_acc: float | None = None
    val_pgd_acc: float | None = None


class JobError(_Shape):
    """Why a job failed: a stable ``code`` (``invalid_spec``, ``worker_lost``, ``teacher_unfit``, ...), a
    readable ``message``, where one input is to blame its ``field``, and for ``teacher_unfit`` the
    teacher check's figures (``check``, as on a teacher's ``checks``)."""

    # extra fields are kept as written (``check``, and what a newer worker adds), absent when not written
    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    field: str | None = None


class Progress(_Shape):
    """How far a job has got: epochs, the fraction done, the time left, the stage and the latest metrics."""

    # The one shape of a job's progress: written when the job is queued, by its worker while it runs
    # (worker/runner.py) and by the reaper when its worker is lost.

    epoch: int = Field(0, description="epochs completed")
    epochs: int = 0
    step: int | None = Field(None, description="training: steps done in the epoch under way")
    steps_per_epoch: int | None = None
    fraction: float = Field(0.0, description="training: of all training steps; evaluating: of the evaluation")
    eta_seconds: float | None = Field(None, description="seconds left in the current stage (training or evaluating)")
    stage: str | None = Field(
        None, description="queued, starting, loading data, training, evaluating, ..., done (requeued when handed on)"
    )
    model: str | None = Field(None, description="evaluating: the model under evaluation (student or teacher)")
    attack: str | None = Field(None, description="evaluating: the attack running now (clean, pgd20, autoattack/...)")
    metrics: ProgressMetrics = Field(default_factory=ProgressMetrics)

    def staged(self, stage: str, **changes: Any) -> Progress:
        """This progress at ``stage``, with ``changes`` to its other fields (validated, as a new one is)."""
        return self.model_validate({**self.model_dump(), "stage": stage, **changes})


class Artifact(_Shape):
    """One output file of a job, as listed when it succeeded."""

    name: str
    bytes: int
    sha256: str


class JobBase(_Shape):
    """The part of a job a user may see (the specification aside: the API shows it as submitted)."""

    id: str
    object: Literal["job"] = "job"
    status: JobStatus
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    progress: Progress
    error: JobError | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    attempts: int = 0


class JobRecord(JobBase, Record):
    """A stored job: its whole specification as submitted (the teacher and a custom dataset named by
    their ids, resolved only on the worker), the ids it uses, and where it runs."""

    prefix: ClassVar[str] = "job"
    noun: ClassVar[str] = "job"

    spec: AnyJobSpec  # the variant of its method
    teacher_id: str | None = None
    dataset_id: str | None = None
    queue: str | None = Field(None, description="the queue it was sent to (None: recorded before jobs kept it)")
    worker: str | None = Field(None, description="the worker that last started it")

    @model_validator(mode="before")
    @classmethod
    def _whole_spec(cls, data: Any) -> Any:
        # Records written before the specification was stored whole kept its metadata beside it.
        if isinstance(data, dict) and "metadata" in data and isinstance(data.get("spec"), dict):
            data = {**data, "spec": {"metadata": data["metadata"], **data["spec"]}}
        return data

    @classmethod
    def queued(
        cls, spec: JobSpec, tenant: str, queue: str, teacher_id: str | None = None, dataset_id: str | None = None
    ) -> JobRecord:
        """A new job, as it enters the queue."""
        return cls(
            id=new_id(cls.prefix),
            tenant=tenant,
            status="queued",
            created_at=now_iso(),
            spec=spec,
            progress=Progress(epochs=spec.hyperparameters.epochs, stage="queued"),
            teacher_id=teacher_id,
            dataset_id=dataset_id,
            queue=queue,
        )


# --- teachers ----------------------------------------------------------------------------------------
class TeacherBase(_Shape):
    """The part of a teacher a user may see."""

    id: str
    object: Literal["teacher"] = "teacher"
    name: str
    arch: str
    num_classes: int | None = Field(None, description="read from the classifier's shape when not given")
    dataset: str
    mean: list[float] | None = None
    std: list[float] | None = None
    normalization_requested: str | None = Field(None, description="the upload's normalization field, if any")
    normalization: dict[str, Any] | None = Field(
        None,
        description="{name, mean, std, source}: the input normalisation used and where it came from (file, "
        "user, default); set by validation",
    )
    allow_weak: bool = False
    source: str | None = Field(
        None,
        description="where the architecture comes from: timm:<name>, torchvision:<name> or a RobustBench entry "
        "(absent: our registry); set by validation",
    )
    input_size: int | None = Field(
        None, description="the input side the model is built for (other sides are resized inside it)"
    )
    licence: str | None = Field(None, description="the licence the RobustBench entry declares for its weights")
    licence_note: str | None = None
    non_commercial: bool = Field(False, description="the weights' licence forbids commercial use")
    checks: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per dataset: the teacher check's clean and PGD-20 accuracy with their subset sizes, "
        "the threshold, the verdict, and the accuracy under other common normalisations",
    )
    warning: str | None = Field(None, description="e.g. another normalisation scores clearly higher")
    sha256: str
    bytes: int
    status: UploadStatus
    error: str | None = None
    error_code: str | None = Field(None, description="stable code of the error: teacher_unfit, invalid_weights, ...")
    source_job_id: str | None = None
    created_at: Timestamp


class TeacherRecord(TeacherBase, Record):
    """A stored teacher: the public part and its weights file."""

    prefix: ClassVar[str] = "tch"
    noun: ClassVar[str] = "teacher"

    file: str = Field(description="the weights, relative to the artifact store")


# --- datasets ----------------------------------------------------------------------------------------
class DatasetBase(_Shape):
    """The part of a dataset a user may see (built-in datasets have this shape too, without a record)."""

    id: str
    object: Literal["dataset"] = "dataset"
    builtin: bool = False
    name: str
    status: str
    error: str | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    train_size: int | None = None
    test_size: int | None = None
    image_size: int | None = None
    sha256: str | None = None
    bytes: int | None = None
    format: str | None = None
    created_at: Timestamp | None = None


class DatasetRecord(DatasetBase, Record):
    """A stored custom dataset: the public part, the uploaded file, and what validation found."""

    prefix: ClassVar[str] = "ds"
    noun: ClassVar[str] = "dataset"

    status: UploadStatus
    file: str = Field(description="the upload, relative to the artifact store")
    path: str | None = Field(None, description="what jobs read (the .npz, or the unpacked folder); set by validation")
    mean: list[float] | None = None
    std: list[float] | None = None


RECORD_TYPES: dict[str, type[Record]] = {t.prefix: t for t in (JobRecord, TeacherRecord, DatasetRecord)}


# --- beside the records: events, idempotency claims, heartbeats --------------------------------------
class JobEvent(_Shape):
    """One event of a job's stream, as the store reads it back (the API shows it as it is)."""

    id: str = Field(description="the stream id, which orders the events")
    created_at: Timestamp | None = None
    level: str = "info"
    type: str = ""
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class IdempotencyClaim(_Shape):
    """What an ``Idempotency-Key`` was first used for: the body's digest and the job it created."""

    body: str
    job_id: str


class WorkerBeat(_Shape):
    """A worker's heartbeat. Fields a newer worker adds are kept; ``queues`` is None in the heartbeat of
    a worker older than the field (it consumed the job queue)."""

    model_config = ConfigDict(extra="allow")

    # in the order the worker writes them, so that a heartbeat is stored as it always was
    device: str | None = None
    pid: int | None = None
    host: str | None = None
    node: str | None = Field(None, description="the Celery node name (what gacd drain takes)")
    queues: list[str] | None = None
    last_seen: float = Field(0.0, description="time.time() of the beat, set by the store")
