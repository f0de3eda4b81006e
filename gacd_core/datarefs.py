"""Data by reference: image folders and WebDataset shards under the operator's data roots. Torch-free.

A job names such data as ``{"name": "imagefolder", "path": "<relative path>"}`` or ``{"name": "shards",
"path": ...}``. The path is looked up under the data roots (``GACD_DATA_ROOTS``: one or more directories,
separated by ``os.pathsep`` or given as a JSON list); the HTTP service looks under the tenant's own
sub-directory of each root, ``<root>/<tenant>/<path>``, the CLI directly under each root (and takes a
local absolute path too: the user owns that machine). The first root that holds the path wins.

Refusals, each a :class:`~gacd_core.errors.DatasetError` with its own stable ``code``:

- ``dataset_path_forbidden``: an absolute path (where only relative ones are taken), ``..``, a symbolic
  link that leaves the root, another tenant's folder;
- ``dataset_not_found``: nothing there;
- ``dataset_invalid``: no class folders, one class, non-image or unreadable files (counted and named),
  class sets that differ between the splits.

Layouts (the splits are sub-folders; ``train/`` is required, the evaluation split is ``test/``, or
``val/`` where there is no ``test/``, as ImageNet ships it; a ``val/`` beside a ``test/`` is not read):

- ``imagefolder``: ``<split>/<class>/<image>`` (nested folders inside a class are read too), classes
  the sorted folder names, as torchvision's ``ImageFolder`` names them;
- ``shards``: ``<split>/*.tar`` in the WebDataset layout: files grouped into samples by their name up
  to the first dot of the base name (``webdataset.tariterators.base_plus_ext``), each sample an image
  (``.jpg``, ``.png``, ...) and its integer label (``.cls``); other members (``.json``, ...) are
  ignored; class names from an optional ``classes.txt`` (one per line, line i names label i).

This module is what the API checks a reference with before it queues a job (it only scans names and
tar headers); the worker scans again, and also opens every image's header (``verify=True``).
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

from gacd_core.errors import DatasetInvalid, DatasetNotFound, DatasetPathForbidden

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif"})
SHARD_SUFFIX = ".tar"
TRAIN_SPLIT = "train"
EVAL_SPLITS = ("test", "val")  # the first present is the evaluation split
CLASSES_FILE = "classes.txt"
Format = Literal["imagefolder", "shards"]
FORMATS: tuple[Format, ...] = ("imagefolder", "shards")
NAMED = 5  # files named in a refusal
LISTED = 200  # folders GET /v1/datasets lists per tenant
_SAMPLE_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset.tariterators.base_plus_ext


def parse_roots(value: str | Sequence[str | Path] | None) -> list[Path]:
    """Data roots from ``GACD_DATA_ROOTS``'s text (``os.pathsep``-separated, or a JSON list) or a list."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        items = json.loads(text) if text.startswith("[") else text.split(os.pathsep)
        if not isinstance(items, list):
            raise ValueError("GACD_DATA_ROOTS: a JSON list of directories, or directories separated by ':'")
        return [Path(str(i).strip()) for i in items if str(i).strip()]
    return [Path(v) for v in value]


def env_roots() -> list[Path]:
    """The CLI's data roots: ``$GACD_DATA_ROOTS``, else ``$GACD_DATA_ROOT``, else ``./data``."""
    roots = parse_roots(os.environ.get("GACD_DATA_ROOTS"))
    return roots or [Path(os.environ.get("GACD_DATA_ROOT", "data"))]


def relative_parts(ref: str, field: str = "dataset.path") -> tuple[str, ...]:
    """The parts of a relative reference, refusing what could leave a root (no file system access).

    Raises:
        DatasetPathForbidden: an absolute path (POSIX or Windows), ``..``, a backslash or a NUL.
    """
    if not ref or not ref.strip():
        raise DatasetPathForbidden("an empty path names no folder", field=field)
    if "\x00" in ref or "\\" in ref:
        raise DatasetPathForbidden(f"{ref!r}: a path uses '/' and no NUL or backslash", field=field)
    if PurePosixPath(ref).is_absolute() or PureWindowsPath(ref).is_absolute() or PureWindowsPath(ref).drive:
        raise DatasetPathForbidden(
            f"{ref!r} is absolute; name a folder relative to your data root (GET /v1/datasets lists them)",
            field=field,
        )
    parts = tuple(p for p in PurePosixPath(ref).parts if p != ".")
    if ".." in parts:
        raise DatasetPathForbidden(f"{ref!r}: '..' is refused (a path stays under your data root)", field=field)
    if not parts:
        raise DatasetPathForbidden(f"{ref!r} names the data root itself, not a dataset folder in it", field=field)
    return parts


def resolve_reference(
    ref: str,
    roots: Sequence[Path],
    *,
    tenant: str | None = None,
    allow_absolute: bool = False,
    field: str = "dataset.path",
) -> Path:
    """The real folder a dataset reference names: under the first of ``roots`` that holds it.

    Args:
        tenant: look under ``<root>/<tenant>`` (the service); None: under ``<root>`` (the CLI).
        allow_absolute: take a local absolute path as it is (the CLI).

    Raises:
        DatasetPathForbidden: see :func:`relative_parts`; or the path, once its links are followed,
            leaves the tenant's part of the root (another tenant's folder is named so).
        DatasetNotFound: no root holds the path.
    """
    if allow_absolute and Path(ref).is_absolute():
        path = Path(ref)
        if not path.is_dir():
            raise DatasetNotFound(f"{ref}: no such folder", field=field)
        return path.resolve()
    parts = relative_parts(ref, field)
    for root in roots:
        base = root / tenant if tenant else root
        candidate = base.joinpath(*parts)
        if not os.path.lexists(candidate):
            continue
        real, real_base = candidate.resolve(), base.resolve()
        if not real.is_relative_to(real_base):
            other = tenant is not None and real.is_relative_to(root.resolve())
            why = "another tenant's folder" if other else "a place outside the data root"
            raise DatasetPathForbidden(f"{ref!r} is a symbolic link to {why}; it is refused", field=field)
        if not real.is_dir():
            raise DatasetNotFound(f"{ref!r} is a file; a dataset is a folder of splits", field=field)
        return real
    where = "your folder of the data roots" if tenant else "the data roots (GACD_DATA_ROOTS)"
    raise DatasetNotFound(f"no dataset folder {ref!r} under {where}; GET /v1/datasets lists them", field=field)


# --------------------------------------------------------------------------------------------------
# Scanning a folder: the index the readers stream from
# --------------------------------------------------------------------------------------------------
@dataclass
class SplitIndex:
    """One split's samples in a fixed order: an image file, or ``(shard, offset, size)`` in a tar."""

    name: str
    files: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    offsets: list[int] | None = None  # shards: where each image's bytes start in its tar
    sizes: list[int] | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataIndex:
    """A dataset folder, scanned: its format, classes and splits (the evaluation split's own name)."""

    format: Format
    path: Path
    class_names: list[str]
    train: SplitIndex
    test: SplitIndex
    ignored: list[str] = field(default_factory=list)  # split folders present but not read

    def describe(self) -> dict[str, object]:
        return {
            "format": self.format,
            "num_classes": len(self.class_names),
            "splits": {self.train.name: len(self.train), self.test.name: len(self.test)},
        }


def _splits(path: Path, what: str) -> tuple[Path, Path, list[str]]:
    train = path / TRAIN_SPLIT
    evals = [path / s for s in EVAL_SPLITS if (path / s).is_dir()]
    if not train.is_dir() or not evals:
        raise DatasetInvalid(
            f"{path.name}: {what} needs a train/ folder and a test/ (or val/) folder; it holds "
            f"{sorted(p.name for p in path.iterdir() if p.is_dir())[:10]}",
            field="dataset.path",
        )
    return train, evals[0], [p.name for p in evals[1:]]


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(items[:NAMED])
    return shown + (f" and {len(items) - NAMED} more" if len(items) > NAMED else "")


def _class_folders(split: Path) -> list[str]:
    return sorted(d.name for d in split.iterdir() if d.is_dir() and not d.name.startswith("."))


def _check_class_sets(path: Path, names: dict[str, Sequence[str]]) -> None:
    """Refuse no classes, one class, and splits whose class sets differ (naming the differences)."""
    (train_name, train), (eval_name, other) = names.items()
    if not train:
        raise DatasetInvalid(f"{path.name}/{train_name}: no class folders (expected {train_name}/<class>/<image>)")
    if len(train) < 2:
        raise DatasetInvalid(f"{path.name}/{train_name}: one class ({train[0]}); classification needs at least two")
    only_train, only_eval = sorted(set(train) - set(other)), sorted(set(other) - set(train))
    if only_train or only_eval:
        parts = [f"only in {train_name}/: {_named(only_train)}"] if only_train else []
        parts += [f"only in {eval_name}/: {_named(only_eval)}"] if only_eval else []
        raise DatasetInvalid(f"{path.name}: the splits have different classes ({'; '.join(parts)})")


def _folder_split(path: Path, split: Path, classes: list[str], root: Path | None, strangers: list[str]) -> SplitIndex:
    """The images of one split in the in-memory reader's order (sorted per class); non-image files
    added to ``strangers``, links that leave ``root`` refused."""
    index = SplitIndex(split.name)
    for label, name in enumerate(classes):
        folder = split / name
        if not folder.is_dir():
            continue
        if root is not None and not folder.resolve().is_relative_to(root.resolve()):
            raise DatasetPathForbidden(f"{folder.relative_to(path)} is a symbolic link that leaves the data root")
        for f in sorted(folder.rglob("*")):
            if f.name.startswith(".") or f.is_dir():
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES or not f.is_file():
                strangers.append(str(f.relative_to(path)))
                continue
            if f.is_symlink() and root is not None and not f.resolve().is_relative_to(root.resolve()):
                raise DatasetPathForbidden(f"{f.relative_to(path)} is a symbolic link that leaves the data root")
            index.files.append(str(f))
            index.labels.append(label)
    return index


def scan_imagefolder(path: Path, *, root: Path | None = None, verify: bool = False) -> DataIndex:
    """Index an image folder (see the module docstring); ``verify``: open every image's header too.

    Raises:
        DatasetInvalid, DatasetPathForbidden: as the module docstring lists.
    """
    train_dir, eval_dir, ignored = _splits(path, "an image folder")
    classes = _class_folders(train_dir)
    _check_class_sets(path, {train_dir.name: classes, eval_dir.name: _class_folders(eval_dir)})
    strangers: list[str] = []
    train = _folder_split(path, train_dir, classes, root, strangers)
    test = _folder_split(path, eval_dir, classes, root, strangers)
    if strangers:
        raise DatasetInvalid(
            f"{path.name}: {len(strangers)} file(s) are not images ({', '.join(sorted(IMAGE_SUFFIXES))}): "
            f"{_named(strangers)}"
        )
    for split in (train, test):
        if not split.labels:
            raise DatasetInvalid(f"{path.name}/{split.name}: no images")
    if verify:
        _verify(path, train.files + test.files)
    return DataIndex("imagefolder", path, classes, train, test, ignored)


def _unreadable(file: str) -> str | None:
    from PIL import Image  # Pillow, not torch: the API may check headers too

    try:
        with Image.open(file) as im:
            im.verify()
    except Exception as exc:  # PIL raises many types for a bad file
        return f"{Path(file).name} ({type(exc).__name__})"
    return None


def _verify(path: Path, files: list[str]) -> None:
    """Open every image's header (8 threads; Pillow releases the GIL while reading)."""
    with ThreadPoolExecutor(8) as pool:
        bad = [b for b in pool.map(_unreadable, files, chunksize=64) if b is not None]
    if bad:
        raise DatasetInvalid(f"{path.name}: {len(bad)} file(s) are not readable images: {_named(bad)}")


# --- shards -----------------------------------------------------------------------------------------
@dataclass
class _Shard:
    files: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


_SHARDS: dict[tuple[str, int, int], _Shard] = {}  # (path, size, mtime_ns): its samples, once read


def _read_shard(tar_path: Path, rel: str) -> _Shard:
    """The samples of one tar, in member order (cached by the file's size and modification time)."""
    st = tar_path.stat()
    key = (str(tar_path), st.st_size, st.st_mtime_ns)
    if key in _SHARDS:
        return _SHARDS[key]
    images: dict[str, tuple[int, int]] = {}
    labels: dict[str, int] = {}
    order: list[str] = []
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            for m in tar:
                match = _SAMPLE_KEY.match(m.name) if m.isfile() else None
                if match is None:
                    continue
                sample, ext = match.group(1), match.group(2).lower()
                if sample not in images and sample not in labels:
                    order.append(sample)
                if "." + ext in IMAGE_SUFFIXES:
                    images[sample] = (m.offset_data, m.size)
                elif ext == "cls":
                    raw = tar.extractfile(m)
                    text = raw.read(64).decode("ascii", "replace").strip() if raw else ""
                    if not text.isdigit():
                        raise DatasetInvalid(f"{rel}: {m.name} holds {text[:20]!r}, not a class number")
                    labels[sample] = int(text)
    except (tarfile.TarError, OSError) as exc:
        raise DatasetInvalid(f"{rel} is not a readable tar file ({exc})") from None
    lacking = [s for s in order if s not in images or s not in labels]
    if lacking:
        raise DatasetInvalid(f"{rel}: {len(lacking)} sample(s) lack an image or a .cls label: {_named(lacking)}")
    shard = _Shard([str(tar_path)] * len(order), [labels[s] for s in order])
    shard.offsets, shard.sizes = [images[s][0] for s in order], [images[s][1] for s in order]
    _SHARDS[key] = shard
    return shard


def _shard_split(path: Path, split: Path) -> SplitIndex:
    tars = sorted(p for p in split.iterdir() if p.is_file() and p.suffix == SHARD_SUFFIX)
    strangers = sorted(p.name for p in split.iterdir() if not p.name.startswith(".") and p not in tars)
    if strangers:
        raise DatasetInvalid(
            f"{path.name}/{split.name}: {len(strangers)} file(s) are not .tar shards: {_named(strangers)}"
        )
    if not tars:
        raise DatasetInvalid(f"{path.name}/{split.name}: no .tar shards")
    index = SplitIndex(split.name, offsets=[], sizes=[])
    for tar in tars:
        shard = _read_shard(tar, f"{path.name}/{split.name}/{tar.name}")
        index.files += shard.files
        index.labels += shard.labels
        assert index.offsets is not None and index.sizes is not None
        index.offsets += shard.offsets
        index.sizes += shard.sizes
    if not index.labels:
        raise DatasetInvalid(f"{path.name}/{split.name}: the shards hold no samples")
    return index


def scan_shards(path: Path, *, verify: bool = False) -> DataIndex:
    """Index a folder of WebDataset shards (see the module docstring); ``verify``: decode every image's
    header from its tar.

    Raises:
        DatasetInvalid: as the module docstring lists.
    """
    train_dir, eval_dir, ignored = _splits(path, "a shard set")
    train, test = _shard_split(path, train_dir), _shard_split(path, eval_dir)
    n = max(train.labels) + 1
    names_file = path / CLASSES_FILE
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) < n:
            raise DatasetInvalid(f"{path.name}: labels go up to {n - 1} but {CLASSES_FILE} names {len(names)} classes")
    else:
        names = [str(i) for i in range(n)]
    train_set = [names[c] for c in sorted(set(train.labels))]
    _check_class_sets(path, {train_dir.name: train_set, eval_dir.name: [names[c] for c in sorted(set(test.labels))]})
    if len(train_set) < len(names):
        missing = sorted(set(names) - set(train_set))
        raise DatasetInvalid(f"{path.name}/{train_dir.name}: classes without samples: {_named(missing)}")
    if verify:
        _verify_shards(path, train, test)
    return DataIndex("shards", path, names, train, test, ignored)


def _verify_shards(path: Path, *splits: SplitIndex) -> None:
    import io

    from PIL import Image

    bad: list[str] = []
    for split in splits:
        assert split.offsets is not None and split.sizes is not None
        for i, (f, off, size) in enumerate(zip(split.files, split.offsets, split.sizes, strict=True)):
            with open(f, "rb") as fh:
                fh.seek(off)
                data = fh.read(size)
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im.verify()
            except Exception:  # PIL raises many types for a bad file
                bad.append(f"{Path(f).name}#{i}")
    if bad:
        raise DatasetInvalid(f"{path.name}: {len(bad)} sample(s) are not readable images: {_named(bad)}")


def scan(fmt: str, path: Path, *, root: Path | None = None, verify: bool = False) -> DataIndex:
    """:func:`scan_imagefolder` or :func:`scan_shards`; errors name ``dataset.path``."""
    try:
        return (
            scan_imagefolder(path, root=root, verify=verify)
            if fmt == "imagefolder"
            else scan_shards(path, verify=verify)
        )
    except (DatasetInvalid, DatasetPathForbidden) as exc:
        exc.field = exc.field or "dataset.path"
        raise


def check_reference(
    fmt: str, ref: str, roots: Sequence[Path], *, tenant: str | None = None, allow_absolute: bool = False
) -> DataIndex:
    """Resolve ``ref`` under ``roots`` and scan it (headers not opened): what the API does before queueing."""
    path = resolve_reference(ref, roots, tenant=tenant, allow_absolute=allow_absolute)
    root = next((r for r in roots if path.is_relative_to(r.resolve())), None)
    return scan(fmt, path, root=root)


# --------------------------------------------------------------------------------------------------
# Listing: a tenant's folders with their image counts, cached
# --------------------------------------------------------------------------------------------------
_COUNTS: dict[str, tuple[tuple[object, ...], dict[str, object]]] = {}


def _signature(folder: Path) -> tuple[object, ...]:
    """What changes when a folder's images do: the modification times of its split and class folders
    (a file added or removed changes its folder's), or of its shards."""
    sig: list[object] = []
    for split in sorted(p for p in folder.iterdir() if p.is_dir()):
        sig.append((split.name, split.stat().st_mtime_ns))
        for entry in os.scandir(split):
            st = entry.stat()
            sig.append((entry.name, st.st_mtime_ns, st.st_size))
    return tuple(sig)


def _count_folder(folder: Path) -> dict[str, object]:
    """The format and the image count of each split of ``folder`` (names only; no image is opened)."""
    fmt: Format = "shards" if any((folder / TRAIN_SPLIT).glob("*" + SHARD_SUFFIX)) else "imagefolder"
    try:
        index = scan(fmt, folder)
    except (DatasetInvalid, DatasetPathForbidden) as exc:
        return {"format": fmt, "status": "invalid", "error": exc.message}
    return {"status": "available", "error": None, **index.describe()}


def list_folders(roots: Iterable[Path], tenant: str | None = None) -> list[dict[str, object]]:
    """The dataset folders directly under each root (``<root>/<tenant>/<folder>`` for a tenant), with
    their format, classes and image counts per split; at most :data:`LISTED`, counts cached until a
    split or class folder changes."""
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    for root in roots:
        base = root / tenant if tenant else root
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.name in seen or not (folder / TRAIN_SPLIT).is_dir() or len(out) >= LISTED:
                continue
            if not folder.resolve().is_relative_to(base.resolve()):
                continue  # a link out of the tenant's folder is not theirs to list
            seen.add(folder.name)
            sig = _signature(folder)
            cached = _COUNTS.get(str(folder))
            if cached is None or cached[0] != sig:
                cached = (sig, {**_count_folder(folder), "counted_at": time.time()})
                _COUNTS[str(folder)] = cached
            out.append({"path": folder.name, **cached[1]})
    return out
