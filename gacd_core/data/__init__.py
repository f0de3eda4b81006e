"""Datasets: readers of on-disk layouts, a registry, subsets, and batches.

Add a dataset: write a reader decorated with ``@register_dataset()`` that returns a
:class:`RawDataset`, import its file below, and add its entry to :data:`gacd_core.catalog.DATASETS`
(description, folder and files, classes, sizes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gacd_core.data import cifar, custom, stl10, stream  # noqa: F401  (registers the readers)
from gacd_core.data.base import (
    VAL_SEED,
    DatasetBundle,
    ImageSet,
    Split,
    channel_stats,
    check_cut,
    resize,
    select_classes,
    stratified_order,
    stratified_subset,
)
from gacd_core.data.loader import Batches, random_crop_flip
from gacd_core.data.preprocess import Transform, transform_of
from gacd_core.data.registry import DATASETS, RawDataset, register_dataset
from gacd_core.data.stream import StreamBatches, StreamedSet
from gacd_core.errors import DatasetError
from gacd_core.spec import DatasetSpec

__all__ = [
    "DATASETS",
    "Batches",
    "DatasetBundle",
    "ImageSet",
    "RawDataset",
    "Split",
    "StreamBatches",
    "StreamedSet",
    "Transform",
    "batches_of",
    "default_root",
    "load_dataset",
    "random_crop_flip",
    "register_dataset",
    "stratified_order",
    "stratified_subset",
]


def default_root() -> Path:
    """``$GACD_DATA_ROOT``, else ``./data``."""
    return Path(os.environ.get("GACD_DATA_ROOT", "data"))


def load_dataset(spec: DatasetSpec, device: torch.device | str | None = None) -> DatasetBundle:
    """Read the dataset a job names and cut it to the job's classes, size and subsets.

    Order of operations: read both splits; keep ``classes`` (relabelled); resize to ``image_size``;
    hold ``val_size`` training images out (stratified, fixed seed); keep ``train_subset`` of the rest
    and ``test_subset`` of the test split (stratified, fixed seed). Normalisation statistics are the
    dataset's published ones, else computed on its whole training split.

    ``imagefolder`` and ``shards`` are streamed (:func:`gacd_core.data.stream.load_streamed`): their
    splits stay on disk, read a batch at a time.

    Args:
        device: move the splits there (``dataset.on_device`` on a GPU).
    """
    root = Path(spec.root) if spec.root else default_root()
    raw = DATASETS.get(spec.name)(spec, root)
    if isinstance(raw, DatasetBundle):  # streamed: already the job's
        return raw
    train, test, names = raw.train, raw.test, list(raw.class_names)
    mean, std = raw.mean, raw.std
    if spec.classes is not None:
        check_cut(spec.classes, 0, len(names), len(train), spec.name)
        train, test = select_classes(train, spec.classes), select_classes(test, spec.classes)
        names = [names[c] for c in spec.classes]
    if spec.image_size is not None and (
        spec.image_size != train.images.shape[-1] or train.images.shape[-1] != train.images.shape[-2]
    ):
        train, test = resize(train, spec.image_size), resize(test, spec.image_size)
        mean = std = None  # recomputed below at the new size
    if train.images.shape[-1] != train.images.shape[-2]:
        raise DatasetError(
            f"images are {train.images.shape[-1]}x{train.images.shape[-2]}; set dataset.image_size to make them square",
            field="dataset.image_size",
        )
    if mean is None or std is None or spec.classes is not None:
        m, s = channel_stats(train.images)
        mean, std = (m[0], m[1], m[2]), (s[0], s[1], s[2])
    val = None
    if spec.val_size:
        check_cut(None, spec.val_size, len(names), len(train), spec.name)
        order = stratified_order(train.labels, VAL_SEED)
        val_idx, rest = order[: spec.val_size].sort().values, order[spec.val_size :].sort().values
        val, train = train.select(val_idx), train.select(rest)
    if spec.train_subset is not None:
        train = train.select(stratified_subset(train.labels, spec.train_subset))
    if spec.test_subset is not None:
        test = test.select(stratified_subset(test.labels, spec.test_subset))
    if device is not None:
        train, test = train.to(device), test.to(device)
        val = val.to(device) if val is not None else None
    transform = transform_of(spec, int(train.images.shape[-1]))
    if transform.size != train.images.shape[-1]:
        raise DatasetError(
            f"preprocessing.size {transform.size}: in-memory images are {train.images.shape[-1]} px; set "
            "dataset.image_size to that side (streamed datasets, imagefolder and shards, resize per image)",
            field="dataset.preprocessing.size",
        )
    info = {"source": raw.source, "classes": spec.classes, "preprocessing": transform.describe()}
    return DatasetBundle(spec.name, train, test, names, mean, std, val=val, info=info, transform=transform)


def batches_of(
    data: ImageSet | StreamedSet,
    batch_size: int,
    *,
    transform: Transform | None = None,
    workers: int | None = None,
    **kw: Any,
) -> Batches | StreamBatches:
    """Batches of an in-memory split (with ``transform``) or a streamed one (its own, ``workers``
    loader processes); ``kw``: :class:`Batches`' keyword arguments."""
    if isinstance(data, StreamedSet):
        return StreamBatches(data, batch_size, workers=workers, **kw)
    return Batches(data, batch_size, transform=transform, **kw)
