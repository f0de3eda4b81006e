"""Batches from an in-memory :class:`ImageSet`, with augmentation done on whole batches.

The standard CIFAR augmentation (random crop after zero-padding by 4, horizontal flip with p = 0.5)
runs as tensor indexing on the device that holds the data, so with ``dataset.on_device`` the whole
input pipeline stays on the GPU. Order and augmentation are drawn from generators seeded with
(seed, epoch): an epoch's batches are the same whether training ran straight through or resumed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from gacd_core.data.base import ImageSet

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a uint8 batch (N, C, H, W)."""
    n, _, h, w = images.shape
    dev = images.device
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = (offs[:, 0:1] + torch.arange(h)).to(dev)  # (n, h)
    cols = offs[:, 1:2] + torch.arange(w)  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(dev)
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


class Batches:
    """Iterate ``(x, y, idx)`` over an :class:`ImageSet`: float images in [0, 1] on ``device``, labels,
    and the samples' indices in the set (memory banks key on them).

    Args:
        data: the split.
        batch_size: images per batch.
        shuffle: draw a new order every epoch.
        augment: random crop and flip.
        drop_last: skip a last, smaller batch (training keeps batch statistics comparable).
        device: where batches go; data already there stays there.
        seed: with the epoch, seeds order and augmentation.
        channels_last: return batches in channels-last memory format.
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
        channels_last: bool = False,
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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.data)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        pin = self.device.type == "cuda" and self.data.images.device.type == "cpu"
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            src_idx = idx.to(self.data.images.device)
            images = self.data.images[src_idx]
            labels = self.data.labels[src_idx]
            if self.augment:
                images = random_crop_flip(images, gen)
            if pin:
                images, labels = images.pin_memory(), labels.pin_memory()
            x = images.to(self.device, non_blocking=True).float().div_(255)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels.to(self.device, non_blocking=True), idx.to(self.device)
