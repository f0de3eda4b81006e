"""Your own data: an ``.npz`` file or an ImageFolder directory.

``.npz``: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` (or ``train_images``,
``train_labels``, ``test_images``, ``test_labels``), images uint8 as (N, H, W, C) or (N, C, H, W) with
1 or 3 channels, labels integers from 0; optionally ``class_names`` as a string array. It is read
with ``allow_pickle=False``: object arrays are refused, nothing in the file can run.

ImageFolder: ``<path>/train/<class>/<image>`` and ``<path>/test/<class>/<image>`` (``val`` is accepted
for ``test``); classes are the sorted folder names of ``train``. Images of different sizes need
``dataset.image_size``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from gacd_core.data.base import ImageSet, from_numpy_images
from gacd_core.data.registry import RawDataset, register_dataset
from gacd_core.errors import DatasetError
from gacd_core.spec import DatasetSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif"}
_NPZ_KEYS = (
    ("x_train", "y_train", "x_test", "y_test"),
    ("train_images", "train_labels", "test_images", "test_labels"),
)
MAX_IMAGES = 2_000_000


@register_dataset()
def custom(spec: DatasetSpec, root: Path) -> RawDataset:
    if spec.path is None:
        raise DatasetError(
            "a custom dataset needs dataset.path (the worker resolves a dataset id to one)", field="dataset.path"
        )
    path = Path(spec.path)
    if path.is_dir():
        return read_image_folder(path, spec.image_size)
    if path.is_file() and path.suffix.lower() == ".npz":
        return read_npz(path)
    if not path.exists():
        raise DatasetError(f"no such file or directory: {path}", field="dataset.path")
    raise DatasetError(
        f"{path.name}: a custom dataset is an .npz file or an ImageFolder directory", field="dataset.path"
    )


def read_npz(path: Path) -> RawDataset:
    """Read and validate an .npz dataset (see the module docstring for its layout)."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path.name} is not a readable .npz file: {exc}", field="dataset.path") from None
    with npz:
        keys = set(npz.files)
        names = next((k for k in _NPZ_KEYS if set(k) <= keys), None)
        if names is None:
            raise DatasetError(
                f"{path.name} holds {sorted(keys)}; expected x_train, y_train, x_test, y_test "
                "(or train_images, train_labels, test_images, test_labels)",
                field="dataset.path",
            )
        try:
            arrays = [npz[k] for k in names]
            class_names = [str(c) for c in npz["class_names"]] if "class_names" in keys else None
        except ValueError as exc:  # object arrays need pickle, which is refused
            raise DatasetError(
                f"{path.name} holds object arrays, which are refused (only numeric arrays load): {exc}",
                field="dataset.path",
            ) from None
    train = from_numpy_images(arrays[0], arrays[1], f"{path.name}:{names[0]}")
    test = from_numpy_images(arrays[2], arrays[3], f"{path.name}:{names[2]}")
    if train.images.shape[2:] != test.images.shape[2:]:
        raise DatasetError(
            f"{path.name}: train images are {tuple(train.images.shape[2:])}, test images "
            f"{tuple(test.images.shape[2:])}",
            field="dataset.path",
        )
    for split, data in (("train", train), ("test", test)):
        if len(data) == 0:
            raise DatasetError(f"{path.name}: the {split} split holds no images", field="dataset.path")
    n_classes = int(max(int(train.labels.max()), int(test.labels.max()))) + 1
    if class_names is not None:
        if len(class_names) < n_classes:
            raise DatasetError(
                f"{path.name}: labels go up to {n_classes - 1} but only {len(class_names)} class_names are given",
                field="dataset.path",
            )
        n_classes = len(class_names)
    _check_classes(train, n_classes, path.name)
    return RawDataset(train, test, class_names or [str(i) for i in range(n_classes)], source=str(path))


def read_image_folder(path: Path, image_size: int | None) -> RawDataset:
    """Read an ImageFolder tree with ``train/`` and ``test/`` (or ``val/``) splits."""
    train_dir = path / "train"
    test_dir = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DatasetError(
            f"{path}: an ImageFolder dataset needs train/ and test/ (or val/) folders", field="dataset.path"
        )
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DatasetError(f"{train_dir}: needs at least two class folders", field="dataset.path")
    unknown = sorted(d.name for d in test_dir.iterdir() if d.is_dir() and d.name not in classes)
    if unknown:
        raise DatasetError(f"{test_dir}: classes {unknown} are not in train/", field="dataset.path")
    train = _read_split(train_dir, classes, image_size)
    test = _read_split(test_dir, classes, image_size)
    if train.images.shape[2:] != test.images.shape[2:]:
        raise DatasetError(
            f"{path}: train and test images differ in size; set dataset.image_size", field="dataset.image_size"
        )
    _check_classes(train, len(classes), path.name)
    return RawDataset(train, test, classes, source=str(path))


def _read_split(split_dir: Path, classes: list[str], image_size: int | None) -> ImageSet:
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if folder.is_dir():
            files += [
                (f, label)
                for f in sorted(folder.rglob("*"))
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not f.is_symlink()
            ]
    if not files:
        raise DatasetError(f"{split_dir}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})", field="dataset.path")
    if len(files) > MAX_IMAGES:
        raise DatasetError(f"{split_dir}: {len(files)} images is more than the {MAX_IMAGES} supported")
    arrays, first_size = [], None
    for f, _ in files:
        try:
            with Image.open(f) as opened:
                im = opened.convert("RGB")
                if image_size is not None:
                    im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"{f}: not a readable image ({exc})", field="dataset.path") from None
        if first_size is None:
            first_size = arr.shape
        elif arr.shape != first_size:
            raise DatasetError(
                f"{f} is {arr.shape[1]}x{arr.shape[0]} but {files[0][0].name} is {first_size[1]}x{first_size[0]}; "
                "set dataset.image_size to resize them all",
                field="dataset.image_size",
            )
        arrays.append(arr)
    images = torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return ImageSet(images, labels)


def _check_classes(train: ImageSet, n_classes: int, where: str) -> None:
    if n_classes < 2:
        raise DatasetError(f"{where}: a classification dataset needs at least two classes", field="dataset.path")
    counts = torch.bincount(train.labels, minlength=n_classes)
    empty = [i for i, c in enumerate(counts.tolist()) if c == 0]
    if empty:
        raise DatasetError(f"{where}: classes {empty[:10]} have no training images", field="dataset.path")
