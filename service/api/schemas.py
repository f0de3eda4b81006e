"""The API's public shapes (after the full-stack FastAPI template: ``XCreate`` / ``XPublic`` / ``XList``).

Stored records (:mod:`service.state.records`) carry more than users see (the tenant, file paths inside
the artifact store). Each ``XPublic`` derives from the record's public part ``XBase``, so a record and
its response have one shape, and ``XPublic.of(record)`` is the one place that decides what leaves the
service.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from gacd_core import zoo
from gacd_core.spec import MetadataValue
from service.api.contract import NOT_OVER_HTTP, NOT_YET_OVER_HTTP, WHERE_GIVEN
from service.state.records import (
    Artifact,
    DatasetBase,
    DatasetRecord,
    JobBase,
    JobRecord,
    TeacherBase,
    TeacherRecord,
    Timestamp,
)

# The job specification over HTTP: the request body of POST /v1/jobs, the core's job variants with the
# teacher and a custom dataset named by id (service.api.contract). A field typed so is documented as a
# reference to that component (service.api.openapi puts it in). What a stored job shows leaves out the
# fields HTTP never takes (NOT_OVER_HTTP: files on the machine that runs it).
JOB_CREATE = WithJsonSchema({"x-component": "JobCreate"})


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _example(example: dict[str, Any]) -> ConfigDict:
    """The config of a public shape: unknown record fields ignored, ``example`` shown in the OpenAPI."""
    return ConfigDict(extra="ignore", json_schema_extra={"example": example})


# --- teachers ----------------------------------------------------------------------------------------
class TeacherFromJob(BaseModel):
    """How to register the student of a succeeded job of yours as a teacher (every field optional)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"name": "mobile teacher"}})

    name: str | None = Field(None, max_length=200, description="default: the method, architecture and job")
    allow_weak: bool = Field(False, description="keep the teacher even when its accuracy check finds it near chance")


class LegacyTeacherFromJob(TeacherFromJob):
    """The JSON body ``POST /v1/teachers`` takes (undocumented, from before ``createTeacherFromJob``)."""

    source_job_id: str = Field(..., description="a succeeded job whose student becomes the teacher")


class TeacherPublic(TeacherBase):
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

    @classmethod
    def of(cls, rec: TeacherRecord) -> TeacherPublic:
        """What a user sees of a stored teacher."""
        return cls.model_validate(rec, from_attributes=True)


class TeacherList(_Out):
    model_config = _example({"object": "list", "data": [], "has_more": False, "next_after": None})

    object: Literal["list"] = "list"
    data: list[TeacherPublic]
    has_more: bool
    next_after: str | None = None


# --- datasets ----------------------------------------------------------------------------------------
class DatasetPublic(DatasetBase):
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

    builtin: bool
    status: Literal["available", "missing", "validating", "ready", "invalid"]

    @classmethod
    def of(cls, rec: DatasetRecord) -> DatasetPublic:
        """What a user sees of a stored (custom) dataset."""
        return cls.model_validate(rec, from_attributes=True)


class DataFolder(_Out):
    """A folder of yours under the data roots: its format, classes and images per split (counted from
    the names; cached until a split or class folder changes)."""

    object: Literal["data_folder"] = "data_folder"
    name: Literal["imagefolder", "shards"] = Field(description="its format: the dataset.name a job gives")
    path: str = Field(description="the dataset.path a job gives")
    status: Literal["available", "invalid"]
    error: str | None = None
    num_classes: int | None = None
    train_size: int | None = None
    test_size: int | None = None
    test_split: str | None = Field(None, description="the folder the evaluation reads: test, or val")


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
    folders: list[DataFolder] = Field(
        default_factory=list,
        description="your folders under the data roots (GACD_DATA_ROOTS), named in a job as "
        '{"name": <format>, "path": <path>}; listed where the API sees the roots',
    )


# --- models ------------------------------------------------------------------------------------------
ModelSource = Literal["registry", "timm", "torchvision", "robustbench"]
ModelRole = Literal["teacher", "student"]


class ModelNormalization(zoo.Normalization):
    """The input normalisation of a RobustBench entry, from the committed zoo table (RobustBench at
    ``source_commit``). ``applied``: where RobustBench applies it: ``model`` (inside the network's
    forward), ``wrapper`` (a layer in front of a torchvision or timm model), ``none`` (pixels in [0, 1]
    as they are), ``per_image`` (per-sample standardisation) or ``unknown``. A job uses these numbers for
    the entry (its checkpoint files may carry none)."""


class ModelPreprocessing(zoo.Preprocessing):
    """A RobustBench entry's evaluation preprocessing before the model: ``preset`` is RobustBench's name
    where the entry declares one; ``resize_mode`` ``shorter_side`` keeps the aspect ratio, ``exact``
    resizes to ``resize`` x ``resize``; ``crop`` is a centre crop."""


class ModelLeaderboard(zoo.Leaderboard):
    """The entry's RobustBench leaderboard record (accuracies in percent) and its paper."""


class ModelWeights(zoo.Weights):
    """Where RobustBench gets the entry's weights (Google Drive file ids, a release url or torchvision's
    own); download the file and upload it, or name it in a job run by the command line."""


class ModelPublic(_Out):
    """An architecture a job's student or teacher, or a teacher upload, may name (``arch``); RobustBench
    entries this project cannot build are listed too, with ``covered: false`` and the reason."""

    model_config = _example(
        {
            "name": "robustbench:cifar10/Linf/Wang2023Better_WRN-28-10",
            "object": "model",
            "source": "robustbench",
            "description": "WideResNet-28-10, cifar10 8/255: clean 92.44%, AutoAttack 67.31% (MIT)",
            "covered": True,
            "not_covered_reason": None,
            "usable_as": ["teacher", "student"],
            "dataset": "cifar10",
            "threat": "Linf",
            "entry": "Wang2023Better_WRN-28-10",
            "num_classes": 10,
            "input_size": [3, 32, 32],
            "normalization": {
                "mean": [0.4914, 0.4822, 0.4465],
                "std": [0.2471, 0.2435, 0.2616],
                "applied": "model",
                "note": "applied in forward() from non-persistent buffers",
            },
            "licence": "MIT",
            "source_commit": "78fcc9e48a07a861268f295a777b975f25155964",
        }
    )

    name: str = Field(description="what a job or an upload gives as arch")
    object: Literal["model"] = "model"
    source: ModelSource = Field(
        description="registry: this project's own; timm or torchvision: that library's model, built with random "
        "weights (your file supplies them); robustbench: an entry of RobustBench's model zoo"
    )
    description: str
    covered: bool = Field(
        description="whether a job or an upload accepts it (false: a RobustBench entry this project cannot build)"
    )
    not_covered_reason: str | None = None
    usable_as: list[ModelRole] = Field(description="the roles a job accepts it in")
    dataset: zoo.Dataset | None = Field(None, description="the dataset a RobustBench entry was trained on")
    threat: zoo.Threat | None = None
    entry: str | None = Field(None, description="the RobustBench entry's name (its paper key)")
    family: str | None = Field(None, description="the kind of network a RobustBench entry is built as")
    num_classes: int | None = Field(None, description="fixed by a RobustBench entry; otherwise the job's dataset's")
    input_size: list[int] | None = Field(
        None, description="channels, height, width of a RobustBench entry's input; otherwise the job's images'"
    )
    normalization: ModelNormalization | None = Field(
        None,
        description="a RobustBench entry's, from the zoo table; otherwise the job's (a student: its dataset's "
        "preset; a teacher: its file's or its upload's)",
    )
    preprocessing: ModelPreprocessing | None = None
    leaderboard: ModelLeaderboard | None = None
    weights: ModelWeights | None = None
    licence: str | None = Field(None, description="the licence of a RobustBench entry's weights")
    licence_note: str | None = None
    source_commit: str | None = Field(None, description="the RobustBench commit the entry's record was read at")


class ModelList(_Out):
    model_config = _example(
        {
            "object": "list",
            "data": [
                {
                    "name": "resnet18",
                    "object": "model",
                    "source": "registry",
                    "description": "ResNet-18, CIFAR stem (3x3 conv, no max-pool); 11.2M parameters at 10 classes",
                    "covered": True,
                    "usable_as": ["teacher", "student"],
                }
            ],
        }
    )

    object: Literal["list"] = "list"
    data: list[ModelPublic]


# --- jobs --------------------------------------------------------------------------------------------
class JobPublic(JobBase):
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

    # the job specification as submitted, every default written out (its metadata beside it)
    spec: Annotated[dict[str, Any], JOB_CREATE]
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)

    @classmethod
    def of(cls, rec: JobRecord) -> JobPublic:
        """What a user sees of a stored job: its specification as submitted, with the metadata beside it."""
        spec = rec.spec.public_dict()
        metadata = spec.pop("metadata", {})
        for part in NOT_YET_OVER_HTTP:
            spec.pop(part, None)
        for part, names in NOT_OVER_HTTP.items():
            if isinstance(spec.get(part), dict):
                for name in names:
                    spec[part].pop(name, None)
        for part, names in WHERE_GIVEN.items():
            if isinstance(spec.get(part), dict):
                for name in names:
                    if spec[part].get(name) is None:
                        spec[part].pop(name, None)
        shared = {name: getattr(rec, name) for name in JobBase.model_fields}
        return cls.model_validate({**shared, "spec": spec, "metadata": metadata})


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
    id: str = Field(pattern=r"^[0-9]+-[0-9]+$", description="the event's id: pass it as `after` to read on from it")
    created_at: Timestamp | None
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
    data: list[Artifact]


class Health(_Out):
    model_config = _example({"status": "ready", "checks": {"redis": "ok", "workers": 2}})

    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
