"""The job specification as the HTTP API takes it: ``JobCreate``, made from the core's job variants.

A job submitted over HTTP is the core's :class:`~gacd_core.spec.JobSpec` variant of its method
(:data:`gacd_core.spec.JOB_SPECS`) with the two parts that name files swapped for what a client names:
the teacher by its id (:class:`TeacherRef`: ``id`` required, with its pattern; no ``weights``) and a
custom dataset by its id (:class:`DatasetRef`: ``id`` with its pattern; no ``root`` or ``path``). Each
HTTP variant subclasses its core variant, so the job validated here is the job the worker runs, and
``JobCreate`` is their union, discriminated by ``method`` (``gacd`` when absent).

A request is validated once, by :func:`parse_job`, strictly: no ``"5"`` for 5, no ``1`` for true (a
JSON number without a fraction, ``5.0``, is an integer, as JSON Schema says). The JSON Schema pydantic
generates for ``JobCreate`` is the OpenAPI document's (:mod:`service.api.openapi` puts it in the
components): closed sets are enums of the catalog, bounds and patterns are the fields' own, who needs
a teacher and which parameters a method takes are its variant's. What a schema cannot state is
checked by the same validation, answered 422 ``invalid_spec`` with ``field`` naming the rule, and said
in ``JobCreate``'s description (:data:`CROSS_FIELD`).
"""

from __future__ import annotations

import re
from typing import Any, cast

from pydantic import ConfigDict, Field, create_model, model_validator
from pydantic.json_schema import SkipJsonSchema

from gacd_core.catalog import STREAMED
from gacd_core.spec import JOB_SPECS, DatasetSpec, JobParser, JobSpec, ResourcesSpec, TeacherSpec, hidden_fields

COMPONENTS = "#/components/schemas/"
MAX_DATA_PATH = 1024  # characters of a dataset folder's path
ID_PATTERNS = {prefix: f"^{prefix}_[0-9a-f]{{24}}$" for prefix in ("job", "tch", "ds")}

CROSS_FIELD = (
    "Rules between fields are checked with the rest (422 `invalid_spec`, `field` naming the rule): "
    "a normalisation preset, or values that agree with it; `val_size` below `train_subset`; "
    "`evaluation.split: val` needs `val_size`; `warmup_epochs` below `epochs`; milestones increasing; "
    "the contrastive parameters' combinations (across tasks `lambda_kd` 0 and no `hard` reweighting; "
    "`attack: ce` without `attack_ce_weight`); `dataset.preprocessing`'s ranges low to high, its `size` the "
    "`center_crop`'s, `center_crop` at most `resize`. A teacher or a custom dataset must be yours and ready; "
    "an `imagefolder` or `shards` path a folder of yours under the data roots (relative, no `..`; 422 "
    "`dataset_path_forbidden`, 404 `dataset_not_found`, 422 `dataset_invalid`)."
)


def _both_or_neither(a: str, b: str) -> dict[str, Any]:
    """JSON Schema for 'give ``a`` and ``b`` together' (the core checks it: gacd_core.normalization)."""
    given = {name: {"properties": {name: {"type": "array"}}, "required": [name]} for name in (a, b)}
    return {"allOf": [{"if": given[a], "then": given[b]}, {"if": given[b], "then": given[a]}]}


class TeacherRef(TeacherSpec):
    """A teacher of yours, named by its id (``POST /v1/teachers``), ready."""

    model_config = ConfigDict(json_schema_extra=_both_or_neither("mean", "std"))

    weights: SkipJsonSchema[None] = None  # the worker's business
    id: str = Field(pattern=ID_PATTERNS["tch"], description="the id of one of your teachers (POST /v1/teachers), ready")

    @model_validator(mode="before")
    @classmethod
    def _named_by_id(cls, data: Any) -> Any:
        # The answers recorded before this contract (tests/golden) name `teacher.weights` for a teacher
        # without an id, and `teacher` for an id of another shape.
        if not isinstance(data, dict):
            return data
        if "weights" in data:
            raise ValueError("weights: name the teacher by its id (teacher.id)")
        given = data.get("id")
        if given is None:
            raise ValueError("weights: name the teacher by its id (teacher.id): upload it with POST /v1/teachers")
        if isinstance(given, str) and not re.fullmatch(ID_PATTERNS["tch"], given):
            raise ValueError(f"{given!r} is not a teacher id (tch_ and 24 hexadecimal digits)")
        return data


class DatasetRef(DatasetSpec):
    """A built-in dataset, by name; a custom dataset of yours, by its id (``POST /v1/datasets``); or a
    folder of yours under the data roots (``imagefolder``, ``shards``), by its path (``GET /v1/datasets``
    lists them)."""

    # custom datasets are named by id, folders by path, built-in ones by name alone (the validators check it)
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"name": {"const": "custom"}}, "required": ["name"]},
                    "then": {"required": ["id"], "properties": {"id": {"type": "string"}}},
                    "else": {"properties": {"id": {"type": "null"}}},
                },
                {
                    "if": {"properties": {"name": {"enum": list(STREAMED)}}, "required": ["name"]},
                    "then": {"required": ["path"], "properties": {"path": {"type": "string"}}},
                    "else": {"properties": {"path": {"type": "null"}}},
                },
            ]
        }
    )

    root: SkipJsonSchema[None] = None  # the service chooses data locations
    path: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_DATA_PATH,
        description="imagefolder, shards: your folder, relative to your part of the data roots (GET /v1/datasets)",
    )
    id: str | None = Field(
        None,
        pattern=ID_PATTERNS["ds"],
        description="custom datasets: the id of one of your datasets (POST /v1/datasets), ready",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_locations(cls, data: Any) -> Any:
        # a folder under the data roots is named by its path; any other dataset's path is the service's
        by_path = isinstance(data, dict) and (data.get("name") in STREAMED or data.get("path") is None)
        for key in (*hidden_fields(cls), *(() if by_path else ("path",))):
            if isinstance(data, dict) and key in data:
                raise ValueError(
                    f"{key}: the service chooses data locations; name a custom dataset by its id (dataset.id)"
                )
        return data

    @model_validator(mode="after")
    def _source(self) -> DatasetRef:
        # (the field named is the core's, `path`, as the answers recorded before this contract name it)
        if self.name in STREAMED:
            if self.path is None:
                raise ValueError(f"path: {self.name} names your folder under the data roots (GET /v1/datasets)")
            if self.id is not None:
                raise ValueError(f"id: {self.name} is named by its path, not an id")
            return self
        if self.name == "custom" and self.id is None:
            raise ValueError("path: a custom dataset is named by its id (dataset.id)")
        if self.name != "custom" and self.id is not None:
            raise ValueError(f"path: only custom datasets have an id; {self.name!r} is named by its name")
        return self


@model_validator(mode="before")
def _one_process(cls: type[JobSpec], data: Any) -> Any:
    # the workers run a job in one process until they launch torchrun (issue 27, phase 2)
    if isinstance(data, dict) and "resources" in data:
        raise ValueError(
            "resources: the service runs every job in one process for now; a job on several GPUs runs from the "
            "command line (gacd train/distill --gpus N)"
        )
    return data


def _over_http(job: type[JobSpec]) -> type[JobSpec]:
    """The HTTP variant of a core job variant: its teacher and dataset named by id, and one process
    (``resources`` neither taken nor documented, nor shown: :data:`NOT_YET_OVER_HTTP`)."""
    method = job.params_class
    assert method is not None
    fields: dict[str, Any] = {
        "dataset": (DatasetRef, Field(default_factory=DatasetRef)),
        "resources": (SkipJsonSchema[ResourcesSpec], Field(default_factory=ResourcesSpec)),
    }
    if method.needs_teacher:
        fields["teacher"] = (TeacherRef, Field(description=f"the teacher {method.name} distils from"))
    return create_model(
        f"{job.__name__}Create",
        __base__=job,
        __module__=__name__,
        __doc__=f"A {method.name} job over HTTP: {method.description}.",
        __validators__=cast("dict[str, Any]", {"_one_process": _one_process}),  # a pydantic decorator proxy
        **fields,
    )


JOB_CREATE = JobParser(
    {name: _over_http(job) for name, job in JOB_SPECS.items()},
    title="JobCreate",
    description=f"One training job, by its method (gacd when absent). {CROSS_FIELD}",
)
# What the API never takes, shows or documents of a stored job: files on the machine that runs it.
NOT_OVER_HTTP: dict[str, tuple[str, ...]] = {"teacher": hidden_fields(TeacherRef), "dataset": hidden_fields(DatasetRef)}
# Whole parts of a job that HTTP does not take yet, nor shows of a stored job: one process per job.
NOT_YET_OVER_HTTP: tuple[str, ...] = ("resources",)
# What HTTP takes for some jobs only (a folder's path under the data roots): shown where it was given.
WHERE_GIVEN: dict[str, tuple[str, ...]] = {"dataset": ("path",)}


def parse_job(body: Any) -> JobSpec:
    """The job a request body states, validated once and strictly (``"5"`` is not 5).

    Raises:
        SpecError: one entry per bad field, each naming the field and saying what is wrong.
    """
    return JOB_CREATE.parse(body, strict=True)


def job_schemas() -> dict[str, Any]:
    """``JobCreate`` and the schemas it refers to, by component name (a new copy each call)."""
    schema = JOB_CREATE.adapter.json_schema(ref_template=COMPONENTS + "{model}")
    defs: dict[str, Any] = schema.pop("$defs")
    return {"JobCreate": schema, **defs}
