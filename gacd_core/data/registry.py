"""The dataset registry: ``@register_dataset()`` on a reader of one on-disk layout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gacd_core import catalog
from gacd_core.data.base import ImageSet
from gacd_core.registry import Registry
from gacd_core.spec import DatasetSpec


@dataclass
class RawDataset:
    """What a reader returns: both splits as stored, and known normalisation statistics if any."""

    train: ImageSet
    test: ImageSet
    class_names: list[str]
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    source: str = ""


Reader = Callable[[DatasetSpec, Path], RawDataset]
DATASETS: Registry[Reader] = Registry("dataset", catalog.DATASETS)
register_dataset = DATASETS.register
