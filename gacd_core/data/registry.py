"""The dataset registry: ``@register_dataset()`` on a reader of one on-disk layout, and where a built-in
dataset's files are (:func:`locate`, from its entry in :data:`gacd_core.catalog.DATASETS`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gacd_core import catalog
from gacd_core.data.base import DatasetBundle, ImageSet
from gacd_core.errors import DatasetError
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


# A reader returns the splits as stored (cut to the job by load_dataset), or, for a streamed dataset, the
# job's bundle itself (gacd_core.data.stream)
Reader = Callable[[DatasetSpec, Path], "RawDataset | DatasetBundle"]
DATASETS: Registry[Reader] = Registry("dataset", catalog.DATASETS)
register_dataset = DATASETS.register


def locate(name: str, spec: DatasetSpec, root: Path, download: Callable[[Path], object]) -> Path:
    """The folder of the built-in dataset ``name`` under ``root``, once it holds every file its catalog
    entry lists; with ``dataset.download``, missing files are fetched first by ``download(root)``.

    Raises:
        DatasetError: files are missing (naming them), or the download failed.
    """
    entry = catalog.DATASETS[name]
    base = root / entry.folder

    def missing() -> list[str]:
        return [f for f in entry.files if not (base / f).is_file()]

    if missing() and spec.download:
        try:
            download(root)
        except Exception as exc:  # network errors come in many types
            raise DatasetError(f"could not download {name} into {root}: {exc}", field="dataset.download") from None
    lacking = missing()
    if lacking:
        raise DatasetError(
            f"{name} not found: {base} lacks {', '.join(lacking)}. Point dataset.root at the folder that "
            f"holds {entry.folder}/, or set dataset.download: true where the machine can reach the internet",
            field="dataset.root",
        )
    return base
