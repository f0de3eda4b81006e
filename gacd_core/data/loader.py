"""Batches from an in-memory :class:`ImageSet`, with augmentation done on whole batches.

The standard CIFAR augmentation (random crop after zero-padding by 4, horizontal flip with p = 0.5)
runs as tensor indexing on the device that holds the data, so with ``dataset.on_device`` the whole
input pipeline stays on the GPU. Order and augmentation are an epoch's plan
(:func:`gacd_core.data.preprocess.epoch_plan`, seeded with (seed, epoch)), drawn as the streamed path
draws it: an epoch's batches are the same whether training ran straight through or resumed, and the
same as a streamed folder's on the same images. A job in several processes draws the same plan in
each and takes its slice of every batch (``shard``), so that the slices make the batch of one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from gacd_core.data.base import ImageSet
from gacd_core.data.preprocess import Transform, augment_batch, crop_flip, epoch_plan
from gacd_core.distributed import rows

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a uint8 batch (N, C, H, W)."""
    n = len(images)
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return crop_flip(images, offs, flip, pad)


class EpochBatches:
    """What the in-memory and the streamed batches share: the arguments, the epoch (and the batch to
    start it from), the number of batches and the epoch's plan (:func:`epoch_plan`).

    Args:
        data: the split (anything with ``len``).
        batch_size: images per batch.
        shuffle: draw a new order every epoch.
        augment: apply the training transform.
        drop_last: skip a last, smaller batch (training keeps batch statistics comparable).
        device: where batches go; data already there stays there.
        seed: with the epoch, seeds order and augmentation.
        channels_last: return batches in channels-last memory format.
        shard: ``(rank, world)``: each batch is the plan's whole batch cut to this process's rows
            (:func:`gacd_core.distributed.rows`); the number of batches is the whole batches'.
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
        channels_last: bool = False,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last and len(data) >= batch_size
        self.device = torch.device(device)
        self.seed = seed
        self.channels_last = channels_last
        self.epoch = 0
        self.start = 0
        self.shard = shard

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start`` (0-based; the plan is drawn whole again, the
        batches before ``start`` are not made)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def plan(self, transform: Transform | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """This epoch's order and each batch's augmentation parameters (``transform`` None: none)."""
        return epoch_plan(
            len(self.data),
            self.batch_size,
            len(self),
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=self.epoch,
            transform=transform if self.augment else None,
        )

    def rows_of(self, idx: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch's indices and augmentation parameters, cut to this process's rows (``shard``)."""
        if self.shard is None:
            return idx, params
        sl = rows(len(idx), *self.shard)
        return idx[sl], params[sl]

    def on_device(self, images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> Batch:
        """A uint8 batch as the trainer takes it: float in [0, 1] on the device, labels, indices."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels.to(self.device, non_blocking=True), idx.to(self.device)


class Batches(EpochBatches):
    """Iterate ``(x, y, idx)`` over an :class:`ImageSet`: float images in [0, 1] on ``device``, labels,
    and the samples' indices in the set (memory banks key on them).

    Args:
        data: the split.
        transform: the declared training transform (:class:`~gacd_core.data.preprocess.Transform`);
            default: the CIFAR augmentation (random crop after zero padding by 4, flip).
        kw: :class:`EpochBatches`' arguments.
    """

    def __init__(self, data: ImageSet, batch_size: int, *, transform: Transform | None = None, **kw: Any) -> None:
        super().__init__(data, batch_size, **kw)
        self.data: ImageSet = data
        side = int(data.images.shape[-1]) if data.images.ndim == 4 else 0
        self.transform = transform or Transform("random_crop", side)

    def __iter__(self) -> Iterator[Batch]:
        order, params = self.plan(self.transform)
        pin = self.device.type == "cuda" and self.data.images.device.type == "cpu"
        for b in range(self.start, len(self)):
            idx, p = self.rows_of(order[b * self.batch_size : (b + 1) * self.batch_size], params[b])
            src_idx = idx.to(self.data.images.device)
            images = self.data.images[src_idx]
            labels = self.data.labels[src_idx]
            if self.augment:
                images = augment_batch(images, p, self.transform)
            if pin:
                images, labels = images.pin_memory(), labels.pin_memory()
            yield self.on_device(images, labels, idx)
