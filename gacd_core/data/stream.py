"""Streamed datasets: image folders and WebDataset shards read image by image through a ``DataLoader``.

:func:`load_streamed` resolves a job's ``imagefolder`` or ``shards`` reference under the data roots
(:mod:`gacd_core.datarefs`), scans it (every image's header opened once) and returns a
:class:`~gacd_core.data.base.DatasetBundle` whose training split is a :class:`StreamedSet`: the file
index and the labels, never the pixels. Each epoch, :class:`StreamBatches` draws the order and every
sample's augmentation parameters in the main process (:func:`~gacd_core.data.preprocess.epoch_plan`,
as the in-memory batches do) and hands them, batch by batch, to loader worker processes that decode
and transform the images; on CUDA the batches come through pinned memory.

The test split and the validation images held out by ``val_size`` are streamed too: a
:class:`StreamedSet` read at the evaluation's transform (:meth:`StreamedSet.chunks`, in order, by the
same loader processes), so that evaluating a folder of any size needs memory for a batch of images,
not for the folder. The few steps that need a small set whole (the teacher check's 500 images, the ONNX
check, AutoAttack a chunk at a time) decode just that (:meth:`StreamedSet.decoded`).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from gacd_core import catalog
from gacd_core.data.base import (
    VAL_SEED,
    ChannelSums,
    DatasetBundle,
    ImageSet,
    check_cut,
    stratified_order,
    stratified_subset,
)
from gacd_core.data.loader import Batch, EpochBatches
from gacd_core.data.preprocess import Transform, evaluation_view, train_view, transform_of
from gacd_core.data.registry import register_dataset
from gacd_core.datarefs import DataIndex, SplitIndex, env_roots, resolve_reference, scan
from gacd_core.errors import DatasetInvalid
from gacd_core.spec import DatasetSpec

log = logging.getLogger("gacd.data")
STATS_IMAGES = 1000  # training images the normalisation statistics are measured on


def default_workers() -> int:
    """Loader processes when the job does not say: one per core but one, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass
class StreamedSet:
    """Some samples of a scanned split: their rows in the split's index, labels, the transform, and the
    loader processes that decode them for :meth:`chunks` (None: :func:`default_workers`)."""

    split: SplitIndex
    rows: torch.Tensor
    labels: torch.Tensor
    transform: Transform
    workers: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def side(self) -> int:
        """The evaluation's image side (its centre crop): the model's input size."""
        return self.transform.center_crop

    def select(self, index: torch.Tensor | Sequence[int]) -> StreamedSet:
        idx = torch.as_tensor(index, dtype=torch.long)
        return replace(self, rows=self.rows[idx], labels=self.labels[idx])

    def chunks(self, size: int, pin: bool = False) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(start, uint8 images, labels)`` of ``size`` samples at a time, in order, at the evaluation's
        transform, decoded by the loader processes (none for a single chunk; ``pin``: through pinned
        memory); a file that does not decode stops with ``dataset_invalid``. The loader draws its
        workers' seed from a generator of its own: the global random state, which seeds an evaluation's
        attacks, is the same as when the images come from memory."""
        keys = [list(range(s, min(s + size, len(self)))) for s in range(0, len(self), size)]
        workers = (default_workers() if self.workers is None else self.workers) if len(keys) > 1 else 0
        for images, labels, pos in _batches(_loader(self, keys, workers, pin, False, torch.Generator())):
            yield int(pos[0]), images, labels

    def decoded(self) -> ImageSet:
        """The set decoded at the evaluation's transform into an in-memory uint8 :class:`ImageSet`: for
        the steps that need a small set whole (every image of it at once: mind its size)."""
        out = torch.empty(len(self), 3, self.side, self.side, dtype=torch.uint8)
        for s, images, _ in self.chunks(64):
            out[s : s + len(images)] = images
        return ImageSet(out, self.labels.clone())

    def relabelled(self, classes: list[int]) -> StreamedSet:
        """Keep ``classes``, relabelled 0..k-1 in that order (as :func:`~gacd_core.data.base.select_classes`)."""
        lut = torch.full((int(self.labels.max()) + 1,), -1, dtype=torch.long)
        for new, old in enumerate(classes):
            if old < len(lut):
                lut[old] = new
        new_labels = lut[self.labels]
        keep = torch.nonzero(new_labels >= 0).flatten()
        return replace(self, rows=self.rows[keep], labels=new_labels[keep])


def _open(split: SplitIndex, row: int) -> Image.Image:
    if split.offsets is None:
        return Image.open(split.files[row])
    assert split.sizes is not None
    with open(split.files[row], "rb") as fh:
        fh.seek(split.offsets[row])
        return Image.open(io.BytesIO(fh.read(split.sizes[row])))


class _Decoder(Dataset[tuple[torch.Tensor, int, int, str]]):
    """Decodes sample ``key = (position, params...)`` of a :class:`StreamedSet` in a loader worker;
    a file that does not decode comes back as its name (the main process refuses it)."""

    def __init__(self, data: StreamedSet, train: bool) -> None:
        self.data, self.train = data, train

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, int, int, str]:
        pos, params = (key[0], torch.tensor(key[1:], dtype=torch.float64)) if isinstance(key, tuple) else (key, None)
        row = int(self.data.rows[pos])
        t = self.data.transform
        try:
            with _open(self.data.split, row) as im:
                img = TF.pil_to_tensor(im.convert("RGB"))
        except Exception as exc:  # PIL raises many types for a bad file
            name = Path(self.data.split.files[row]).name
            where = name if self.data.split.offsets is None else f"{name}#{row}"
            empty = torch.zeros(3, t.size, t.size, dtype=torch.uint8)
            return empty, -1, pos, f"{where} ({type(exc).__name__})"
        out = train_view(img, params, t) if self.train and params is not None else evaluation_view(img, t)
        return out, int(self.data.labels[pos]), pos, ""


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # each loader process decodes one image at a time; the cores are the pool


def _loader(
    data: StreamedSet,
    keys: list[list[Any]],
    workers: int,
    pin: bool,
    train: bool,
    generator: torch.Generator | None = None,
) -> DataLoader:
    return DataLoader(
        _Decoder(data, train),
        batch_sampler=keys,  # lists of keys: the decoder reads tuples
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=_one_thread if workers else None,
        prefetch_factor=4 if workers else None,
        generator=generator,
    )


def _batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The loader's batches; a batch with files that did not decode stops with ``dataset_invalid``."""
    for images, labels, pos, errors in loader:
        bad = [e for e in errors if e]
        if bad:
            raise DatasetInvalid(f"{len(bad)} image(s) do not decode: {', '.join(bad[:5])}", field="dataset.path")
        yield images, labels, pos


class StreamBatches(EpochBatches):
    """Iterate ``(x, y, idx)`` over a :class:`StreamedSet`, as :class:`~gacd_core.data.loader.Batches`
    does over an in-memory split (the same arguments, the same plan of order and augmentation), with
    the images decoded by ``workers`` loader processes (the batches before ``start`` are not decoded)."""

    def __init__(self, data: StreamedSet, batch_size: int, *, workers: int | None = None, **kw: Any) -> None:
        super().__init__(data, batch_size, **kw)
        self.data: StreamedSet = data
        self.workers = default_workers() if workers is None else workers

    def __iter__(self) -> Iterator[Batch]:
        order, params = self.plan(self.data.transform)
        b0, bs = self.start, self.batch_size
        keys = [
            [(int(i), *p.tolist()) for i, p in zip(*self.rows_of(order[b * bs : (b + 1) * bs], params[b]), strict=True)]
            for b in range(b0, len(self))
        ]
        pin = self.device.type == "cuda"
        for images, labels, pos in _batches(_loader(self.data, keys, self.workers, pin, self.augment)):
            yield self.on_device(images, labels, pos)


def channel_stats_streamed(data: StreamedSet, batch_size: int = 64) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (unbiased) of ``data`` at the evaluation's transform, in [0, 1] units,
    from exact running sums over its batches (:class:`~gacd_core.data.base.ChannelSums`; no image kept)."""
    sums = ChannelSums()
    for _, images, _ in data.chunks(batch_size):
        sums.add(images)
    return sums.stats()


def _located(spec: DatasetSpec) -> tuple[Path, Path | None]:
    """The folder the job names, and the data root that holds it (None: a local absolute path)."""
    assert spec.path is not None
    roots = [Path(spec.root)] if spec.root else env_roots()
    path = resolve_reference(spec.path, roots, allow_absolute=True)
    root = next((r.resolve() for r in roots if path.is_relative_to(r.resolve())), None)
    return path, root


def _side(index: DataIndex) -> int:
    with _open(index.train, 0) as im:
        return min(im.size)


def load_streamed(spec: DatasetSpec) -> DatasetBundle:
    """The bundle of an ``imagefolder`` or ``shards`` job, every split streamed; classes, ``val_size``
    and subsets cut as :func:`gacd_core.data.load_dataset` cuts them.

    Raises:
        DatasetError: ``dataset_path_forbidden``, ``dataset_not_found``, ``dataset_invalid`` (see
            :mod:`gacd_core.datarefs`), or a bad ``classes``, ``val_size`` or size.
    """
    assert spec.name in catalog.STREAMED
    path, root = _located(spec)
    index = scan(spec.name, path, root=root, verify=True)
    t = transform_of(spec, _side(index))
    names = list(index.class_names)
    workers = default_workers() if spec.workers is None else spec.workers
    train, test = (
        StreamedSet(split, torch.arange(len(split)), torch.tensor(split.labels), t, workers)
        for split in (index.train, index.test)
    )
    check_cut(spec.classes, 0, len(names), len(train), path.name)
    if spec.classes is not None:
        train, test = train.relabelled(spec.classes), test.relabelled(spec.classes)
        names = [names[c] for c in spec.classes]
    val = None
    if spec.val_size:
        check_cut(None, spec.val_size, len(names), len(train), path.name)
        order = stratified_order(train.labels, VAL_SEED)
        val = train.select(order[: spec.val_size].sort().values)
        train = train.select(order[spec.val_size :].sort().values)
    if spec.train_subset is not None:
        train = train.select(stratified_subset(train.labels, spec.train_subset))
    if spec.test_subset is not None:
        test = test.select(stratified_subset(test.labels, spec.test_subset))
    m, s = channel_stats_streamed(train.select(stratified_subset(train.labels, STATS_IMAGES)))
    log.info("%s %s: %d training images streamed by %d loader processes", spec.name, path.name, len(train), workers)
    info = {
        "source": spec.path,
        "classes": spec.classes,
        "format": index.format,
        "streamed": True,
        "preprocessing": t.describe(),
    }
    return DatasetBundle(
        spec.name,
        train,
        test,
        names,
        (m[0], m[1], m[2]),
        (s[0], s[1], s[2]),
        val=val,
        info=info,
    )


@register_dataset()
def imagefolder(spec: DatasetSpec, root: Path) -> DatasetBundle:
    """An image folder under the data roots, streamed (:func:`load_streamed`)."""
    return load_streamed(spec)


@register_dataset()
def shards(spec: DatasetSpec, root: Path) -> DatasetBundle:
    """WebDataset shards under the data roots, streamed (:func:`load_streamed`)."""
    return load_streamed(spec)
