"""The API's public shapes (after the full-stack FastAPI template: ``XCreate`` / ``XPublic`` / ``XList``).

Stored records carry more than users see (the tenant, file paths inside the artifact store); the
``public_*`` functions are the one place that decides what leaves the service.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.store import TERMINAL


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- teachers ----------------------------------------------------------------------------------------
class TeacherFromJob(BaseModel):
    """Register the student of a finished job of yours as a teacher."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"source_job_id": "job_0123456789abcdef01234567"}}
    )

    source_job_id: str = Field(..., description="a succeeded job whose student becomes the teacher")
    name: str | None = Field(None, max_length=200)


class TeacherPublic(_Out):
    id: str
    object: Literal["teacher"] = "teacher"
    name: str
    arch: str
    num_classes: int
    dataset: str
    mean: list[float] | None = None
    std: list[float] | None = None
    sha256: str
    bytes: int
    status: Literal["validating", "ready", "invalid"]
    error: str | None = None
    source_job_id: str | None = None
    created_at: str


class TeacherList(_Out):
    object: Literal["list"] = "list"
    data: list[TeacherPublic]
    has_more: bool
    next_after: str | None = None


# --- datasets ----------------------------------------------------------------------------------------
class DatasetPublic(_Out):
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
    object: Literal["list"] = "list"
    data: list[EventPublic]
    has_more: bool


class ArtifactList(_Out):
    object: Literal["list"] = "list"
    data: list[ArtifactPublic]


class Health(_Out):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)


# --- record -> public ----------------------------------------------------------------------------------
def public_teacher(rec: dict[str, Any]) -> dict[str, Any]:
    return TeacherPublic.model_validate(rec).model_dump()


def public_dataset(rec: dict[str, Any]) -> dict[str, Any]:
    return DatasetPublic.model_validate({**rec, "builtin": False}).model_dump()


def public_job(rec: dict[str, Any]) -> dict[str, Any]:
    return JobPublic.model_validate(rec).model_dump()


def is_terminal(rec: dict[str, Any]) -> bool:
    return rec.get("status") in TERMINAL
