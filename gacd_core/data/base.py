"""In-memory image datasets: uint8 tensors, deterministic subsets, class selection and resizing.

Every dataset read into memory becomes an :class:`ImageSet` per split: ``images`` as uint8
(N, 3, H, W) and ``labels`` as int64 (N,). Keeping uint8 makes even CIFAR-10 + CIFAR-100 fit in a few
hundred MB, lets the whole set live on the GPU, and keeps augmentation on whole batches. A streamed
split (:class:`~gacd_core.data.stream.StreamedSet`) keeps only its file index and labels; both are a
:class:`Split`, the little the evaluation reads of a split.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from gacd_core.errors import DatasetError

if TYPE_CHECKING:
    from gacd_core.data.preprocess import Transform
    from gacd_core.data.stream import StreamedSet

SUBSET_SEED = 0  # subsets do not depend on the job's seed: two jobs with one subset size see one set
VAL_SEED = 1


@dataclass
class ImageSet:
    """One split: uint8 images (N, 3, H, W) and int64 labels (N,). Indices into it are stable."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise DatasetError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise DatasetError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, index: torch.Tensor | Sequence[int]) -> ImageSet:
        idx = torch.as_tensor(index, dtype=torch.long, device=self.labels.device)
        return ImageSet(self.images[idx], self.labels[idx])

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))

    @property
    def side(self) -> int:
        """The images' width (the model's input size)."""
        return int(self.images.shape[-1])

    def chunks(self, size: int, pin: bool = False) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(start, uint8 images, labels)`` of ``size`` samples at a time, in order (``pin``: in pinned
        memory, for copies to a GPU that do not block, when the set is in host memory)."""
        for s in range(0, len(self), size):
            images, labels = self.images[s : s + size], self.labels[s : s + size]
            if pin and images.device.type == "cpu":
                images, labels = images.pin_memory(), labels.pin_memory()
            yield s, images, labels

    def decoded(self) -> ImageSet:
        """The set itself: its images are in memory already."""
        return self


class Split(Protocol):
    """What the evaluation reads of a split, in memory (:class:`ImageSet`) or streamed
    (:class:`~gacd_core.data.stream.StreamedSet`): its labels, subsets, its images in order, a chunk at
    a time, and (for the few steps that need a small set whole) the images decoded into an ImageSet."""

    labels: torch.Tensor

    def __len__(self) -> int: ...

    @property
    def side(self) -> int: ...

    def select(self, index: torch.Tensor | Sequence[int]) -> Split: ...

    def chunks(self, size: int, pin: bool = False) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]: ...

    def decoded(self) -> ImageSet: ...


@dataclass
class DatasetBundle:
    """The splits a job uses, with what the rest of the job needs to know about them.

    Every split is in memory, or every split is streamed (an ``imagefolder`` or ``shards`` job: the
    test and validation images are then decoded at the evaluation's transform as they are read, a batch
    at a time). ``transform``: the declared preprocessing of an in-memory split (None: the CIFAR
    augmentation); a streamed split holds its own.
    """

    name: str
    train: ImageSet | StreamedSet
    test: ImageSet | StreamedSet
    class_names: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    val: ImageSet | StreamedSet | None = None
    info: dict[str, Any] = field(default_factory=dict)
    transform: Transform | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return self.test.side

    def describe(self) -> dict[str, Any]:
        """The facts a report states about the data."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "train_size": len(self.train),
            "test_size": len(self.test),
            "val_size": len(self.val) if self.val is not None else 0,
            "image_size": self.image_size,
            **self.info,
        }


def check_cut(spec_classes: Sequence[int] | None, val_size: int, n_classes: int, n_train: int, name: str) -> None:
    """Refuse a job's ``classes`` that the dataset lacks and a ``val_size`` that leaves no training image.

    Raises:
        DatasetError: naming ``dataset.classes`` or ``dataset.val_size``.
    """
    bad = [c for c in spec_classes or () if c >= n_classes]
    if bad:
        raise DatasetError(
            f"classes {bad} do not exist; {name} has classes 0..{n_classes - 1}", field="dataset.classes"
        )
    if val_size and val_size >= n_train:
        raise DatasetError(
            f"val_size {val_size} leaves no training images (the split has {n_train})", field="dataset.val_size"
        )


def stratified_order(labels: torch.Tensor, seed: int = SUBSET_SEED) -> torch.Tensor:
    """A fixed ordering of indices that interleaves the classes.

    Indices are shuffled with ``seed``, then ordered by their rank within their class, so every prefix
    of the ordering is as class-balanced as the data allows and a shorter prefix is contained in a
    longer one (evaluation subsets are nested).
    """
    lab = labels.cpu().numpy()
    perm = torch.randperm(len(lab), generator=torch.Generator().manual_seed(seed)).numpy()
    shuffled = lab[perm]
    rank = np.empty(len(lab), dtype=np.int64)
    for c in np.unique(shuffled):
        pos = np.nonzero(shuffled == c)[0]
        rank[pos] = np.arange(len(pos))
    order = perm[np.lexsort((np.arange(len(lab)), rank))]
    return torch.from_numpy(order.copy())


def stratified_subset(labels: torch.Tensor, n: int, seed: int = SUBSET_SEED) -> torch.Tensor:
    """``n`` class-balanced indices, sorted (see :func:`stratified_order`)."""
    if n >= len(labels):
        return torch.arange(len(labels))
    return stratified_order(labels, seed)[:n].sort().values


def select_classes(data: ImageSet, classes: Sequence[int]) -> ImageSet:
    """Keep the samples of ``classes`` and relabel them 0..k-1 in the given order."""
    lut = torch.full((int(data.labels.max()) + 1 if len(data) else 1,), -1, dtype=torch.long)
    for new, old in enumerate(classes):
        if old < len(lut):
            lut[old] = new
    new_labels = lut[data.labels.cpu()]
    keep = torch.nonzero(new_labels >= 0).flatten()
    return ImageSet(data.images[keep.to(data.images.device)], new_labels[keep].to(data.labels.device))


def resize(data: ImageSet, size: int, chunk: int = 1024) -> ImageSet:
    """Resize to size x size with antialiased bilinear interpolation (done once, at load time)."""
    if data.images.shape[-1] == size and data.images.shape[-2] == size:
        return data
    out = torch.empty((len(data), 3, size, size), dtype=torch.uint8)
    for s in range(0, len(data), chunk):
        x = data.images[s : s + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[s : s + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return ImageSet(out, data.labels.clone())


class ChannelSums:
    """Exact per-channel sums of uint8 images and of their squares, added a chunk at a time, so the
    memory does not grow with the images; the mean and the unbiased standard deviation then follow from
    integers (the variance as ``(n * sum(v^2) - sum(v)^2) / (n (n - 1))``, without cancellation).

    A chunk is summed in float64, exact while its sum of squares stays below 2^53 (the chunk's size is
    chosen so), and its sums are carried on as Python integers."""

    def __init__(self) -> None:
        self.total, self.squares, self.count = [0, 0, 0], [0, 0, 0], 0

    def add(self, images: torch.Tensor) -> None:
        per_image = 255**2 * images.shape[-1] * images.shape[-2]
        for chunk in images.split(max(1, min(64, 2**53 // per_image))):
            wide = chunk.transpose(0, 1).reshape(3, -1).double()
            self.total = [t + int(v) for t, v in zip(self.total, wide.sum(1).tolist(), strict=True)]
            self.squares = [q + int(v) for q, v in zip(self.squares, (wide * wide).sum(1).tolist(), strict=True)]
            self.count += wide.shape[1]

    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and std in [0, 1] units (std at least 1e-3, as a constant channel would divide by 0)."""
        n, means, stds = self.count, [], []
        for total, squares in zip(self.total, self.squares, strict=True):
            means.append(total / n / 255)
            var = (n * squares - total * total) / (n * max(1, n - 1)) / 255**2  # Python integers until here
            stds.append(max(var**0.5, 1e-3))
        return tuple(means), tuple(stds)


def channel_stats(images: torch.Tensor, max_images: int = 50_000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (unbiased) of uint8 images in [0, 1] units (on at most ``max_images``),
    without a float copy of them (:class:`ChannelSums`)."""
    counts = ChannelSums()
    counts.add(images[:max_images])
    return counts.stats()


def from_numpy_images(images: np.ndarray, labels: np.ndarray, where: str, field: str = "dataset.path") -> ImageSet:
    """Validate arrays from a file and convert them to an :class:`ImageSet`.

    Accepts (N, H, W, 3), (N, 3, H, W), (N, H, W, 1), (N, 1, H, W) or (N, H, W) uint8 images; grey
    images are repeated over three channels. Errors name ``field``.
    """
    if images.dtype != np.uint8:
        raise DatasetError(f"{where}: images must be uint8, got {images.dtype}", field=field)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DatasetError(
            f"{where}: images must have shape (N, H, W, C) or (N, C, H, W), got {images.shape}", field=field
        )
    if images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        chw = images
    elif images.shape[-1] in (1, 3):
        chw = images.transpose(0, 3, 1, 2)
    else:
        raise DatasetError(f"{where}: images need 1 or 3 channels, got shape {images.shape}", field=field)
    if chw.shape[1] == 1:
        chw = np.repeat(chw, 3, axis=1)
    if chw.shape[2] < 8 or chw.shape[3] < 8:
        raise DatasetError(f"{where}: images are too small ({chw.shape[2]}x{chw.shape[3]}); at least 8x8", field=field)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{where}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}", field=field
        )
    if len(labels) != len(chw):
        raise DatasetError(f"{where}: {len(chw)} images but {len(labels)} labels", field=field)
    if len(labels) and labels.min() < 0:
        raise DatasetError(f"{where}: labels must be >= 0, found {int(labels.min())}", field=field)
    return ImageSet(torch.from_numpy(np.ascontiguousarray(chw)), torch.from_numpy(labels.astype(np.int64)))
