"""Per-image correctness of one evaluation, as compact bit arrays: what a paired test (McNemar on the
same images, benchmarks/paired_stats.py) needs, small enough to commit beside a run's report.

The file (:data:`gacd_core.artifacts.PER_IMAGE`, JSON) holds, for each accuracy the protocol measured
(``clean``, each attack of ``evaluation.attacks``, ``autoattack``), one bit per image, 1 where the model's
prediction on that image (clean or attacked) was the true label, packed most significant bit first
(``numpy.packbits``) and base64-encoded: 10,000 images take 1,668 characters per accuracy. The images
are the evaluation set in its order (the split, or its class-stratified ``evaluation.subset``);
AutoAttack's bits cover its own stratified subset, whose positions in the evaluation set are given as a
bit mask of the same length. ``labels_sha256`` (of the labels as little-endian int64) lets a reader
check that two runs saw the same images in the same order before pairing them. Torch-free.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1


def pack(bits: Sequence[bool] | np.ndarray) -> str:
    """Booleans as packed bits (most significant first), base64."""
    arr = np.asarray(bits, dtype=bool)
    return base64.b64encode(np.packbits(arr).tobytes()).decode("ascii")


def unpack(text: str, n: int) -> np.ndarray:
    """The ``n`` booleans :func:`pack` wrote."""
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    return np.unpackbits(raw)[:n].astype(bool)


def labels_digest(labels: Sequence[int] | np.ndarray) -> str:
    return hashlib.sha256(np.asarray(labels, dtype="<i8").tobytes()).hexdigest()


def document(
    split: str,
    labels: Sequence[int] | np.ndarray,
    correct: Mapping[str, Sequence[bool] | np.ndarray],
    autoattack: Sequence[bool] | np.ndarray | None = None,
    autoattack_positions: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Any]:
    """The file's content: ``correct`` maps each accuracy to one bit per evaluation image; AutoAttack's
    bits are over the images at ``autoattack_positions`` (indices into the evaluation set)."""
    n = len(labels)
    for name, bits in correct.items():
        if len(bits) != n:
            raise ValueError(f"{name}: {len(bits)} bits for {n} images")
    doc: dict[str, Any] = {
        "format": FORMAT,
        "split": split,
        "n": n,
        "labels_sha256": labels_digest(labels),
        "bit_order": "numpy.packbits, most significant bit first, base64",
        "correct": {name: pack(bits) for name, bits in correct.items()},
    }
    if autoattack is not None and autoattack_positions is not None:
        mask = np.zeros(n, dtype=bool)
        mask[np.asarray(autoattack_positions, dtype=np.int64)] = True
        if int(mask.sum()) != len(autoattack):
            raise ValueError("AutoAttack: one bit per position")
        doc["autoattack"] = {"n": len(autoattack), "positions": pack(mask), "correct": pack(autoattack)}
    return doc


def write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")


class PerImage:
    """A per-image file read back: ``bits(name)`` for ``clean``, an attack or ``autoattack``."""

    def __init__(self, doc: dict[str, Any]) -> None:
        if doc.get("format") != FORMAT:
            raise ValueError(f"per-image format {doc.get('format')!r}, this reader knows {FORMAT}")
        self.doc = doc
        self.n: int = doc["n"]
        self.split: str = doc["split"]
        self.labels_sha256: str = doc["labels_sha256"]

    @classmethod
    def load(cls, path: Path) -> PerImage:
        return cls(json.loads(Path(path).read_text()))

    @property
    def names(self) -> list[str]:
        return [*self.doc["correct"], *(["autoattack"] if "autoattack" in self.doc else [])]

    def bits(self, name: str) -> np.ndarray:
        if name == "autoattack":
            aa = self.doc["autoattack"]
            return unpack(aa["correct"], aa["n"])
        return unpack(self.doc["correct"][name], self.n)

    def autoattack_positions(self) -> np.ndarray:
        return np.flatnonzero(unpack(self.doc["autoattack"]["positions"], self.n))
