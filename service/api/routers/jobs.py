"""``/v1/jobs``: submit a job, follow it (status, events, live events), cancel it, download its outputs.

A job's body is the job specification of :mod:`gacd_core.spec`, the same one the CLI reads, with the
teacher and a custom dataset named by their ids (``{"teacher": {"id": ...}}``,
``{"dataset": {"name": "custom", "id": ...}}``); file paths are the service's business and are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gacd_core.artifacts import JOB_OUTPUTS, media_type
from gacd_core.catalog import STREAMED
from gacd_core.errors import SpecError
from gacd_core.spec import JobSpec
from service.api.contract import COMPONENTS, ID_PATTERNS, parse_job
from service.api.deps import QueueDep, SettingsDep, StoreDep, Tenant, owned
from service.api.errors import APIError, not_found, responses, spec_error
from service.api.routers.datasets import builtin_available, check_data_folder
from service.api.schemas import ArtifactList, EventList, JobList, JobPublic
from service.state.artifacts import ArtifactStore
from service.state.queue import Queue
from service.state.records import TERMINAL, IdempotencyClaim, JobRecord, JobStatus, TeacherRecord, now_iso
from service.state.settings import Settings
from service.state.store import Store, TransitionRefused, Uploads

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = logging.getLogger("gacd.api")

EXAMPLE = {
    "method": "gacd",
    "teacher": {"id": "tch_0123456789abcdef01234567"},
    "student": {"arch": "mobilenetv2"},
    "dataset": {"name": "cifar10", "train_subset": 5000, "test_subset": 1000},
    "hyperparameters": {"epochs": 10, "batch_size": 128, "method_params": {"reweight": "soft"}},
    "evaluation": {"autoattack": False},
    "seed": 0,
    "metadata": {"experiment": "mobile-v1"},
}
NATURAL_EXAMPLE = {
    "method": "natural",
    "student": {"arch": "resnet10_w8"},
    "dataset": {"name": "cifar10", "train_subset": 1000, "test_subset": 200},
    "hyperparameters": {"epochs": 2, "batch_size": 64},
    "evaluation": {"attacks": ["fgsm"], "eps_sweep": [], "teacher": False},
}
_CREATE_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": COMPONENTS + "JobCreate"},
                "examples": {
                    "gacd": {"summary": "distil a teacher of yours into MobileNetV2 with GACD", "value": EXAMPLE},
                    "natural": {"summary": "train a small network on clean CIFAR-10", "value": NATURAL_EXAMPLE},
                },
            }
        },
    },
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 200},
            "description": "same key and body: the same job back; same key, other body: 409",
        }
    ],
}


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, read with a size limit (413) and parsed (400 when malformed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, "too_large", f"the JSON body is over {limit} bytes")
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise APIError(413, "too_large", f"the JSON body is over {limit} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        body = None
        depth = MAX_JSON_DEPTH + 1
    else:
        depth = _check_text(body)
    if depth > MAX_JSON_DEPTH:
        raise APIError(400, "invalid_json", f"the body nests arrays and objects more than {MAX_JSON_DEPTH} deep")
    return body


MAX_JSON_DEPTH = 64


def _check_text(value: Any) -> int:
    """How deep ``value`` nests; 400 when one of its strings is not Unicode text.

    JSON lets a string hold half of a UTF-16 surrogate pair (``"\\ud800"``), which no UTF-8 text can:
    stored, such a string would fail every response that tries to show it. Iterative, so that any
    depth is measured without recursion.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise APIError(400, "invalid_json", "the body has a string that is not Unicode text") from None
        elif isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_JSON_DEPTH:
                break
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _ready(records: Uploads[Any], tenant: str, rid: str, field: str) -> str:
    """``rid`` if it names the tenant's ready teacher / dataset; 404, 409 (still validating) or 422."""
    rec = owned(records, tenant, rid)
    noun = records.record_type.noun
    if rec.status == "validating":
        raise APIError(409, f"{noun}_not_ready", f"{noun} {rid} is still being validated; retry when ready", field)
    if rec.status != "ready":
        unfit = isinstance(rec, TeacherRecord) and rec.error_code == "teacher_unfit"
        raise APIError(
            422, "teacher_unfit" if unfit else f"invalid_{noun}", f"{noun} {rid} is invalid: {rec.error}", field
        )
    return rid


def _check_refs(spec: JobSpec, tenant: str, store: Store) -> tuple[str | None, str | None]:
    """The ids of the teacher and the custom dataset the job names (its HTTP variant requires them where
    they belong), checked to be the tenant's and ready."""
    teacher_id = dataset_id = None
    if spec.teacher is not None and spec.teacher.id is not None:
        teacher_id = _ready(store.teachers, tenant, spec.teacher.id, "teacher.id")
    if spec.dataset.id is not None:
        dataset_id = _ready(store.datasets, tenant, spec.dataset.id, "dataset.id")
    return teacher_id, dataset_id


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    summary="Submit a training or distillation job",
    responses={
        **responses(400, 404, 409, 413, 422, 429),
        202: {
            "description": "the job, queued",
            "headers": {"Location": {"description": "the job's URL", "schema": {"type": "string"}}},
        },
    },
    openapi_extra=_CREATE_DOC,
)
async def create_job(
    request: Request,
    tenant: Tenant,
    store: StoreDep,
    settings: SettingsDep,
    queue: QueueDep,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200, include_in_schema=False),
) -> JSONResponse:
    body = await read_json(request, settings.max_json_bytes)
    # everything that talks to the store runs in the thread pool, never on the event loop
    return await run_in_threadpool(_submit, body, tenant.name, store, settings, queue, idempotency_key)


def _submit(
    body: Any, tenant: str, store: Store, settings: Settings, queue: Queue, idempotency_key: str | None
) -> JSONResponse:
    """Validate a job specification, count it against the tenant's limits, store it and queue it."""
    if not isinstance(body, dict):
        raise APIError(422, "invalid_spec", "the body must be a JSON object (a job specification)")
    try:
        spec = parse_job(body)  # the one validation: JobCreate, strict
    except SpecError as exc:
        raise spec_error(exc) from None
    teacher_id, dataset_id = _check_refs(spec, tenant, store)
    if spec.dataset.name in STREAMED:
        check_data_folder(spec.dataset, tenant, settings)  # 4xx with the refusal's code; nothing is queued
    elif spec.dataset.name != "custom" and not builtin_available(spec.dataset.name, settings.data_root):
        raise APIError(
            409,
            "dataset_unavailable",
            f"dataset.name: the workers' data root does not hold {spec.dataset.name} (GET /v1/datasets says "
            "which built-in datasets are available); nothing was queued",
            "dataset.name",
        )
    # a job lost by its worker goes back to the queue it was sent to
    rec = JobRecord.queued(spec, tenant, settings.queue, teacher_id, dataset_id)
    job_id = rec.id
    digest = _digest(body)
    if idempotency_key is not None:
        earlier = store.idempotency.earlier(tenant, idempotency_key)
        if earlier is not None:
            return _replay(store, tenant, earlier, digest)
    _count_submission(store, settings, tenant, job_id)
    if idempotency_key is not None:
        earlier = store.idempotency.claim(tenant, idempotency_key, digest, job_id)
        if earlier is not None:  # another request with this key won the race
            store.quotas.uncount_submission(tenant, job_id)
            return _replay(store, tenant, earlier, digest)
    if not store.jobs.create(rec, settings.tenant_max_active_jobs):
        _take_back(store, tenant, job_id, idempotency_key)
        raise APIError(
            429,
            "too_many_active_jobs",
            f"you have {settings.tenant_max_active_jobs} unfinished jobs, the most allowed at once; "
            "submit again when one of them has finished (or cancel one)",
            headers={"Retry-After": str(ACTIVE_RETRY_AFTER)},
        )
    store.events.add(job_id, "queued", f"{spec.method} job queued", data={"method": spec.method})
    try:
        queue.enqueue_job(job_id)
    except Exception as exc:  # the broker is away: leave no queued job that no worker will ever see
        log.warning("job %s: could not be queued (%s); removing it", job_id, exc)
        store.jobs.delete(job_id, tenant)
        _take_back(store, tenant, job_id, idempotency_key)
        raise APIError(
            503,
            "queue_unavailable",
            "the job queue is unavailable; nothing was created, retry shortly",
            headers={"Retry-After": "5"},
        ) from None
    return _accepted(rec)


ACTIVE_RETRY_AFTER = 30  # seconds: a hint only, since nobody knows when one of the tenant's jobs ends


def _count_submission(store: Store, settings: Settings, tenant: str, job_id: str) -> None:
    """Count the submission against the tenant's rate limit, or refuse it (429 with Retry-After)."""
    wait = store.quotas.count_submission(tenant, settings.tenant_jobs_per_minute, job_id)
    if wait > 0:
        raise APIError(
            429,
            "rate_limited",
            f"at most {settings.tenant_jobs_per_minute} jobs may be submitted per minute; retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )


def _take_back(store: Store, tenant: str, job_id: str, idempotency_key: str | None) -> None:
    """Undo what a submission that created no job counted: its rate slot and its idempotency claim."""
    store.quotas.uncount_submission(tenant, job_id)
    if idempotency_key is not None:
        store.idempotency.release(tenant, idempotency_key, job_id)


def _replay(store: Store, tenant: str, earlier: IdempotencyClaim, digest: str) -> JSONResponse:
    """The answer to a repeated Idempotency-Key: the job it created (same body) or 409 (another body)."""
    if earlier.body != digest:
        raise APIError(409, "idempotency_conflict", "this Idempotency-Key was used with another body")
    rec = None
    for _ in range(50):  # the first request may still be creating the job
        rec = store.jobs.get(earlier.job_id, tenant)
        if rec is not None:
            break
        time.sleep(0.05)
    if rec is None:
        raise APIError(409, "idempotency_conflict", "the first request with this key did not create a job")
    return _accepted(rec)


def _accepted(rec: JobRecord) -> JSONResponse:
    """202 with the job and its URL."""
    body = JobPublic.of(rec).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{rec.id}"})


# get_job and list_jobs are the routes pollers hit most. They stay plain functions (run in the thread
# pool), although calling the store from the event loop measured about 15% faster: a Redis that hangs
# instead of refusing would then stall every request of this process, /healthz included, for up to
# the client's timeouts (benchmarks/RESULTS.md).
@router.get("", response_model=JobList, summary="List your jobs, newest first", responses=responses(422))
def list_jobs(
    tenant: Tenant,
    store: StoreDep,
    status: Annotated[JobStatus | None, Query(description="only jobs with this status")] = None,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(
        None, description="the last id of the previous page (next_after)", pattern=ID_PATTERNS["job"]
    ),
) -> dict[str, Any]:
    try:
        page = store.jobs.page(tenant.name, limit, after, status)
    except KeyError:
        raise APIError(422, "invalid_request", f"after: no job {after!r}", "after") from None
    return {"data": [JobPublic.of(r) for r in page.data], "has_more": page.has_more, "next_after": page.next_after}


@router.get("/{job_id}", response_model=JobPublic, summary="Get a job", responses=responses(404))
def get_job(job_id: str, tenant: Tenant, store: StoreDep) -> JobPublic:
    return JobPublic.of(owned(store.jobs, tenant.name, job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job", responses=responses(404, 409))
def cancel_job(job_id: str, tenant: Tenant, store: StoreDep) -> JobPublic:
    owned(store.jobs, tenant.name, job_id)
    try:
        store.jobs.transition(job_id, ["queued"], "cancelled", {"finished_at": now_iso()})
        store.events.add(job_id, "cancelled", "cancelled before it started")
    except TransitionRefused as exc:
        if exc.current in ("running", "cancelling"):
            try:
                store.jobs.transition(job_id, ["running"], "cancelling")
                store.events.add(job_id, "cancelling", "cancellation requested; the worker stops at its next check")
            except TransitionRefused as again:
                if again.current != "cancelling":
                    raise APIError(409, "conflict", f"job {job_id} is already {again.current}") from None
        else:
            raise APIError(409, "conflict", f"job {job_id} is already {exc.current}") from None
    return JobPublic.of(owned(store.jobs, tenant.name, job_id))


_U64_MAX = 2**64 - 1
LAST_EVENT_ID = f"{_U64_MAX}-{_U64_MAX}"


def _at_most(n: int) -> str:
    """A regular expression for the decimal numbers 0..n (leading zeros allowed, ASCII digits only)."""
    digits = str(n)
    shorter = f"[0-9]{{1,{len(digits) - 1}}}" if len(digits) > 1 else None
    same = [digits]
    for i, d in enumerate(digits):
        if d != "0":
            rest = len(digits) - i - 1
            lower = "0" if d == "1" else f"[0-{int(d) - 1}]"
            same.append(digits[:i] + lower + (f"[0-9]{{{rest}}}" if rest else ""))
    return "0*(" + "|".join(filter(None, [shorter, *same])) + ")"


# A Redis stream id as the events' `after` takes it: two unsigned 64-bit numbers joined by '-'.
EVENT_ID = f"^{_at_most(_U64_MAX)}-{_at_most(_U64_MAX)}$"


@router.get(
    "/{job_id}/events",
    response_model=EventList,
    summary="The job's events; with Accept: text/event-stream, live as server-sent events",
    responses={**responses(404, 422), 200: {"content": {"text/event-stream": {}}, "description": "events"}},
)
async def list_job_events(
    request: Request,
    job_id: str,
    tenant: Tenant,
    store: StoreDep,
    after: Annotated[
        str | None, Query(description="the id of the last event seen (each part at most 2^64 - 1)", pattern=EVENT_ID)
    ] = None,
    limit: int = Query(100, ge=1, le=1000),
    last_event_id: str | None = Header(None, alias="Last-Event-ID", include_in_schema=False),
) -> Any:
    await run_in_threadpool(owned, store.jobs, tenant.name, job_id)
    if after is not None and not _event_id_ok(after):  # (the pattern says the same; this does not rely on it)
        raise APIError(422, "invalid_request", "after: an event id, two numbers below 2^64 joined by '-'", "after")
    if "text/event-stream" in request.headers.get("accept", ""):
        start = after or (last_event_id if last_event_id and _event_id_ok(last_event_id) else None)
        return StreamingResponse(
            _sse(request, store, job_id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    if after == LAST_EVENT_ID:  # nothing can follow it (and Redis refuses a range that starts after it)
        return {"data": [], "has_more": False}
    data, has_more = await run_in_threadpool(store.events.read, job_id, after, limit)
    return {"data": [ev.model_dump() for ev in data], "has_more": has_more}


def _event_id_ok(value: str) -> bool:
    """A Redis stream id: two unsigned 64-bit numbers in ASCII digits (Redis refuses anything else)."""
    a, sep, b = value.partition("-")
    return bool(sep) and all(p.isascii() and p.isdigit() and int(p) <= _U64_MAX for p in (a, b))


async def _sse(request: Request, store: Store, job_id: str, after: str | None) -> AsyncIterator[bytes]:
    last = after
    idle = 0.0
    while True:
        if await request.is_disconnected():
            return
        events = await run_in_threadpool(store.events.wait, job_id, last, 2000)
        for ev in events:
            last = ev.id
            yield f"id: {ev.id}\nevent: {ev.type}\ndata: {json.dumps(ev.model_dump())}\n\n".encode()
        if events:
            idle = 0.0
            continue
        status = await run_in_threadpool(store.jobs.status, job_id)
        if status is None or status in TERMINAL:
            # one more read so that nothing written with the final status is missed
            for ev in await run_in_threadpool(store.events.wait, job_id, last, 1):
                yield f"id: {ev.id}\nevent: {ev.type}\ndata: {json.dumps(ev.model_dump())}\n\n".encode()
            yield b"event: end\ndata: {}\n\n"
            return
        idle += 2.0
        if idle >= 14.0:
            idle = 0.0
            yield b": keep-alive\n\n"


@router.get("/{job_id}/artifacts", response_model=ArtifactList, summary="The job's outputs", responses=responses(404))
def list_job_artifacts(job_id: str, tenant: Tenant, store: StoreDep) -> dict[str, Any]:
    return {"data": owned(store.jobs, tenant.name, job_id).artifacts}


@router.get(
    "/{job_id}/artifacts/{name}",
    summary=f"Download one output ({', '.join(JOB_OUTPUTS)})",
    responses={
        **responses(404),
        200: {
            "description": "the file, with the media type of its name (octet-stream for the weights)",
            "headers": {
                "ETag": {
                    "description": "the file's SHA-256, quoted",
                    "required": True,
                    "schema": {"type": "string", "pattern": '^"[0-9a-f]{64}"$'},
                },
                "Content-Disposition": {
                    "description": "attachment, with the artifact's name",
                    "required": True,
                    "schema": {"type": "string"},
                },
            },
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {
                    "schema": {"type": "object"},
                    "example": {
                        "spec": {"method": "gacd", "student": {"arch": "mobilenetv2"}},
                        "student": {"arch": "mobilenetv2", "params": 2236682, "num_classes": 10},
                        "metrics": {"clean_acc": 0.81, "fgsm_acc": 0.55, "pgd20_acc": 0.49, "cw_acc": 0.47},
                        "...": "...",
                    },
                },
                "text/html": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        },
    },
    response_class=FileResponse,
)
def download_artifact(job_id: str, name: str, tenant: Tenant, store: StoreDep, settings: SettingsDep) -> FileResponse:
    rec = owned(store.jobs, tenant.name, job_id)
    entry = next((a for a in rec.artifacts if a.name == name), None)
    if entry is None:
        raise not_found("artifact", name)
    arts = ArtifactStore(settings.artifact_root)
    try:
        path = arts.child(arts.job_out(tenant.name, job_id), name)
    except ValueError:
        raise not_found("artifact", name) from None
    if not path.is_file():
        raise APIError(404, "not_found", f"artifact {name!r} is missing from the store")
    # A fixed table (gacd_core.artifacts), not the host's mimetypes database: the media types documented above.
    media = media_type(name)
    return FileResponse(path, media_type=media, filename=name, headers={"ETag": f'"{entry.sha256}"'})
