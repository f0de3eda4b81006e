"""``/v1/datasets``: the built-in datasets (and whether the workers' data root holds them) and the
tenant's own datasets: an ``.npz`` of uint8 images and int labels, or a zip of an ImageFolder tree.

Like teachers, an upload is stored here and validated by a worker (``status`` goes ``validating ->
ready | invalid``); a zip is unpacked there, refusing absolute paths, ``..``, links and archives that
expand far beyond their size. A job names a custom dataset as ``{"name": "custom", "id": ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from gacd_core import catalog
from service.api.deps import QueueDep, SettingsDep, StoreDep, Tenant, owned
from service.api.errors import APIError, responses
from service.api.schemas import DatasetList, DatasetPublic
from service.api.uploads import file_encoding, receive_file, removed_on_error
from service.state.artifacts import ArtifactStore
from service.state.records import DatasetRecord, new_id, now_iso

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

# The built-in datasets: what a worker's data root must hold for each, and their sizes (the catalog's).
BUILTIN = {name: d for name, d in catalog.DATASETS.items() if d.builtin}
FORMATS = {".npz": "npz", ".zip": "imagefolder-zip"}

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "x-component": "DatasetUpload",
                    "x-schema": {
                        "title": "DatasetUpload",
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": ".npz (x_train, y_train, x_test, y_test as uint8 images and int labels) "
                                "or .zip of train/<class>/<image> and test/<class>/<image>",
                            },
                            "name": {"type": "string", "maxLength": 200},
                        },
                    },
                },
                "encoding": {"file": file_encoding("data.npz", FORMATS)},
            }
        },
    }
}


def builtin_available(name: str, data_root: Path) -> bool:
    """Whether the workers' data root holds every file the built-in dataset ``name`` is read from."""
    d = BUILTIN[name]
    return all((data_root / d.folder / f).is_file() for f in d.files)


def builtin(name: str, data_root: Path) -> dict[str, Any]:
    d = BUILTIN[name]
    available = builtin_available(name, data_root)
    return {
        "id": name,
        "object": "dataset",
        "builtin": True,
        "name": name,
        "status": "available" if available else "missing",
        "error": None if available else f"the workers' data root does not hold {name}",
        "num_classes": d.num_classes,
        "train_size": d.train_size,
        "test_size": d.test_size,
        "image_size": d.image_size,
    }


@router.get("", response_model=DatasetList, summary="Built-in datasets and your own", responses=responses())
def list_datasets(tenant: Tenant, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    data = [builtin(n, settings.data_root) for n in BUILTIN]
    page = store.datasets.page(tenant.name, 1000)
    data += [DatasetPublic.of(r).model_dump() for r in page.data]
    return {"data": data}


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    summary="Upload a custom dataset (.npz or a zip of an ImageFolder tree)",
    responses=responses(400, 413, 415, 422),
    openapi_extra=_UPLOAD_DOC,
)
async def upload_dataset(
    request: Request, tenant: Tenant, store: StoreDep, settings: SettingsDep, queue: QueueDep
) -> DatasetPublic:
    arts = ArtifactStore(settings.artifact_root)
    did = new_id("ds")
    folder = arts.dataset_dir(tenant.name, did)
    with removed_on_error(folder):
        up = await receive_file(request, folder, "upload.bin", settings.max_upload_bytes)
        suffix = Path(up.filename or "").suffix.lower()
        if suffix not in FORMATS:
            raise APIError(422, "unsupported_file", f"file: {up.filename!r} is neither .npz nor .zip", "file")
        unknown = sorted(set(up.fields) - {"name"})
        if unknown:
            raise APIError(422, "invalid_request", f"unknown field {unknown[0]!r}; valid: file, name", unknown[0])
        if len(up.fields.get("name", "")) > 200:  # as sent, spaces included (the documents' maxLength)
            raise APIError(422, "invalid_request", "name: at most 200 characters", "name")
        name = up.fields.get("name", "").strip() or Path(up.filename or "dataset").stem
        assert up.path is not None
        final = folder / ("data.npz" if suffix == ".npz" else "upload.zip")
        up.path.rename(final)
    rec = DatasetRecord(
        id=did,
        tenant=tenant.name,
        name=name[:200],
        format=FORMATS[suffix],
        status="validating",
        sha256=up.sha256,
        bytes=up.size,
        file=arts.relative(final),
        created_at=now_iso(),
    )
    await run_in_threadpool(store.datasets.create, rec)
    await run_in_threadpool(queue.validate_dataset, did)
    return DatasetPublic.of(rec)


@router.get("/{dataset_id}", response_model=DatasetPublic, summary="Get a dataset", responses=responses(404))
def get_dataset(dataset_id: str, tenant: Tenant, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    if dataset_id in BUILTIN:
        return builtin(dataset_id, settings.data_root)
    return DatasetPublic.of(owned(store.datasets, tenant.name, dataset_id)).model_dump()


@router.delete("/{dataset_id}", status_code=204, summary="Delete a custom dataset", responses=responses(404, 409))
def delete_dataset(dataset_id: str, tenant: Tenant, store: StoreDep, settings: SettingsDep) -> Response:
    if dataset_id in BUILTIN:
        raise APIError(409, "conflict", f"{dataset_id} is built in and cannot be deleted")
    rec = owned(store.datasets, tenant.name, dataset_id)
    active = store.jobs.unfinished_using(tenant.name, DatasetRecord, dataset_id)
    if active:
        raise APIError(409, "conflict", f"dataset {dataset_id} is used by unfinished jobs: {', '.join(active[:5])}")
    store.datasets.delete(dataset_id, tenant.name)
    ArtifactStore.remove_tree(ArtifactStore(settings.artifact_root).dataset_dir(tenant.name, rec.id))
    return Response(status_code=204)
