"""The API's public shapes (after the full-stack FastAPI template: ``XCreate`` / ``XPublic`` / ``XList``).

Stored records carry more than users see (the tenant, file paths inside the artifact store); the
``public_*`` functions are the one place that decides what leaves the service.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _example(example: dict[str, Any]) -> ConfigDict:
    """The config of a public shape: unknown record fields ignored, ``example`` shown in the OpenAPI."""
    return ConfigDict(extra="ignore", json_schema_extra={"example": example})


# --- teachers ----------------------------------------------------------------------------------------
class TeacherFromJob(BaseModel):
    """Register the student of a finished job of yours as a teacher."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"source_job_id": "job_0123456789abcdef01234567"}}
    )

    source_job_id: str = Field(..., description="a succeeded job whose student becomes the teacher")
    name: str | None = Field(None, max_length=200)
    allow_weak: bool = Field(False, description="keep the teacher even when its accuracy check finds it near chance")


class TeacherPublic(_Out):
    model_config = _example(
        {
            "id": "tch_5f0c2a9e41d7b3a8c6e19f02",
            "object": "teacher",
            "name": "resnet18 PGD-AT",
            "arch": "resnet18",
            "num_classes": 10,
            "dataset": "cifar10",
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
            "normalization": {"name": "none", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "source": "default"},
            "allow_weak": False,
            "checks": {
                "cifar10": {
                    "dataset": "cifar10",
                    "verdict": "fit",
                    "clean_acc": 0.842,
                    "clean_subset": 500,
                    "pgd20_acc": 0.53,
                    "pgd20_subset": 100,
                    "chance": 0.1,
                    "threshold": 0.2,
                    "alternatives": [{"name": "cifar10", "clean_acc": 0.31}],
                    "better_normalization": None,
                }
            },
            "warning": None,
            "sha256": "9b1c...e4",
            "bytes": 44787136,
            "status": "ready",
            "error": None,
            "error_code": None,
            "source_job_id": None,
            "created_at": "2026-11-24T10:00:00.000Z",
        }
    )

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
    checks: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per dataset: the teacher check's clean and PGD-20 accuracy with their subset sizes, "
        "the threshold, the verdict, and the accuracy under other common normalisations",
    )
    warning: str | None = Field(None, description="e.g. another normalisation scores clearly higher")
    sha256: str
    bytes: int
    status: Literal["validating", "ready", "invalid"]
    error: str | None = None
    error_code: str | None = Field(None, description="stable code of the error: teacher_unfit, invalid_weights, ...")
    source_job_id: str | None = None
    created_at: str


class TeacherList(_Out):
    model_config = _example({"object": "list", "data": [], "has_more": False, "next_after": None})

    object: Literal["list"] = "list"
    data: list[TeacherPublic]
    has_more: bool
    next_after: str | None = None


# --- datasets ----------------------------------------------------------------------------------------
class DatasetPublic(_Out):
    model_config = _example(
        {
            "id": "ds_0a1b2c3d4e5f60718293a4b5",
            "object": "dataset",
            "builtin": False,
            "name": "my-parts",
            "status": "ready",
            "error": None,
            "num_classes": 12,
            "class_names": ["bolt", "nut"],
            "train_size": 24000,
            "test_size": 4000,
            "image_size": 64,
            "sha256": "1f3e...9a",
            "bytes": 310378100,
            "format": "npz",
            "created_at": "2026-11-24T10:00:00.000Z",
        }
    )

    id: str
    object: Literal["dataset"] = "dataset"
    builtin: bool
    name: str
    status: Literal["available", "missing", "validating", "ready", "invalid"]
    error: str | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    train_size: int | None = None
    test_size: int | None = None
    image_size: int | None = None
    sha256: str | None = None
    bytes: int | None = None
    format: str | None = None
    created_at: str | None = None


class DatasetList(_Out):
    model_config = _example(
        {
            "object": "list",
            "data": [
                {
                    "id": "cifar10",
                    "object": "dataset",
                    "builtin": True,
                    "name": "cifar10",
                    "status": "available",
                    "num_classes": 10,
                    "train_size": 50000,
                    "test_size": 10000,
                    "image_size": 32,
                }
            ],
        }
    )

    object: Literal["list"] = "list"
    data: list[DatasetPublic]


# --- jobs --------------------------------------------------------------------------------------------
class Progress(_Out):
    epoch: int = 0
    epochs: int = 0
    fraction: float = 0.0
    eta_seconds: float | None = None
    stage: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


class ArtifactPublic(_Out):
    name: str
    bytes: int
    sha256: str


class JobPublic(_Out):
    model_config = _example(
        {
            "id": "job_8d2f0e6b1a9c4d3e5f708192",
            "object": "job",
            "status": "running",
            "created_at": "2026-11-24T10:00:00.000Z",
            "started_at": "2026-11-24T10:00:02.000Z",
            "finished_at": None,
            "spec": {
                "method": "gacd",
                "teacher": {"id": "tch_5f0c2a9e41d7b3a8c6e19f02"},
                "student": {"arch": "mobilenetv2"},
            },
            "metadata": {"experiment": "mobile-v1"},
            "progress": {
                "epoch": 12,
                "epochs": 100,
                "fraction": 0.12,
                "eta_seconds": 5280.0,
                "stage": "training",
                "metrics": {"loss": 1.93, "train_acc": 0.41, "images_per_second": 2150.0},
            },
            "error": None,
            "artifacts": [],
            "attempts": 1,
        }
    )

    id: str
    object: Literal["job"] = "job"
    status: Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    spec: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)
    progress: Progress
    error: dict[str, Any] | None = None
    artifacts: list[ArtifactPublic] = Field(default_factory=list)
    attempts: int = 0


class JobList(_Out):
    model_config = _example(
        {
            "object": "list",
            "has_more": True,
            "next_after": "job_8d2f0e6b1a9c4d3e5f708192",
            "data": [{"id": "job_8d2f0e6b1a9c4d3e5f708192", "object": "job", "status": "succeeded", "...": "..."}],
        }
    )

    object: Literal["list"] = "list"
    data: list[JobPublic]
    has_more: bool
    next_after: str | None = None


class EventPublic(_Out):
    id: str
    created_at: str | None
    level: str
    type: str
    message: str
    data: dict[str, Any]


class EventList(_Out):
    model_config = _example(
        {
            "object": "list",
            "has_more": False,
            "data": [
                {
                    "id": "1795515821993-0",
                    "created_at": "2026-11-24T10:00:00.000Z",
                    "level": "info",
                    "type": "queued",
                    "message": "gacd job queued",
                    "data": {"method": "gacd"},
                },
                {
                    "id": "1795515829451-0",
                    "created_at": "2026-11-24T10:03:10.000Z",
                    "level": "info",
                    "type": "epoch",
                    "message": "epoch 1/100: loss 2.4100, train acc 28.0%",
                    "data": {"epoch": 1, "loss": 2.41},
                },
            ],
        }
    )

    object: Literal["list"] = "list"
    data: list[EventPublic]
    has_more: bool


class ArtifactList(_Out):
    model_config = _example(
        {
            "object": "list",
            "data": [
                {"name": "student.safetensors", "bytes": 9218392, "sha256": "c4fa...01"},
                {"name": "student.onnx", "bytes": 9301718, "sha256": "5be2...9c"},
                {"name": "report.json", "bytes": 48211, "sha256": "77d0...3b"},
            ],
        }
    )

    object: Literal["list"] = "list"
    data: list[ArtifactPublic]


class Health(_Out):
    model_config = _example({"status": "ready", "checks": {"redis": "ok", "workers": 2}})

    status: str
    checks: dict[str, Any] = Field(default_factory=dict)


# --- record -> public ----------------------------------------------------------------------------------
def public_teacher(rec: dict[str, Any]) -> dict[str, Any]:
    return TeacherPublic.model_validate(rec).model_dump()


def public_dataset(rec: dict[str, Any]) -> dict[str, Any]:
    return DatasetPublic.model_validate({**rec, "builtin": False}).model_dump()


def public_job(rec: dict[str, Any]) -> dict[str, Any]:
    return JobPublic.model_validate(rec).model_dump()
