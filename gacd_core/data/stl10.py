"""STL-10 (Coates et al. 2011), labelled splits, in its binary layout.

``<root>/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt}``: images as
uint8 in column-major 3x96x96 blocks, labels 1..10. The unlabelled split is not used. Set
``dataset.image_size`` (for example 32) to resize for CIFAR-sized models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gacd_core.data.base import ImageSet
from gacd_core.data.registry import RawDataset, locate, register_dataset
from gacd_core.errors import DatasetError
from gacd_core.spec import DatasetSpec

SIDE = 96


def _read_split(base: Path, split: str) -> ImageSet:
    x = np.fromfile(base / f"{split}_X.bin", dtype=np.uint8)
    y = np.fromfile(base / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1
    per = 3 * SIDE * SIDE
    if x.size % per != 0 or x.size // per != len(y):
        raise DatasetError(f"{base}/{split}_X.bin holds {x.size} bytes, not {len(y)} images of 3x{SIDE}x{SIDE}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DatasetError(f"{base}/{split}_y.bin: labels must be 1..10")
    # Each image is stored channel by channel, each channel column-major.
    images = x.reshape(-1, 3, SIDE, SIDE).transpose(0, 1, 3, 2)
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(y))


def _download(root: Path) -> None:
    from torchvision import datasets

    datasets.STL10(str(root), split="train", download=True)


@register_dataset()
def stl10(spec: DatasetSpec, root: Path) -> RawDataset:
    base = locate("stl10", spec, root, _download)
    names_file = base / "class_names.txt"
    names = (
        [n.strip() for n in names_file.read_text().splitlines() if n.strip()]
        if names_file.is_file()
        else [str(i) for i in range(10)]
    )
    return RawDataset(_read_split(base, "train"), _read_split(base, "test"), names, source=str(base))
