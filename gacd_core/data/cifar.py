"""CIFAR-10 and CIFAR-100 in their python-batches layout (Krizhevsky 2009).

``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``<root>/cifar-100-python/{train, test, meta}``: the layout torchvision reads. The files are read
directly (no checksum is required, so rebuilt copies of the data load too) through a restricted
unpickler. ``download: true`` fetches the official archives with torchvision's downloader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gacd_core.data.base import ImageSet
from gacd_core.data.registry import RawDataset, locate, register_dataset
from gacd_core.data.safe_pickle import load_pickle
from gacd_core.errors import DatasetError
from gacd_core.normalization import CIFAR100_MEAN, CIFAR100_STD
from gacd_core.spec import DatasetSpec


def _get(batch: dict[Any, Any], key: str) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DatasetError(f"a CIFAR batch lacks the entry {key!r}")


def _read_batches(files: list[Path], label_key: str) -> ImageSet:
    images, labels = [], []
    for path in files:
        batch = load_pickle(path)
        if not isinstance(batch, dict):
            raise DatasetError(f"{path} does not hold a CIFAR batch (a dict)")
        data = np.asarray(_get(batch, "data"))
        lab = np.asarray(_get(batch, label_key), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DatasetError(f"{path}: expected uint8 rows of 3072 values, got {data.dtype} {data.shape}")
        if len(lab) != len(data):
            raise DatasetError(f"{path}: {len(data)} images but {len(lab)} labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def _names(meta_path: Path, key: str, n: int) -> list[str]:
    if not meta_path.is_file():
        return [str(i) for i in range(n)]
    meta = load_pickle(meta_path)
    raw = _get(meta, key) if isinstance(meta, dict) else None
    if not raw:
        return [str(i) for i in range(n)]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in raw]


def _download_cifar10(root: Path) -> None:
    from torchvision import datasets

    datasets.CIFAR10(str(root), train=True, download=True)


def _download_cifar100(root: Path) -> None:
    from torchvision import datasets

    datasets.CIFAR100(str(root), train=True, download=True)


@register_dataset()
def cifar10(spec: DatasetSpec, root: Path) -> RawDataset:
    base = locate("cifar10", spec, root, _download_cifar10)
    train = _read_batches([base / f"data_batch_{i}" for i in range(1, 6)], "labels")
    test = _read_batches([base / "test_batch"], "labels")
    names = _names(base / "batches.meta", "label_names", 10)
    from gacd_core.models.base import CIFAR10_MEAN, CIFAR10_STD

    return RawDataset(train, test, names, CIFAR10_MEAN, CIFAR10_STD, source=str(base))


@register_dataset()
def cifar100(spec: DatasetSpec, root: Path) -> RawDataset:
    base = locate("cifar100", spec, root, _download_cifar100)
    train = _read_batches([base / "train"], "fine_labels")
    test = _read_batches([base / "test"], "fine_labels")
    names = _names(base / "meta", "fine_label_names", 100)
    return RawDataset(train, test, names, CIFAR100_MEAN, CIFAR100_STD, source=str(base))
