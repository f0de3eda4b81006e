"""``/v1/teachers``: upload robust teachers (or register a finished job's student), list, get, delete.

An upload is only stored here; a worker validates it (the weights load into the architecture, shapes
match, values are finite, a forward pass works, and its clean accuracy on the dataset's test split is
clearly above chance) and sets ``status`` to ``ready`` or ``invalid`` with the reason in ``error`` and a
stable ``error_code`` (``teacher_unfit`` for a teacher near chance). The measured figures are on the
record under ``checks``, per dataset, with their subset sizes. A file without gacd metadata is not
normalised unless the upload says so (``normalization`` or ``mean``/``std``) or the file carries
``mu``/``sigma`` buffers: public robust-training code feeds its networks raw [0, 1] pixels (the rules
and the order of those sources are :mod:`gacd_core.normalization`'s). Weights are data: a name in
:data:`gacd_core.artifacts.WEIGHTS_SUFFIXES`, ``.safetensors``, or a state_dict read with
``torch.load(weights_only=True)`` on the worker; nothing uploaded is ever executed.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gacd_core import catalog
from gacd_core.artifacts import (
    SAFETENSORS_SUFFIXES,
    STATE_DICT_SUFFIXES,
    STUDENT_WEIGHTS,
    TEACHER_FILES,
    WEIGHTS_SUFFIXES,
    weights_format,
)
from gacd_core.normalization import PRESETS, NormalizationError, parse_rgb, resolve
from service.api.contract import ID_PATTERNS
from service.api.deps import QueueDep, SettingsDep, StoreDep, Tenant, owned
from service.api.errors import APIError, responses
from service.api.schemas import LegacyTeacherFromJob, TeacherFromJob, TeacherList, TeacherPublic
from service.api.uploads import file_encoding, receive_file, removed_on_error
from service.state.artifacts import ArtifactStore, safetensors_metadata
from service.state.queue import Queue
from service.state.records import TeacherRecord, new_id, now_iso, valid_id
from service.state.settings import Settings
from service.state.store import Store

router = APIRouter(prefix="/v1/teachers", tags=["teachers"])
M = TypeVar("M", bound=BaseModel)


def _names(suffixes: tuple[str, ...]) -> str:
    """``*.pt, *.pth, *.bin or *.t7``: the file names the documents accept."""
    names = [f"*{suffix}" for suffix in suffixes]
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


# Three numbers, as a JSON list or separated by commas (each finite: at most 15 digits and a 2-digit exponent).
_NUMBER = r"[-+]?([0-9]{1,15}([.][0-9]{0,15})?|[.][0-9]{1,15})([eE][-+]?[0-9]{1,2})?"
_RGB_PATTERN = (
    rf"^\s*(\[\s*{_NUMBER}\s*,\s*{_NUMBER}\s*,\s*{_NUMBER}\s*\]|{_NUMBER}\s*,\s*{_NUMBER}\s*,\s*{_NUMBER})\s*$"
)
UPLOAD_SCHEMA = {
    "title": "TeacherUpload",
    "type": "object",
    "additionalProperties": False,
    "required": ["file", "arch", "dataset"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": f"the weights: a file named {_names(SAFETENSORS_SUFFIXES)}, or a state_dict named "
            f"{_names(STATE_DICT_SUFFIXES)} (read on a worker with torch.load(weights_only=True)); not empty",
        },
        "arch": {
            "type": "string",
            "enum": list(catalog.ARCHITECTURES),
            "example": "resnet18",
            "description": "our architecture, timm:<name>, torchvision:<name> or a covered RobustBench entry "
            "robustbench:<dataset>/<threat>/<entry> (gacd list)",
        },
        "num_classes": {
            "type": "integer",
            "minimum": 2,
            "maximum": 100_000,
            "example": 10,
            "description": "default: read from the classifier's shape in the file",
        },
        "normalization": {
            "type": "string",
            "enum": list(PRESETS),
            "description": "the input normalisation the teacher was trained with; default: the file's (gacd "
            "metadata, mu/sigma buffers), else none (mean 0, std 1), as the public robust-training code (TRADES, "
            "RobustBench, ARD, RSLAD, MART) trains. Not with mean and std",
        },
        "allow_weak": {
            "type": "boolean",
            "description": "keep the teacher even when its accuracy check finds it near chance",
        },
        "dataset": {
            "anyOf": [
                {"type": "string", "enum": [n for n, d in catalog.DATASETS.items() if d.builtin]},
                {"type": "string", "pattern": ID_PATTERNS["ds"]},
            ],
            "description": "a built-in dataset's name or the id of one of your datasets",
            "example": "cifar10",
        },
        "mean": {
            "type": "string",
            "pattern": _RGB_PATTERN,
            "description": "three finite numbers, as [r, g, b] or r,g,b (with std; instead of normalization)",
            "example": "[0.4914, 0.4822, 0.4465]",
        },
        "std": {
            "type": "string",
            "pattern": _RGB_PATTERN,
            "description": "three finite numbers above 0, as [r, g, b] or r,g,b (with mean)",
            "example": "[0.2471, 0.2435, 0.2616]",
        },
        "name": {"type": "string", "maxLength": 200},
    },
}
_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"x-component": "TeacherUpload", "x-schema": UPLOAD_SCHEMA},
                "encoding": {"file": file_encoding("teacher.safetensors", WEIGHTS_SUFFIXES)},
            }
        },
    }
}


def _rgb(value: str | None, field: str) -> list[float] | None:
    if value is None:
        return None
    try:
        vals = list(parse_rgb(value))
    except ValueError as exc:
        raise APIError(422, "invalid_request", f"{field}: {exc}", field) from None
    if not all(math.isfinite(v) for v in vals) or (field == "std" and any(v <= 0 for v in vals)):
        raise APIError(
            422, "invalid_request", f"{field}: finite numbers" + (", each > 0" if field == "std" else ""), field
        )
    return vals


FORM_FIELDS = ("arch", "num_classes", "dataset", "normalization", "mean", "std", "allow_weak", "name")


def _bool(value: str | None, field: str) -> bool:
    # a form's boolean is spelled as JSON spells it, in any case (generated clients send Python's
    # "True"); absent is false, and nothing else is read as a boolean
    text = None if value is None else value.lower()
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise APIError(422, "invalid_request", f"{field}: true or false", field)


def _check_fields(fields: dict[str, str], tenant: str, store: Store) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(FORM_FIELDS))
    if unknown:
        raise APIError(
            422, "invalid_request", f"unknown field {unknown[0]!r}; valid: {', '.join(FORM_FIELDS)}", unknown[0]
        )
    for req in ("arch", "dataset"):
        if not fields.get(req, "").strip():
            raise APIError(422, "invalid_request", f"{req}: required", req)
    arch = fields["arch"]
    why = catalog.arch_refusal(arch)
    if why is not None:
        raise APIError(422, "unknown_name", f"arch: {why}", "arch")
    # A field that is sent is held to the schema as sent: an empty or padded value is not "absent".
    num_classes = None
    if "num_classes" in fields:
        text = fields["num_classes"]
        if not (text.isascii() and text.lstrip("-").isdigit()):
            raise APIError(422, "invalid_request", "num_classes: an integer", "num_classes")
        num_classes = int(text)
        if not 2 <= num_classes <= 100_000:
            raise APIError(422, "invalid_request", "num_classes: between 2 and 100000", "num_classes")
    normalization = fields.get("normalization")
    mean, std = _rgb(fields.get("mean"), "mean"), _rgb(fields.get("std"), "std")
    try:  # the rules of a requested normalisation, as the job specification holds them
        resolve(normalization, mean, std)
    except NormalizationError as exc:
        raise APIError(422, "invalid_request", exc.located(), exc.field) from None
    dataset = fields["dataset"]
    builtins = [n for n, d in catalog.DATASETS.items() if d.builtin]
    if dataset not in builtins and not (valid_id(dataset, "ds") and store.datasets.get(dataset, tenant)):
        valid = ", ".join(builtins)
        raise APIError(
            422,
            "unknown_name",
            f"dataset: unknown dataset {dataset!r}; valid: {valid} or one of your dataset ids",
            "dataset",
        )
    if len(fields.get("name", "")) > 200:  # as sent, spaces included (the documents' maxLength)
        raise APIError(422, "invalid_request", "name: at most 200 characters", "name")
    name = fields.get("name", "").strip()
    return {
        "arch": arch,
        "num_classes": num_classes,
        "dataset": dataset,
        "normalization": normalization,
        "mean": mean,
        "std": std,
        "allow_weak": _bool(fields.get("allow_weak"), "allow_weak"),
        "name": name,
    }


@router.post(
    "",
    status_code=201,
    response_model=TeacherPublic,
    summary="Upload a teacher (multipart: the weights file and its fields)",
    description='The documented form is multipart. A JSON body `{"source_job_id": ...}` is still taken here '
    "as it was before `POST /v1/teachers/from-job`, which is the operation for it.",
    responses=responses(400, 404, 409, 413, 415, 422),
    openapi_extra=_UPLOAD_DOC,
)
async def upload_teacher(
    request: Request, tenant: Tenant, store: StoreDep, settings: SettingsDep, queue: QueueDep
) -> TeacherPublic:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):  # (the one route of both, before from-job had its own)
        legacy = await _json(request, settings.max_json_bytes, LegacyTeacherFromJob, strict=False)
        options = TeacherFromJob(name=legacy.name, allow_weak=legacy.allow_weak)
        return await _from_job(legacy.source_job_id, options, tenant.name, store, settings, queue)
    arts = ArtifactStore(settings.artifact_root)
    tid = new_id("tch")
    folder = arts.teacher_dir(tenant.name, tid)
    with removed_on_error(folder):
        up = await receive_file(request, folder, "upload.bin", settings.max_upload_bytes)
        kind = weights_format(up.filename or "")
        if kind is None:
            accepted = f"{'/'.join(SAFETENSORS_SUFFIXES)} nor {'/'.join(STATE_DICT_SUFFIXES)}"
            raise APIError(422, "unsupported_file", f"file: {up.filename!r} is neither {accepted}", "file")
        if up.size == 0:
            raise APIError(422, "invalid_request", "file: the file is empty", "file")
        fields = await run_in_threadpool(_check_fields, up.fields, tenant.name, store)
        assert up.path is not None
        final = folder / TEACHER_FILES[kind]
        up.path.rename(final)
    rec = TeacherRecord(
        id=tid,
        tenant=tenant.name,
        name=fields["name"] or Path(up.filename or "teacher").stem[:200],
        arch=fields["arch"],
        num_classes=fields["num_classes"],
        dataset=fields["dataset"],
        normalization_requested=fields["normalization"],
        mean=fields["mean"],
        std=fields["std"],
        allow_weak=fields["allow_weak"],
        sha256=up.sha256,
        bytes=up.size,
        status="validating",
        file=arts.relative(final),
        created_at=now_iso(),
    )
    await run_in_threadpool(_register, store, queue, rec)
    return TeacherPublic.of(rec)


def _register(store: Store, queue: Queue, rec: TeacherRecord) -> None:
    """Store a new teacher's record and send it to validation (in the thread pool: both talk to Redis)."""
    store.teachers.create(rec)
    queue.validate_teacher(rec.id)


async def _json(request: Request, limit: int, model: type[M], strict: bool) -> M:
    """The request's JSON body as ``model`` (413 over ``limit`` bytes, 422 when it does not validate)."""
    raw = await request.body()
    if len(raw) > limit:
        raise APIError(413, "too_large", f"the JSON body is over {limit} bytes")
    fields = ", ".join(model.model_fields)
    try:
        return model.model_validate_json(raw or b"{}", strict=strict)
    except ValueError as exc:
        raise APIError(422, "invalid_request", f"expected {{{fields}}}: {str(exc).splitlines()[0]}") from None


async def _from_job(
    job_id: str, body: TeacherFromJob, tenant: str, store: Store, settings: Settings, queue: Queue
) -> TeacherPublic:
    job = await run_in_threadpool(owned, store.jobs, tenant, job_id)
    if job.status != "succeeded":
        raise APIError(
            409, "conflict", f"job {job.id} is {job.status}; only a succeeded job's student can be a teacher"
        )
    arts = ArtifactStore(settings.artifact_root)
    src = arts.job_out(tenant, job.id) / STUDENT_WEIGHTS
    try:
        meta = safetensors_metadata(src)
        arch, num_classes = meta["arch"], int(meta["num_classes"])
        mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
    except (OSError, ValueError, KeyError) as exc:
        raise APIError(409, "conflict", f"the job's student is not available: {exc}") from None
    tid = new_id("tch")
    folder = arts.teacher_dir(tenant, tid)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / TEACHER_FILES["safetensors"]
    shutil.copyfile(src, final)
    artifact = next((a for a in job.artifacts if a.name == STUDENT_WEIGHTS), None)
    rec = TeacherRecord(
        id=tid,
        tenant=tenant,
        name=body.name or f"{job.spec.method} {arch} from {job.id}",
        arch=arch,
        num_classes=num_classes,
        dataset=job.spec.dataset.id or job.spec.dataset.name,
        mean=mean,
        std=std,
        allow_weak=body.allow_weak,
        sha256=artifact.sha256 if artifact else "",
        bytes=final.stat().st_size,
        status="validating",
        source_job_id=job.id,
        file=arts.relative(final),
        created_at=now_iso(),
    )
    await run_in_threadpool(_register, store, queue, rec)
    return TeacherPublic.of(rec)


# Under the job, not under /v1/teachers: there a path of one more segment is a teacher's id.
from_job_router = APIRouter(prefix="/v1/jobs", tags=["teachers"])


@from_job_router.post(
    "/{job_id}/teacher",
    status_code=201,
    response_model=TeacherPublic,
    summary="Register a succeeded job's student as a teacher",
    responses=responses(400, 404, 409, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"x-component": "TeacherFromJob", "x-schema": TeacherFromJob.model_json_schema()}
                }
            },
        }
    },
)
async def create_teacher_from_job(
    job_id: str, request: Request, tenant: Tenant, store: StoreDep, settings: SettingsDep, queue: QueueDep
) -> TeacherPublic:
    ctype = request.headers.get("content-type")
    if ctype is not None and not ctype.startswith("application/json"):
        raise APIError(415, "unsupported_media_type", "send the body (if any) as application/json")
    options = await _json(request, settings.max_json_bytes, TeacherFromJob, strict=True)  # as the schema
    return await _from_job(job_id, options, tenant.name, store, settings, queue)


@router.get("", response_model=TeacherList, summary="List your teachers, newest first", responses=responses(404, 422))
def list_teachers(
    tenant: Tenant,
    store: StoreDep,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="the last id of the previous page", pattern=ID_PATTERNS["tch"]),
) -> dict[str, Any]:
    try:
        page = store.teachers.page(tenant.name, limit, after)
    except KeyError:
        raise APIError(422, "invalid_request", f"after: no teacher {after!r}", "after") from None
    data = [TeacherPublic.of(r) for r in page.data]
    return {"data": data, "has_more": page.has_more, "next_after": page.next_after}


@router.get("/{teacher_id}", response_model=TeacherPublic, summary="Get a teacher", responses=responses(404))
def get_teacher(teacher_id: str, tenant: Tenant, store: StoreDep) -> TeacherPublic:
    return TeacherPublic.of(owned(store.teachers, tenant.name, teacher_id))


@router.delete(
    "/{teacher_id}", status_code=204, summary="Delete a teacher and its weights", responses=responses(404, 409)
)
def delete_teacher(teacher_id: str, tenant: Tenant, store: StoreDep, settings: SettingsDep) -> Response:
    rec = owned(store.teachers, tenant.name, teacher_id)
    active = store.jobs.unfinished_using(tenant.name, TeacherRecord, teacher_id)
    if active:
        raise APIError(409, "conflict", f"teacher {teacher_id} is used by unfinished jobs: {', '.join(active[:5])}")
    store.teachers.delete(teacher_id, tenant.name)
    ArtifactStore.remove_tree(ArtifactStore(settings.artifact_root).teacher_dir(tenant.name, rec.id))
    return Response(status_code=204)
