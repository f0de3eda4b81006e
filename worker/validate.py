"""Validation of uploads, on a worker (it needs torch): teachers and custom datasets.

A teacher is ready when its weights load strictly into the declared architecture (every key and shape),
every value is finite, a forward pass gives finite logits of the right shape, and its clean accuracy on
the test split of the dataset it was uploaded for is clearly above chance (:mod:`gacd_core.teacher_check`;
the figures are kept on the record per dataset). A state_dict (``.pt``, ``.pth``, ``.bin``, ``.t7``) is
read with ``torch.load(weights_only=True)``: a pickle that would build anything but tensors is refused
and never runs. Its normalisation is the file's, which the upload's must agree with, else the upload's,
else none. A valid teacher is rewritten as ``weights.safetensors`` with its architecture, classes and
normalisation (and where that came from) in the metadata, which is the only form jobs read.

A dataset is ready when :mod:`gacd_core.data.custom` reads it: an ``.npz`` (``allow_pickle=False``) or
a zip of an ImageFolder tree. Zips are unpacked here member by member, refusing absolute paths, ``..``,
links and special files, more than ``MAX_MEMBERS`` members, and archives that expand beyond
``MAX_RATIO`` times their size (a zip bomb); the bytes written are counted, not taken from the headers.
"""

from __future__ import annotations

import logging
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from gacd_core import catalog
from gacd_core.artifacts import TEACHER_FILES
from gacd_core.errors import DatasetError, GACDError
from service.state.artifacts import ArtifactStore
from service.state.records import TeacherRecord
from service.state.settings import Settings
from service.state.store import STORE_ERRORS, Store
from worker.lease import patiently

log = logging.getLogger("gacd.worker")
MAX_MEMBERS = 200_000
MAX_RATIO = 50  # expanded bytes per compressed byte, over the whole archive
MAX_EXPANDED = 64 << 30


def _dataset_spec(dataset: str, store: Store, settings: Settings, tenant: str) -> Any:
    """The job-specification form of the dataset a teacher was uploaded for."""
    from gacd_core.spec import DatasetSpec

    if dataset.startswith("ds_"):
        rec = store.datasets.get(dataset, tenant)
        if rec is None or rec.status != "ready" or rec.path is None:
            raise DatasetError(f"dataset {dataset} is not ready", field="dataset")
        path = ArtifactStore(settings.artifact_root).absolute(rec.path)
        return DatasetSpec(name="custom", path=str(path), augment=False)
    return DatasetSpec(name=dataset, root=str(settings.data_root), augment=False)


def _input_size(dataset: str, store: Store, tenant: str) -> int:
    entry = catalog.DATASETS.get(dataset)
    if entry is not None and entry.image_size:
        return entry.image_size
    if dataset.startswith("ds_"):
        rec = store.datasets.get(dataset, tenant)
        if rec and rec.image_size:
            return rec.image_size
    return 32


def _origin(model: Any) -> dict[str, Any]:
    """The record's source, input side and licence of a library or zoo teacher (none for ours)."""
    from gacd_core.report import model_origin

    fields = model_origin(model)
    fields.pop("resized_from", None)
    return fields


def validate_teacher(store: Store, settings: Settings, teacher_id: str) -> None:
    """Load an uploaded teacher, check it on its dataset, and mark it ``ready`` or ``invalid``.

    The normalisation is :func:`gacd_core.normalization.resolve_input`'s: the file's (gacd metadata,
    ``mu``/``sigma`` buffers), which the upload's (``normalization`` preset or ``mean``/``std``) must
    agree with, else the upload's, else none: never a dataset's statistics by assumption.
    The teacher's clean (and, where cheap, PGD-20) accuracy on the dataset's test split is stored per
    dataset under ``checks``; a teacher near chance is ``invalid`` with ``error_code`` ``teacher_unfit``
    unless the upload said ``allow_weak``.
    """
    rec = store.teachers.get(teacher_id)
    if rec is None or rec.status != "validating":
        return
    try:
        fields = _validated_teacher(rec, store, settings)
        patiently(f"teacher {teacher_id}", store.teachers.update, teacher_id, fields)
        if fields["status"] == "ready":
            log.info("teacher %s is ready (%s, %d classes)", teacher_id, rec.arch, fields["num_classes"])
        else:
            log.info("teacher %s is unfit: %s", teacher_id, fields["error"])
    except GACDError as exc:
        patiently(
            f"teacher {teacher_id}",
            store.teachers.update,
            teacher_id,
            {"status": "invalid", "error": exc.message, "error_code": exc.code},
        )
        log.info("teacher %s is invalid: %s", teacher_id, exc.message)
    except STORE_ERRORS:
        raise  # the task waits for the store and validates again
    except Exception as exc:
        log.exception("teacher %s: validation failed", teacher_id)
        error = f"validation failed: {type(exc).__name__}: {exc}"
        patiently(
            f"teacher {teacher_id}",
            store.teachers.update,
            teacher_id,
            {"status": "invalid", "error": error, "error_code": "internal_error"},
        )


def _validated_teacher(rec: TeacherRecord, store: Store, settings: Settings) -> dict[str, Any]:
    """The fields of the teacher once loaded and checked: ``ready`` (its weights rewritten as
    ``weights.safetensors``) or, near chance without ``allow_weak``, ``invalid`` as ``teacher_unfit``.

    Raises:
        GACDError: the weights do not load (or the normalisation does not agree with the file's).
    """
    from gacd_core.models import load_model_file, save_weights

    arts = ArtifactStore(settings.artifact_root)
    path = arts.absolute(rec.file)
    model = load_model_file(
        path,
        arch=rec.arch,
        num_classes=rec.num_classes or None,
        normalization=rec.normalization_requested,
        mean=rec.mean,
        std=rec.std,
        input_size=_input_size(rec.dataset, store, rec.tenant),
    )
    check, warning = _check(model, rec, store, settings)
    fields: dict[str, Any] = {
        "num_classes": model.num_classes,
        "mean": list(model.mean),
        "std": list(model.std),
        "normalization": model.normalization(),
        "checks": {rec.dataset: check},
        "warning": warning,
        **_origin(model),
    }
    if check.get("verdict") == "unfit" and not rec.allow_weak:
        fields.update({"status": "invalid", "error": check["message"], "error_code": "teacher_unfit"})
        return fields
    final = path.with_name(TEACHER_FILES["safetensors"])
    tmp = path.with_name("weights.validated.safetensors")
    info = {"dataset": rec.dataset, "teacher_id": rec.id, "source": rec.sha256}
    save_weights(model, tmp, info)
    if path != final:
        path.unlink(missing_ok=True)
    tmp.replace(final)
    fields.update({"status": "ready", "error": None, "error_code": None, "file": arts.relative(final)})
    return fields


def _check(model: Any, rec: TeacherRecord, store: Store, settings: Settings) -> tuple[dict[str, Any], str | None]:
    """The teacher check on the upload's dataset: (figures, warning). A dataset this worker cannot read
    leaves the teacher unmeasured (every job checks its teacher again before training)."""
    from gacd_core.data import load_dataset
    from gacd_core.errors import SpecError
    from gacd_core.jobs import resolve_device
    from gacd_core.teacher_check import check_teacher

    try:
        data = load_dataset(_dataset_spec(rec.dataset, store, settings, rec.tenant))
    except (DatasetError, SpecError) as exc:
        reason = f"not measured: {rec.dataset} cannot be read here ({exc.message})"
        log.warning("teacher %s: %s", rec.id, reason)
        return {"dataset": rec.dataset, "verdict": "not_measured", "reason": reason}, None
    device = resolve_device(settings.worker_device)
    check = check_teacher(
        model.to(device),
        data.test,
        dataset=data.name if not rec.dataset.startswith("ds_") else rec.dataset,
        num_classes=data.num_classes,
        device=device,
        dataset_norm=(data.mean, data.std),
    )
    model.to("cpu")
    if check.verdict == "unfit" and rec.allow_weak:
        check.allowed_weak = True
    log.info("teacher %s: %s", rec.id, check.summary())
    warning = check.message if check.verdict != "unfit" or rec.allow_weak else None
    return check.to_dict(), warning


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest``, refusing anything that could escape it or explode.

    Raises:
        DatasetError: naming the offending member.
    """
    compressed = archive.stat().st_size
    budget = min(MAX_EXPANDED, max(64 << 20, MAX_RATIO * compressed))
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"not a readable zip file: {exc}", field="file") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise DatasetError(f"the zip holds {len(members)} members; at most {MAX_MEMBERS}", field="file")
        declared = sum(m.file_size for m in members)
        if declared > budget:
            raise DatasetError(
                f"the zip expands to {declared} bytes, more than {MAX_RATIO}x its size (a zip bomb?)", field="file"
            )
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = 0
        for m in members:
            name = m.filename
            pure = PurePosixPath(name.replace("\\", "/"))
            if name.startswith(("/", "\\")) or pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
                raise DatasetError(f"the zip member {name!r} has an absolute path", field="file")
            if ".." in pure.parts:
                raise DatasetError(f"the zip member {name!r} leaves the archive's folder ('..')", field="file")
            mode = (m.external_attr >> 16) & 0xFFFF
            if mode and (stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))):
                raise DatasetError(f"the zip member {name!r} is a link or special file", field="file")
            target = (root / pure).resolve()
            if not target.is_relative_to(root):
                raise DatasetError(f"the zip member {name!r} leaves the archive's folder", field="file")
            if m.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(target, "wb") as out:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > budget:
                        raise DatasetError(
                            f"the zip expands beyond {MAX_RATIO}x its size (a zip bomb?); stopped at {name!r}",
                            field="file",
                        )
                    out.write(chunk)


def _single_root(folder: Path) -> Path:
    """A zip of ``mydata/train/...`` unpacks to ``folder/mydata``: use that as the dataset's root."""
    if (folder / "train").is_dir():
        return folder
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "train").is_dir():
        return entries[0]
    return folder


def validate_dataset(store: Store, settings: Settings, dataset_id: str) -> None:
    from gacd_core.data.base import channel_stats
    from gacd_core.data.custom import read_image_folder, read_npz

    rec = store.datasets.get(dataset_id)
    if rec is None or rec.status != "validating":
        return
    arts = ArtifactStore(settings.artifact_root)
    path = arts.absolute(rec.file)
    folder = path.parent / "folder"
    try:
        if rec.format == "npz":
            raw = read_npz(path)
            data_path = path
        else:
            shutil.rmtree(folder, ignore_errors=True)
            safe_extract(path, folder)
            data_path = _single_root(folder)
            raw = read_image_folder(data_path, None)
            path.unlink(missing_ok=True)  # the unpacked tree is what jobs read
        h, w = raw.train.images.shape[-2:]
        mean, std = (
            (raw.mean, raw.std) if raw.mean is not None and raw.std is not None else channel_stats(raw.train.images)
        )
        info: dict[str, Any] = {
            "status": "ready",
            "error": None,
            "path": arts.relative(data_path),
            "num_classes": len(raw.class_names),
            "class_names": [str(c) for c in raw.class_names][:1000],
            "train_size": len(raw.train),
            "test_size": len(raw.test),
            "image_size": int(h) if h == w else None,
            "mean": list(mean),
            "std": list(std),
        }
        patiently(f"dataset {dataset_id}", store.datasets.update, dataset_id, info)
        log.info("dataset %s is ready (%d classes, %d train images)", dataset_id, info["num_classes"], len(raw.train))
    except GACDError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        invalid = {"status": "invalid", "error": exc.message}
        patiently(f"dataset {dataset_id}", store.datasets.update, dataset_id, invalid)
    except STORE_ERRORS:
        raise  # the task waits for the store and validates again
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        log.exception("dataset %s: validation failed", dataset_id)
        error = f"validation failed: {type(exc).__name__}: {exc}"
        patiently(f"dataset {dataset_id}", store.datasets.update, dataset_id, {"status": "invalid", "error": error})
