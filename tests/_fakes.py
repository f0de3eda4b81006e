"""Small fake datasets written in the real on-disk layouts, for tests that read data from disk.

Every writer returns a :class:`FakeData` holding what it wrote as the readers should return it:
uint8 images (N, 3, H, W) and int64 labels 0..k-1, train and test, with the class names. Images are
random (so every image is unique and orientation mistakes show) with a fixed seed; labels cycle
through the classes, so splits are class-balanced.
"""

from __future__ import annotations

import os
import pickle
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


@dataclass
class FakeData:
    """What a fake dataset holds, in the form the readers return it."""

    train_images: np.ndarray  # uint8 (N, 3, H, W)
    train_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


def _images(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3, h, w), dtype=np.uint8)


def _labels(n: int, num_classes: int, offset: int = 0) -> np.ndarray:
    return ((np.arange(n) + offset) % num_classes).astype(np.int64)


def _dump(path: Path, obj: Any) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: bytes, name: bytes) -> dict[bytes, Any]:
    return {
        b"batch_label": name,
        label_key: [int(v) for v in labels],
        b"data": images.reshape(len(images), 3072),  # rows of R (1024), G (1024), B (1024), row-major
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(images))],
    }


# Ten colours far apart in RGB (at least 0.5 apart in some channel), one per class of a learnable set.
_CLASS_COLOURS = np.array(
    [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0],
     [255, 0, 255], [0, 255, 255], [255, 255, 255], [128, 128, 128], [128, 0, 128]],
    dtype=np.int64,
)  # fmt: skip


def _learnable(rng: np.random.Generator, labels: np.ndarray, h: int, w: int) -> np.ndarray:
    """Images of each class's colour plus noise: a network learns them in a few steps, even robustly."""
    noise = rng.integers(-40, 41, size=(len(labels), 3, h, w))
    return np.clip(_CLASS_COLOURS[labels][:, :, None, None] + noise, 0, 255).astype(np.uint8)


def make_cifar10(
    root: str | Path, n_train: int = 50, n_test: int = 20, seed: int = 0, learnable: bool = False
) -> FakeData:
    """``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``.

    The training images are spread over the five batches in order (the first ``n_train // 5`` in
    ``data_batch_1`` and so on; the last batch takes the remainder). With ``learnable`` the images are
    their class's colour plus noise instead of noise alone, so that a teacher trained on them for a
    few steps is clearly above chance and passes the teacher check.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    train_labels, test_labels = _labels(n_train, 10), _labels(n_test, 10, offset=3)
    if learnable:
        train_images, test_images = _learnable(rng, train_labels, 32, 32), _learnable(rng, test_labels, 32, 32)
    else:
        train_images, test_images = _images(rng, n_train, 32, 32), _images(rng, n_test, 32, 32)
    data = FakeData(train_images, train_labels, test_images, test_labels, list(CIFAR10_NAMES))
    per = n_train // 5
    for i in range(5):
        stop = n_train if i == 4 else (i + 1) * per
        sl = slice(i * per, stop)
        name = f"training batch {i + 1} of 5".encode()
        _dump(
            base / f"data_batch_{i + 1}",
            _cifar_batch(data.train_images[sl], data.train_labels[sl], b"labels", name),
        )
    _dump(
        base / "test_batch",
        _cifar_batch(data.test_images, data.test_labels, b"labels", b"testing batch 1 of 1"),
    )
    _dump(
        base / "batches.meta",
        {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": per, b"num_vis": 3072},
    )
    return data


def make_cifar100(root: str | Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> FakeData:
    """``<root>/cifar-100-python/{train, test, meta}`` with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    names = [f"fine_{i:02d}" for i in range(100)]
    data = FakeData(
        _images(rng, n_train, 32, 32),
        _labels(n_train, 100),
        _images(rng, n_test, 32, 32),
        _labels(n_test, 100, offset=7),
        names,
    )
    for split, images, labels in (
        ("train", data.train_images, data.train_labels),
        ("test", data.test_images, data.test_labels),
    ):
        batch = _cifar_batch(images, labels, b"fine_labels", split.encode())
        batch[b"coarse_labels"] = [int(v) // 5 for v in labels]
        _dump(base / split, batch)
    _dump(
        base / "meta",
        {
            b"fine_label_names": [n.encode() for n in names],
            b"coarse_label_names": [f"coarse_{i:02d}".encode() for i in range(20)],
        },
    )
    return data


def make_stl10(root: str | Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> FakeData:
    """``<root>/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt}``.

    As in the real files, each image is 3 x 96 x 96 stored channel by channel with each channel in
    column-major order, and labels are stored as 1..10. The first training image has recognisable
    corners: ``[c, 0, 0] = 10 + c`` (top-left), ``[c, 95, 0] = 200 + c`` (bottom-left) and
    ``[c, 0, 95] = 100 + c`` (top-right).
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    data = FakeData(
        _images(rng, n_train, 96, 96),
        _labels(n_train, 10),
        _images(rng, n_test, 96, 96),
        _labels(n_test, 10, offset=5),
        list(STL10_NAMES),
    )
    if n_train:
        for c in range(3):
            data.train_images[0, c, 0, 0] = 10 + c
            data.train_images[0, c, 95, 0] = 200 + c
            data.train_images[0, c, 0, 95] = 100 + c
    for split, images, labels in (
        ("train", data.train_images, data.train_labels),
        ("test", data.test_images, data.test_labels),
    ):
        column_major = np.ascontiguousarray(images.transpose(0, 1, 3, 2))  # (N, C, W, H): rows vary fastest
        column_major.tofile(base / f"{split}_X.bin")
        (labels + 1).astype(np.uint8).tofile(base / f"{split}_y.bin")
    (base / "class_names.txt").write_text("\n".join(STL10_NAMES) + "\n")
    return data


def make_npz(
    path: str | Path,
    n_train: int = 24,
    n_test: int = 12,
    num_classes: int = 3,
    size: int = 16,
    layout: str = "nhwc",
    keys: str = "x",
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    **overrides: Any,
) -> FakeData:
    """An .npz dataset.

    Args:
        layout: how images are stored: ``nhwc``, ``nchw``, ``gray`` (N, H, W) or ``gray_nhwc``
            (N, H, W, 1). Grey images come back repeated over three channels.
        keys: ``x`` for x_train/y_train/x_test/y_test, ``images`` for train_images/train_labels/...
        class_names: stored as a unicode array ``class_names`` when given.
        overrides: arrays written instead of the generated ones, by their key in the file (for
            malformed files: ``x_train=np.zeros(..., np.float32)``, ``y_test=...``).
    """
    rng = np.random.default_rng(seed)
    grey = layout.startswith("gray")
    chans = 1 if grey else 3
    train = rng.integers(0, 256, size=(n_train, chans, size, size), dtype=np.uint8)
    test = rng.integers(0, 256, size=(n_test, chans, size, size), dtype=np.uint8)
    data = FakeData(
        np.repeat(train, 3, axis=1) if grey else train,
        _labels(n_train, num_classes),
        np.repeat(test, 3, axis=1) if grey else test,
        _labels(n_test, num_classes, offset=1),
        list(class_names) if class_names is not None else [str(i) for i in range(num_classes)],
    )

    def stored(a: np.ndarray) -> np.ndarray:
        if layout == "nhwc":
            return np.ascontiguousarray(a.transpose(0, 2, 3, 1))
        if layout == "nchw":
            return a
        if layout == "gray":
            return np.ascontiguousarray(a[:, 0])
        if layout == "gray_nhwc":
            return np.ascontiguousarray(a.transpose(0, 2, 3, 1))
        raise ValueError(f"unknown layout {layout!r}")

    names = {
        "x": ("x_train", "y_train", "x_test", "y_test"),
        "images": ("train_images", "train_labels", "test_images", "test_labels"),
    }[keys]
    arrays: dict[str, Any] = dict(
        zip(names, (stored(train), data.train_labels, stored(test), data.test_labels), strict=True)
    )
    if class_names is not None:
        arrays["class_names"] = np.array(list(class_names))
    arrays.update(overrides)
    np.savez(Path(path), **arrays)
    return data


def make_image_folder(
    root: str | Path,
    classes: Sequence[str] = ("cat", "dog", "frog"),
    n_train: int = 4,
    n_test: int = 2,
    size: tuple[int, int] = (16, 16),
    sizes: Sequence[tuple[int, int]] | None = None,
    test_dir: str = "test",
    seed: int = 0,
) -> FakeData:
    """``<root>/train/<class>/NNN.png`` and ``<root>/<test_dir>/<class>/NNN.png`` written with Pillow.

    Args:
        n_train, n_test: images per class.
        size: (height, width) of every image.
        sizes: (height, width) per image, cycled over the images of each split (mixed sizes); the
            returned ``FakeData`` then holds only labels (images of one array need one size).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    out: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    for split, n in (("train", n_train), (test_dir, n_test)):
        imgs, labs = [], []
        k = 0
        for label, name in enumerate(classes):  # the reader sorts class folders: pass them sorted
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = sizes[k % len(sizes)] if sizes else size
                k += 1
                img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                Image.fromarray(img).save(folder / f"{i:03d}.png")
                imgs.append(img.transpose(2, 0, 1))
                labs.append(label)
        out[split] = (imgs, labs)

    def stack(imgs: list[np.ndarray]) -> np.ndarray:
        return np.stack(imgs) if sizes is None else np.zeros((0, 3, 1, 1), np.uint8)

    return FakeData(
        stack(out["train"][0]),
        np.array(out["train"][1], np.int64),
        stack(out[test_dir][0]),
        np.array(out[test_dir][1], np.int64),
        list(classes),
    )


class RunsCode:
    """Unpickling this runs ``touch <marker>``: a stand-in for a planted payload."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(self.marker)}",))
