"""``/v1/datasets``: the built-in datasets (and whether the workers' data root holds them), the
tenant's own datasets: an ``.npz`` of uint8 images and int labels, or a zip of an ImageFolder tree, and
the tenant's folders under the data roots (``GACD_DATA_ROOTS``, ``<root>/<tenant>/<folder>``) that jobs
name by path (``{"name": "imagefolder", "path": ...}``, or ``shards``).

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
from gacd_core.datarefs import check_reference, list_folders, relative_parts
from gacd_core.errors import DatasetInvalid, DatasetNotFound, DatasetPathForbidden
from gacd_core.spec import DatasetSpec
from service.api.deps import QueueDep, SettingsDep, StoreDep, Tenant, owned
from service.api.errors import APIError, responses
from service.api.schemas import DatasetList, DatasetPublic
from service.api.uploads import file_encoding, receive_file, removed_on_error
from service.state.artifacts import ArtifactStore
from service.state.records import DatasetRecord, new_id, now_iso
from service.state.settings import Settings

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


# A refused folder reference: its HTTP status, by the refusal's code.
FOLDER_STATUS = {DatasetPathForbidden: 422, DatasetNotFound: 404, DatasetInvalid: 422}


def roots_visible(settings: Settings) -> bool:
    """Whether this process sees the data roots (the API may run where they are not mounted)."""
    return any(r.is_dir() for r in settings.data_roots)


def check_data_folder(spec: DatasetSpec, tenant: str, settings: Settings) -> None:
    """Refuse a job's ``imagefolder`` or ``shards`` reference before it is queued: a path that could
    leave the tenant's part of the roots always; one that names nothing there, or a folder that cannot
    be trained on, wherever this process sees the roots (the worker checks again in any case).

    Raises:
        APIError: 422 ``dataset_path_forbidden``, 404 ``dataset_not_found``, 422 ``dataset_invalid``.
    """
    assert spec.path is not None
    try:
        relative_parts(spec.path)
        if not settings.data_roots:
            raise DatasetNotFound("this service has no data roots (GACD_DATA_ROOTS)", field="dataset.path")
        if roots_visible(settings):
            check_reference(spec.name, spec.path, settings.data_roots, tenant=tenant)
    except (DatasetPathForbidden, DatasetNotFound, DatasetInvalid) as exc:
        status = next(v for k, v in FOLDER_STATUS.items() if isinstance(exc, k))
        raise APIError(status, exc.code, f"{exc.message}; nothing was queued", "dataset.path") from None


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
    return {"data": data, "folders": folders(tenant.name, settings)}


def folders(tenant: str, settings: Settings) -> list[dict[str, Any]]:
    """The tenant's folders under the data roots with their image counts (empty where they are not seen)."""
    if not roots_visible(settings):
        return []
    out = []
    for f in list_folders(settings.data_roots, tenant):
        splits: dict[str, int] = f.get("splits") or {}  # type: ignore[assignment]
        sizes = list(splits.items())
        out.append(
            {
                "name": f["format"],
                "path": f["path"],
                "status": f["status"],
                "error": f.get("error"),
                "num_classes": f.get("num_classes"),
                "train_size": sizes[0][1] if sizes else None,
                "test_size": sizes[1][1] if len(sizes) > 1 else None,
                "test_split": sizes[1][0] if len(sizes) > 1 else None,
            }
        )
    return out


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
