"""Datasets: every on-disk layout reads back exactly what was written, malformed or planted files are
refused with a typed error naming the field, subsets are stratified, deterministic and nested, and
batches and augmentation do what they say."""

from __future__ import annotations

import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _fakes import (
    CIFAR10_NAMES,
    STL10_NAMES,
    FakeData,
    RunsCode,
    make_cifar10,
    make_cifar100,
    make_image_folder,
    make_npz,
    make_stl10,
)

from gacd_core import catalog
from gacd_core.data import (
    Batches,
    ImageSet,
    load_dataset,
    random_crop_flip,
    stratified_order,
    stratified_subset,
)
from gacd_core.errors import DatasetError
from gacd_core.spec import DatasetSpec

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FakeData]:
    root = tmp_path_factory.mktemp("cifar10")
    return root, make_cifar10(root, n_train=100, n_test=40)


@pytest.fixture(scope="module")
def stl10(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FakeData]:
    root = tmp_path_factory.mktemp("stl10")
    return root, make_stl10(root, n_train=20, n_test=10)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.cpu().numpy()


def _counts(labels: torch.Tensor, k: int) -> list[int]:
    return torch.bincount(labels, minlength=k).tolist()


def _raises(spec: DatasetSpec) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_dataset(spec)
    return info.value


# --------------------------------------------------------------------------------------------------
# Built-in layouts
# --------------------------------------------------------------------------------------------------
def test_cifar10_reads_back_the_written_bytes(cifar10: tuple[Path, FakeData]) -> None:
    root, fake = cifar10
    b = load_dataset(DatasetSpec(name="cifar10", root=str(root)))
    assert b.train.images.shape == (100, 3, 32, 32) and b.train.images.dtype == torch.uint8
    assert b.test.images.shape == (40, 3, 32, 32)
    np.testing.assert_array_equal(_np(b.train.images), fake.train_images)  # batches 1..5 in order
    np.testing.assert_array_equal(_np(b.test.images), fake.test_images)
    np.testing.assert_array_equal(_np(b.train.labels), fake.train_labels)
    np.testing.assert_array_equal(_np(b.test.labels), fake.test_labels)
    assert b.train.labels.dtype == torch.int64
    assert b.class_names == CIFAR10_NAMES
    assert (b.mean, b.std) == ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))  # the published ones
    assert b.val is None
    d = b.describe()
    assert (d["num_classes"], d["train_size"], d["test_size"], d["image_size"]) == (10, 100, 40, 32)


def test_cifar10_rows_are_planes_of_red_green_blue(tmp_path: Path) -> None:
    fake = make_cifar10(tmp_path, n_train=5, n_test=2)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        row = pickle.load(f, encoding="bytes")[b"data"][0]
    b = load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path)))
    img = _np(b.train.images[0])
    assert img[0, 0, 0] == row[0] and img[0, 0, 1] == row[1] and img[0, 1, 0] == row[32]
    assert img[1, 0, 0] == row[1024] and img[2, 31, 31] == row[3071]
    np.testing.assert_array_equal(img, fake.train_images[0])


def test_cifar10_without_meta_names_classes_by_index(tmp_path: Path) -> None:
    make_cifar10(tmp_path, n_train=10, n_test=10)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    b = load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path)))
    assert b.class_names == [str(i) for i in range(10)]


def test_cifar100_reads_fine_labels(tmp_path: Path) -> None:
    fake = make_cifar100(tmp_path, n_train=200, n_test=100)
    b = load_dataset(DatasetSpec(name="cifar100", root=str(tmp_path)))
    assert b.train.images.shape == (200, 3, 32, 32) and b.test.images.shape == (100, 3, 32, 32)
    np.testing.assert_array_equal(_np(b.train.images), fake.train_images)
    np.testing.assert_array_equal(_np(b.train.labels), fake.train_labels)
    np.testing.assert_array_equal(_np(b.test.labels), fake.test_labels)
    assert int(b.train.labels.max()) == 99  # fine, not coarse (0..19), labels
    assert b.num_classes == 100
    assert b.class_names[:2] == ["fine_00", "fine_01"] and b.class_names[-1] == "fine_99"
    assert b.mean == (0.5071, 0.4865, 0.4409)


def test_stl10_transposes_column_major_images(stl10: tuple[Path, FakeData]) -> None:
    root, fake = stl10
    b = load_dataset(DatasetSpec(name="stl10", root=str(root)))
    assert b.train.images.shape == (20, 3, 96, 96) and b.test.images.shape == (10, 3, 96, 96)
    first = b.train.images[0]
    for c in range(3):
        assert int(first[c, 0, 0]) == 10 + c  # top-left
        assert int(first[c, 95, 0]) == 200 + c  # bottom-left: a row-major reader finds top-right here
        assert int(first[c, 0, 95]) == 100 + c  # top-right
    np.testing.assert_array_equal(_np(b.train.images), fake.train_images)
    np.testing.assert_array_equal(_np(b.test.images), fake.test_images)
    np.testing.assert_array_equal(_np(b.train.labels), fake.train_labels)  # 1..10 on disk -> 0..9
    assert sorted(set(b.train.labels.tolist())) == list(range(10))
    assert b.class_names == STL10_NAMES


def test_stl10_image_size_resizes(stl10: tuple[Path, FakeData]) -> None:
    root, fake = stl10
    b = load_dataset(DatasetSpec(name="stl10", root=str(root), image_size=32))
    assert b.train.images.shape == (20, 3, 32, 32) and b.test.images.shape == (10, 3, 32, 32)
    assert b.image_size == 32
    expected = F.interpolate(
        torch.from_numpy(fake.train_images).float(),
        size=(32, 32),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    diff = (b.train.images.float() - expected).abs()
    assert float(diff.max()) <= 0.5 + 1e-3  # rounded to uint8, nothing else
    np.testing.assert_array_equal(_np(b.train.labels), fake.train_labels)
    # Statistics are those of the resized training split, in [0, 1] units.
    x = b.train.images.double() / 255
    assert b.mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()), abs=1e-9)
    assert b.std == pytest.approx(tuple(x.std(dim=(0, 2, 3)).tolist()), abs=1e-9)


@pytest.mark.parametrize(
    ("name", "folder"),
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("stl10", "stl10_binary")],
)
def test_missing_data_names_the_expected_folder(tmp_path: Path, name: str, folder: str) -> None:
    err = _raises(DatasetSpec(name=name, root=str(tmp_path)))
    assert err.field == "dataset.root"
    assert str(tmp_path / folder) in err.message
    assert "dataset.download" in err.message


@pytest.mark.parametrize(
    ("name", "make"), [("cifar10", make_cifar10), ("cifar100", make_cifar100), ("stl10", make_stl10)]
)
def test_the_catalog_states_each_builtin_dataset_as_its_reader_finds_it(tmp_path: Path, name: str, make) -> None:
    entry = catalog.DATASETS[name]
    make(tmp_path, n_train=100, n_test=10)
    b = load_dataset(DatasetSpec(name=name, root=str(tmp_path)))
    assert (b.num_classes, b.image_size) == (entry.num_classes, entry.image_size)
    assert entry.builtin and entry.description
    for file in entry.files:  # each listed file is one the reader needs
        moved = tmp_path / entry.folder / file
        moved.rename(moved.with_suffix(".away"))
        assert f"lacks {file}." in _raises(DatasetSpec(name=name, root=str(tmp_path))).message
        moved.with_suffix(".away").rename(moved)
    assert not catalog.DATASETS["custom"].builtin


def test_partly_missing_cifar_lists_the_missing_files(tmp_path: Path) -> None:
    make_cifar10(tmp_path, n_train=10, n_test=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    err = _raises(DatasetSpec(name="cifar10", root=str(tmp_path)))
    assert err.field == "dataset.root"
    assert "lacks data_batch_4." in err.message


def test_cifar_pickle_that_names_os_system_is_refused(tmp_path: Path) -> None:
    make_cifar10(tmp_path, n_train=10, n_test=10)
    marker = tmp_path / "pwned"
    planted = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with open(planted, "wb") as f:
        pickle.dump({b"data": RunsCode(marker), b"labels": [0]}, f, protocol=2)
    assert b"system" in planted.read_bytes()  # the payload is in the file
    err = _raises(DatasetSpec(name="cifar10", root=str(tmp_path)))
    assert "data_batch_2" in err.message
    assert "refusing to load" in err.message and "system" in err.message
    assert not marker.exists()


def test_cifar_batch_with_wrong_row_size_is_refused(tmp_path: Path) -> None:
    make_cifar10(tmp_path, n_train=10, n_test=10)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    err = _raises(DatasetSpec(name="cifar10", root=str(tmp_path)))
    assert "3072" in err.message


# --------------------------------------------------------------------------------------------------
# Custom data: .npz
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["nhwc", "nchw", "gray", "gray_nhwc"])
@pytest.mark.parametrize("keys", ["x", "images"])
def test_npz_variants_load(tmp_path: Path, layout: str, keys: str) -> None:
    fake = make_npz(
        tmp_path / "d.npz",
        n_train=24,
        n_test=12,
        num_classes=3,
        size=16,
        layout=layout,
        keys=keys,
        class_names=["ant", "bee", "cow"],
    )
    b = load_dataset(DatasetSpec(name="custom", path=str(tmp_path / "d.npz")))
    assert b.train.images.shape == (24, 3, 16, 16) and b.test.images.shape == (12, 3, 16, 16)
    np.testing.assert_array_equal(_np(b.train.images), fake.train_images)
    np.testing.assert_array_equal(_np(b.test.images), fake.test_images)
    np.testing.assert_array_equal(_np(b.train.labels), fake.train_labels)
    np.testing.assert_array_equal(_np(b.test.labels), fake.test_labels)
    assert b.class_names == ["ant", "bee", "cow"]
    if layout.startswith("gray"):
        assert torch.equal(b.train.images[:, 0], b.train.images[:, 2])


def test_npz_without_class_names_names_them_by_index(tmp_path: Path) -> None:
    make_npz(tmp_path / "d.npz", num_classes=4, n_train=8, n_test=4)
    b = load_dataset(DatasetSpec(name="custom", path=str(tmp_path / "d.npz")))
    assert b.class_names == ["0", "1", "2", "3"]
    # No published statistics: computed on the training split.
    x = b.train.images.double() / 255
    assert b.mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()), abs=1e-9)


@pytest.mark.parametrize("key", ["x_train", "class_names"])
def test_npz_with_object_arrays_is_refused(tmp_path: Path, key: str) -> None:
    bad = np.empty(24, dtype=object) if key == "x_train" else np.array(["a", 1, None], dtype=object)
    make_npz(tmp_path / "d.npz", **{key: bad})
    err = _raises(DatasetSpec(name="custom", path=str(tmp_path / "d.npz")))
    assert "object arrays" in err.message
    assert err.field == "dataset.path"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"x_train": np.zeros((24, 16, 16, 3), np.float32)}, "images must be uint8, got float32"),
        ({"y_train": np.where(np.arange(24) == 5, -1, np.arange(24) % 3)}, "labels must be >= 0, found -1"),
        ({"y_train": np.arange(23) % 3}, "24 images but 23 labels"),
        ({"y_test": np.arange(12) % 3 + 0.0}, "labels must be a 1-D integer array"),
        ({"x_test": np.zeros((12, 8, 8, 3), np.uint8)}, "train images are (16, 16), test images (8, 8)"),
        (
            {"x_train": np.zeros((24, 4, 4, 3), np.uint8), "x_test": np.zeros((12, 4, 4, 3), np.uint8)},
            "too small",
        ),
        ({"x_train": np.zeros((24, 16, 16, 2), np.uint8)}, "1 or 3 channels"),
        ({"y_test": np.full(12, 5)}, "classes [3, 4, 5] have no training images"),
        ({"class_names": np.array(["a", "b"])}, "labels go up to 2 but only 2 class_names"),
    ],
)
def test_malformed_npz_is_refused(tmp_path: Path, overrides: dict, fragment: str) -> None:
    make_npz(tmp_path / "d.npz", n_train=24, n_test=12, num_classes=3, size=16, **overrides)
    err = _raises(DatasetSpec(name="custom", path=str(tmp_path / "d.npz")))
    assert fragment in err.message


def test_npz_with_wrong_keys_lists_the_expected_ones(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 8, 8, 3), np.uint8), labels=np.zeros(2, np.int64))
    err = _raises(DatasetSpec(name="custom", path=str(tmp_path / "d.npz")))
    assert err.field == "dataset.path"
    assert "['images', 'labels']" in err.message and "x_train, y_train, x_test, y_test" in err.message


def test_not_an_npz_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"this is not a zip file")
    assert _raises(DatasetSpec(name="custom", path=str(tmp_path / "d.npz"))).field == "dataset.path"
    err = _raises(DatasetSpec(name="custom", path=str(tmp_path / "absent.npz")))
    assert err.field == "dataset.path" and "no such file" in err.message


def test_npz_content_errors_name_the_path_field(tmp_path: Path) -> None:
    make_npz(tmp_path / "d.npz", x_train=np.zeros((24, 16, 16, 3), np.float32))
    assert _raises(DatasetSpec(name="custom", path=str(tmp_path / "d.npz"))).field == "dataset.path"


def test_npz_with_an_empty_test_split_gives_a_dataset_error(tmp_path: Path) -> None:
    make_npz(tmp_path / "d.npz", x_test=np.zeros((0, 16, 16, 3), np.uint8), y_test=np.zeros(0, np.int64))
    err = _raises(DatasetSpec(name="custom", path=str(tmp_path / "d.npz")))
    assert err.field == "dataset.path" and "test split holds no images" in err.message


# --------------------------------------------------------------------------------------------------
# Custom data: ImageFolder
# --------------------------------------------------------------------------------------------------
def test_image_folder_loads(tmp_path: Path) -> None:
    fake = make_image_folder(tmp_path / "ds", classes=("cat", "dog", "frog"), n_train=4, n_test=2, size=(16, 16))
    b = load_dataset(DatasetSpec(name="custom", path=str(tmp_path / "ds")))
    assert b.class_names == ["cat", "dog", "frog"]
    assert b.train.images.shape == (12, 3, 16, 16) and b.test.images.shape == (6, 3, 16, 16)
    np.testing.assert_array_equal(_np(b.train.images), fake.train_images)  # PNG is lossless
    np.testing.assert_array_equal(_np(b.test.images), fake.test_images)
    assert b.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert b.test.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_image_folder_accepts_val_for_test(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", classes=("a", "b"), n_train=2, n_test=3, test_dir="val")
    b = load_dataset(DatasetSpec(name="custom", path=str(tmp_path / "ds")))
    assert len(b.test) == 6 and b.class_names == ["a", "b"]


def test_image_folder_with_mixed_sizes_needs_image_size(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", n_train=2, n_test=2, sizes=[(16, 16), (20, 12)])
    err = _raises(DatasetSpec(name="custom", path=str(tmp_path / "ds")))
    assert err.field == "dataset.image_size"
    assert "12x20" in err.message
    b = load_dataset(DatasetSpec(name="custom", path=str(tmp_path / "ds"), image_size=24))
    assert b.train.images.shape == (6, 3, 24, 24) and b.test.images.shape == (6, 3, 24, 24)
    assert b.train.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_image_folder_with_one_class_is_refused(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", classes=("only",), n_train=2, n_test=1)
    err = _raises(DatasetSpec(name="custom", path=str(tmp_path / "ds")))
    assert err.field == "dataset.path" and "two class folders" in err.message


def test_image_folder_with_unknown_test_class_is_refused(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", classes=("a", "b"), n_train=2, n_test=1)
    shutil.copytree(tmp_path / "ds" / "test" / "a", tmp_path / "ds" / "test" / "zebra")
    err = _raises(DatasetSpec(name="custom", path=str(tmp_path / "ds")))
    assert "['zebra']" in err.message


# --------------------------------------------------------------------------------------------------
# Classes, subsets, validation split
# --------------------------------------------------------------------------------------------------
def test_classes_keeps_and_relabels_in_the_given_order(cifar10: tuple[Path, FakeData]) -> None:
    root, fake = cifar10
    b = load_dataset(DatasetSpec(name="cifar10", root=str(root), classes=[3, 1]))
    assert b.class_names == ["cat", "automobile"]
    assert b.num_classes == 2
    for split, images, labels in (
        (b.train, fake.train_images, fake.train_labels),
        (b.test, fake.test_images, fake.test_labels),
    ):
        keep = np.isin(labels, [3, 1])
        np.testing.assert_array_equal(_np(split.images), images[keep])
        np.testing.assert_array_equal(_np(split.labels), np.where(labels[keep] == 3, 0, 1))
    assert _counts(b.train.labels, 2) == [10, 10]
    # Statistics are recomputed on the kept classes.
    x = b.train.images.double() / 255
    assert b.mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()), abs=1e-9)
    assert b.mean != (0.4914, 0.4822, 0.4465)


def test_classes_that_do_not_exist_are_refused(cifar10: tuple[Path, FakeData]) -> None:
    root, _ = cifar10
    err = _raises(DatasetSpec(name="cifar10", root=str(root), classes=[3, 10]))
    assert err.field == "dataset.classes" and "[10]" in err.message


def _row_index(images: np.ndarray) -> dict[bytes, int]:
    return {img.tobytes(): i for i, img in enumerate(images)}


@pytest.mark.parametrize(("train_subset", "test_subset"), [(23, 7), (50, 20), (10, 10)])
def test_subsets_are_stratified_and_deterministic(
    cifar10: tuple[Path, FakeData], train_subset: int, test_subset: int
) -> None:
    root, fake = cifar10
    spec = DatasetSpec(name="cifar10", root=str(root), train_subset=train_subset, test_subset=test_subset)
    a, b = load_dataset(spec), load_dataset(spec)
    assert (len(a.train), len(a.test)) == (train_subset, test_subset)
    for split in (a.train, a.test):
        counts = _counts(split.labels, 10)
        assert max(counts) - min(counts) <= 1, counts
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    # Each kept image is an original one with its own label, kept in the original order.
    index = _row_index(fake.train_images)
    rows = [index[img.tobytes()] for img in _np(a.train.images)]
    assert rows == sorted(rows) and len(set(rows)) == train_subset
    np.testing.assert_array_equal(fake.train_labels[rows], _np(a.train.labels))


def test_subsets_do_not_depend_on_the_order_of_loading_options(cifar10: tuple[Path, FakeData]) -> None:
    root, _ = cifar10
    only_test = load_dataset(DatasetSpec(name="cifar10", root=str(root), test_subset=20))
    both = load_dataset(DatasetSpec(name="cifar10", root=str(root), train_subset=30, test_subset=20))
    assert torch.equal(only_test.test.images, both.test.images)


def test_stratified_subsets_are_nested() -> None:
    labels = torch.arange(200) % 10
    small, large = stratified_subset(labels, 20), stratified_subset(labels, 40)
    assert set(small.tolist()) < set(large.tolist())
    assert _counts(labels[small], 10) == [2] * 10 and _counts(labels[large], 10) == [4] * 10
    for n in range(1, 60):
        assert set(stratified_subset(labels, n).tolist()) <= set(stratified_subset(labels, n + 1).tolist())
    assert torch.equal(stratified_subset(labels, 250), torch.arange(200))


def test_stratified_subset_of_unbalanced_classes_balances_as_far_as_possible() -> None:
    labels = torch.tensor([0] * 30 + [1] * 30 + [2] * 30 + [3] * 3)
    counts = _counts(labels[stratified_subset(labels, 20)], 4)
    assert counts[3] == 3  # the small class is used up
    assert sum(counts) == 20 and max(counts[:3]) - min(counts[:3]) <= 1, counts
    order = stratified_order(labels)
    assert sorted(order.tolist()) == list(range(len(labels)))  # a permutation
    assert not torch.equal(stratified_order(labels, seed=1), order)


def test_val_size_holds_out_a_disjoint_stratified_split(cifar10: tuple[Path, FakeData]) -> None:
    root, fake = cifar10
    b = load_dataset(DatasetSpec(name="cifar10", root=str(root), val_size=20))
    assert b.val is not None
    assert (len(b.train), len(b.val), len(b.test)) == (80, 20, 40)
    assert _counts(b.val.labels, 10) == [2] * 10
    index = _row_index(fake.train_images)
    val_rows = {index[img.tobytes()] for img in _np(b.val.images)}
    train_rows = {index[img.tobytes()] for img in _np(b.train.images)}
    assert not val_rows & train_rows
    assert val_rows | train_rows == set(range(100))
    np.testing.assert_array_equal(fake.train_labels[sorted(val_rows)], _np(b.val.labels))
    assert b.describe()["val_size"] == 20
    again = load_dataset(DatasetSpec(name="cifar10", root=str(root), val_size=20, train_subset=30))
    assert torch.equal(again.val.images, b.val.images)  # type: ignore[union-attr]
    sub_rows = {index[img.tobytes()] for img in _np(again.train.images)}
    assert len(sub_rows) == 30 and not sub_rows & val_rows


def test_val_size_that_leaves_nothing_is_refused(tmp_path: Path) -> None:
    make_npz(tmp_path / "d.npz", n_train=6, n_test=3, num_classes=3)
    err = _raises(DatasetSpec(name="custom", path=str(tmp_path / "d.npz"), val_size=6))
    assert err.field == "dataset.val_size"


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_set() -> ImageSet:
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (10, 3, 8, 8), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.arange(10) % 3)


def _epoch(batches: Batches) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return list(batches)


def test_batches_without_augmentation_are_the_images_scaled(small_set: ImageSet) -> None:
    seen: list[int] = []
    for x, y, idx in Batches(small_set, 4, shuffle=True, seed=5):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 8, 8)
        torch.testing.assert_close(x, small_set.images[idx].float() / 255, rtol=0, atol=0)
        assert torch.equal(y, small_set.labels[idx])
        seen += idx.tolist()
    assert sorted(seen) == list(range(10))
    assert seen != list(range(10))  # shuffled


def test_batches_in_order_without_shuffle(small_set: ImageSet) -> None:
    idx = torch.cat([i for _, _, i in Batches(small_set, 3)])
    assert idx.tolist() == list(range(10))


def test_shuffle_depends_on_epoch_and_seed_only(small_set: ImageSet) -> None:
    batches = Batches(small_set, 4, shuffle=True, seed=1)
    first = [i.tolist() for _, _, i in batches]
    assert [i.tolist() for _, _, i in batches] == first  # the same epoch again: the same batches
    batches.set_epoch(1)
    second = [i.tolist() for _, _, i in batches]
    assert second != first
    resumed = Batches(small_set, 4, shuffle=True, seed=1)
    resumed.set_epoch(1)
    assert [i.tolist() for _, _, i in resumed] == second  # a fresh loader resumed at epoch 1
    other_seed = [i.tolist() for _, _, i in Batches(small_set, 4, shuffle=True, seed=2)]
    assert other_seed != first


@pytest.mark.parametrize(
    ("drop_last", "batch_size", "sizes"),
    [
        (False, 4, [4, 4, 2]),
        (True, 4, [4, 4]),
        (True, 5, [5, 5]),
        (True, 16, [10]),  # fewer images than a batch: one short batch rather than none
        (False, 16, [10]),
    ],
)
def test_drop_last(small_set: ImageSet, drop_last: bool, batch_size: int, sizes: list[int]) -> None:
    batches = Batches(small_set, batch_size, shuffle=True, drop_last=drop_last)
    got = [len(y) for _, y, _ in batches]
    assert got == sizes
    assert len(batches) == len(sizes)


def test_augmented_batches_are_crops_of_the_right_images(small_set: ImageSet) -> None:
    batches = Batches(small_set, 4, shuffle=True, augment=True, seed=3)
    first = _epoch(batches)
    again = _epoch(batches)
    for (x, y, idx), (x2, _, _) in zip(first, again, strict=True):
        assert torch.equal(x, x2)  # deterministic per (seed, epoch)
        assert torch.equal(y, small_set.labels[idx])
        pixels = (x * 255).round().to(torch.uint8)
        for img, i in zip(pixels, idx.tolist(), strict=True):
            assert _explain(img, small_set.images[i], pad=4) is not None


# --------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------
def _explain(out: torch.Tensor, image: torch.Tensor, pad: int) -> tuple[int, int, bool] | None:
    """The (row offset, column offset, flipped) of a zero-padded crop of ``image`` equal to ``out``."""
    h, w = image.shape[-2:]
    padded = F.pad(image, (pad, pad, pad, pad))
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            if torch.equal(out, crop):
                return dy, dx, False
            if torch.equal(out, crop.flip(-1)):
                return dy, dx, True
    return None


def _random_images(n: int, size: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)  # no zeros: padding shows


def test_random_crop_flip_keeps_shape_and_dtype() -> None:
    images = _random_images(5)
    out = random_crop_flip(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8 and out.is_contiguous()


def test_random_crop_flip_is_a_padded_crop_and_mirror() -> None:
    images = _random_images(48)
    out = random_crop_flip(images, torch.Generator().manual_seed(7))
    found = [_explain(o, i, pad=4) for o, i in zip(out, images, strict=True)]
    assert all(f is not None for f in found)
    flips = [f[2] for f in found if f is not None]
    offsets = {(f[0], f[1]) for f in found if f is not None}
    assert 10 < sum(flips) < 38  # about half flipped
    assert len(offsets) > 15  # offsets vary over the 9 x 9 grid
    assert any(dy != 4 or dx != 4 for dy, dx in offsets)
    again = random_crop_flip(images, torch.Generator().manual_seed(7))
    assert torch.equal(again, out)
    other = random_crop_flip(images, torch.Generator().manual_seed(8))
    assert not torch.equal(other, out)


def test_random_crop_flip_with_no_padding_only_mirrors() -> None:
    images = _random_images(16)
    out = random_crop_flip(images, torch.Generator().manual_seed(4), pad=0)
    flipped = [bool(torch.equal(o, i.flip(-1))) for o, i in zip(out, images, strict=True)]
    kept = [bool(torch.equal(o, i)) for o, i in zip(out, images, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each is exactly one of the two
    assert 0 < sum(flipped) < 16
    # The same draws on the mirrored batch give the mirror of every output.
    mirrored = random_crop_flip(images.flip(-1), torch.Generator().manual_seed(4), pad=0)
    assert torch.equal(mirrored, out.flip(-1))


def test_random_crop_moves_a_bright_pixel_by_at_most_the_padding() -> None:
    n, size, pad = 64, 16, 4
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    g = torch.Generator().manual_seed(11)
    where = torch.randint(0, size, (n, 2), generator=g)
    for k, (r, c) in enumerate(where.tolist()):
        images[k, :, r, c] = 255
    out = random_crop_flip(images, torch.Generator().manual_seed(12), pad=pad)
    shifts = Counter()
    for k, (r0, c0) in enumerate(where.tolist()):
        spots = torch.nonzero(out[k, 0] == 255).tolist()
        assert len(spots) <= 1
        assert int(out[k].sum()) == 255 * 3 * len(spots)  # nothing else appears
        if not spots:
            # Only a pixel within `pad` of an edge can leave the crop.
            assert min(r0, c0, size - 1 - r0, size - 1 - c0) < pad
            continue
        r, c = spots[0]
        assert torch.equal(out[k, :, r, c], torch.tensor([255, 255, 255], dtype=torch.uint8))
        dr = r - r0
        dc_plain, dc_mirror = c - c0, (size - 1 - c) - c0
        assert abs(dr) <= pad
        assert abs(dc_plain) <= pad or abs(dc_mirror) <= pad
        explained = _explain(out[k], images[k], pad)
        assert explained is not None
        dy, dx, flipped = explained
        assert dr == pad - dy  # a crop at row offset dy moves the pixel up by dy - pad
        assert (dc_mirror if flipped else dc_plain) == pad - dx
        shifts[dr] += 1
    assert len(shifts) > 3  # the pixel really moves, by different amounts


def test_random_crop_flip_runs_on_a_batch_of_one_and_keeps_the_input() -> None:
    images = _random_images(1)
    before = images.clone()
    random_crop_flip(images, torch.Generator().manual_seed(0))
    assert torch.equal(images, before)


def test_channel_stats_are_exact_and_chunked() -> None:
    """The mean is the integer sum over the pixel count, the std the unbiased one (numpy in float64 on
    a copy agrees to 1e-12), whatever the chunking; a constant channel gets the 1e-3 floor."""
    from gacd_core.data.base import ChannelSums, channel_stats

    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (130, 3, 12, 10), dtype=torch.uint8, generator=gen)
    x[:, 2] = 9
    mean, std = channel_stats(x)
    n = 130 * 12 * 10
    for c in range(2):
        assert mean[c] == int(x[:, c].to(torch.int64).sum()) / n / 255
        assert abs(std[c] - float(np.std(x[:, c].numpy() / 255.0, ddof=1))) < 1e-12
    assert mean[2] == 9 / 255 and std[2] == 1e-3
    halves = ChannelSums()
    halves.add(x[:61])
    halves.add(x[61:])
    assert halves.stats() == (mean, std)
