"""Data by reference, streamed: image folders and WebDataset shards under data roots.

Same seed, same images: a folder read into memory and streamed gives the same batches (order and
augmentation, bit for bit), shards the same as the folder they were written from, and our shard index
the same samples as webdataset's own reader. Refusals carry their codes and name what is wrong. A
streamed job paused mid-epoch resumes to the weights of a run that never paused.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch
from _fakes import make_image_folder
from PIL import Image

from gacd_core import datarefs
from gacd_core.data import Batches, StreamBatches, load_dataset
from gacd_core.data.preprocess import Transform, resized_crop_box
from gacd_core.errors import DatasetInvalid, DatasetNotFound, DatasetPathForbidden, SpecError
from gacd_core.spec import DatasetSpec, parse_spec

pytestmark = pytest.mark.unit


def _both(root: Path, name: str = "ds", **dataset: Any) -> tuple[Any, Any]:
    """The folder ``root/name`` read into memory (``custom``) and streamed (``imagefolder``)."""
    memory = load_dataset(DatasetSpec(name="custom", path=str(root / name), **dataset))
    streamed = load_dataset(DatasetSpec(name="imagefolder", path=name, root=str(root), **dataset))
    return memory, streamed


def _pairs(memory: Any, streamed: Any, epoch: int, workers: int, batch_size: int = 5) -> list[tuple[Any, Any]]:
    a = Batches(
        memory.train, batch_size, shuffle=True, augment=True, seed=3, drop_last=True, transform=memory.transform
    )
    b = StreamBatches(streamed.train, batch_size, shuffle=True, augment=True, seed=3, drop_last=True, workers=workers)
    a.set_epoch(epoch)
    b.set_epoch(epoch)
    return list(zip(a, b, strict=True))


def _assert_same(pairs: list[tuple[Any, Any]]) -> None:
    assert pairs
    for (x1, y1, i1), (x2, y2, i2) in pairs:
        assert torch.equal(i1, i2) and torch.equal(y1, y2)
        assert torch.equal(x1, x2)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_folder_streamed_gives_the_batches_it_gives_in_memory(tmp_path: Path, workers: int) -> None:
    make_image_folder(tmp_path / "ds", n_train=8, n_test=3, size=(16, 16))
    memory, streamed = _both(tmp_path)
    assert len(streamed.train) == len(memory.train) == 24
    assert torch.equal(streamed.test.decoded().images, memory.test.images)  # the evaluation's images
    # the normalisation statistics: measured on the same training images, by running sums
    assert torch.allclose(torch.tensor(streamed.mean), torch.tensor(memory.mean), atol=1e-6)
    assert torch.allclose(torch.tensor(streamed.std), torch.tensor(memory.std), atol=1e-6)
    first, second = _pairs(memory, streamed, 1, workers), _pairs(memory, streamed, 2, workers)
    _assert_same(first)
    _assert_same(second)
    # the augmentation ran (crops and flips change pixels) and the epochs differ in order
    plain = memory.train.images[first[0][0][2]].float().div(255)
    assert not torch.equal(first[0][0][0], plain)
    assert first[0][0][2].tolist() != second[0][0][2].tolist()


def test_random_resized_crops_are_the_same_in_both_paths(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", n_train=6, n_test=2, size=(24, 24))
    pre = {"train": "random_resized_crop", "size": 24, "scale": [0.2, 0.6]}
    memory, streamed = _both(tmp_path, preprocessing=pre, val_size=3, train_subset=12)
    assert len(memory.train) == len(streamed.train) == 12
    assert torch.equal(memory.val.images, streamed.val.decoded().images)
    pairs = _pairs(memory, streamed, 1, 1, batch_size=4)
    _assert_same(pairs)
    assert streamed.info["preprocessing"]["train"] == "random_resized_crop"
    assert not torch.equal(pairs[0][0][0], memory.train.images[pairs[0][0][2]].float().div(255))


def test_a_resized_crop_box_stays_in_the_image_and_follows_its_draw() -> None:
    t = Transform("random_resized_crop", 8, scale=(0.08, 1.0), ratio=(0.75, 4 / 3))
    for u in torch.rand(200, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64):
        top, left, h, w = resized_crop_box(u, 30, 50, t)
        assert top >= 0 and top + h <= 30 and left >= 0 and left + w <= 50 and h >= 1 and w >= 1
    full = resized_crop_box([1.0, 0.5, 0.0, 0.0], 30, 30, Transform("random_resized_crop", 8, scale=(1.0, 1.0)))
    assert full == (0, 0, 30, 30)


def test_resize_and_centre_crop_follow_the_preset(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", n_train=2, n_test=2, size=(40, 60))
    spec = DatasetSpec(
        name="imagefolder",
        path="ds",
        root=str(tmp_path),
        preprocessing={"preset": "BicubicRes256Crop224", "size": 24, "resize": 32, "center_crop": 24},
    )
    data = load_dataset(spec)
    test = data.test.decoded()
    assert data.image_size == 24 and test.images.shape[1:] == (3, 24, 24)
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    first = TF.pil_to_tensor(Image.open(sorted((tmp_path / "ds" / "test" / "cat").iterdir())[0]).convert("RGB"))
    expected = TF.center_crop(TF.resize(first, [32], interpolation=InterpolationMode.BICUBIC, antialias=True), [24, 24])
    assert torch.equal(test.images[0], expected)
    assert data.info["preprocessing"]["interpolation"] == "bicubic"


# --- shards -----------------------------------------------------------------------------------------
def _write_shards(folder: Path, out: Path, per_shard: int = 7) -> None:
    """``out/<split>/NNNNNN.tar`` holding the folder's images in the folder index's order."""
    import webdataset as wds

    index = datarefs.scan_imagefolder(folder)
    (out).mkdir(parents=True)
    (out / "classes.txt").write_text("\n".join(index.class_names) + "\n")
    for split in (index.train, index.test):
        (out / split.name).mkdir()
        for s in range(0, len(split), per_shard):
            with wds.TarWriter(str(out / split.name / f"{s // per_shard:06d}.tar")) as sink:
                for k in range(s, min(s + per_shard, len(split))):
                    data = Path(split.files[k]).read_bytes()
                    sink.write({"__key__": f"s{k:05d}", "png": data, "cls": split.labels[k]})


def test_shards_stream_as_the_folder_they_were_written_from(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", n_train=6, n_test=2, size=(16, 16))
    _write_shards(tmp_path / "ds", tmp_path / "sh")
    folder = load_dataset(DatasetSpec(name="imagefolder", path="ds", root=str(tmp_path)))
    shards = load_dataset(DatasetSpec(name="shards", path="sh", root=str(tmp_path)))
    assert shards.class_names == folder.class_names and shards.info["format"] == "shards"
    assert torch.equal(shards.test.decoded().images, folder.test.decoded().images)
    a = StreamBatches(folder.train, 4, shuffle=True, augment=True, seed=1, workers=0)
    b = StreamBatches(shards.train, 4, shuffle=True, augment=True, seed=1, workers=2)
    _assert_same(list(zip(a, b, strict=True)))


def test_our_shard_index_reads_what_webdataset_reads(tmp_path: Path) -> None:
    import webdataset as wds

    make_image_folder(tmp_path / "ds", n_train=3, n_test=2, size=(8, 8))
    _write_shards(tmp_path / "ds", tmp_path / "sh", per_shard=4)
    ours = datarefs.scan_shards(tmp_path / "sh").train
    urls = [str(p) for p in sorted((tmp_path / "sh" / "train").glob("*.tar"))]
    theirs = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [int(s["cls"]) for s in theirs] == ours.labels
    assert ours.offsets is not None and ours.sizes is not None
    for sample, f, off, size in zip(theirs, ours.files, ours.offsets, ours.sizes, strict=True):
        with open(f, "rb") as fh:
            fh.seek(off)
            assert fh.read(size) == sample["png"]


# --- refusals ---------------------------------------------------------------------------------------
def test_references_that_leave_the_root_are_forbidden(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_image_folder(root / "alice" / "mine", n_train=1, n_test=1)
    make_image_folder(root / "bob" / "theirs", n_train=1, n_test=1)
    make_image_folder(tmp_path / "outside", n_train=1, n_test=1)
    (root / "alice" / "escape").symlink_to(tmp_path / "outside")
    (root / "alice" / "peek").symlink_to(root / "bob" / "theirs")
    ok = datarefs.resolve_reference("mine", [root], tenant="alice")
    assert ok == (root / "alice" / "mine").resolve()
    for ref, words in [
        ("/etc", "absolute"),
        (str(root / "alice" / "mine"), "absolute"),
        ("C:/data", "absolute"),
        ("../bob/theirs", "'..'"),
        ("mine/../../bob/theirs", "'..'"),
        ("escape", "outside the data root"),
        ("peek", "another tenant's folder"),
        (".", "data root itself"),
    ]:
        with pytest.raises(DatasetPathForbidden, match=words) as err:
            datarefs.resolve_reference(ref, [root], tenant="alice")
        assert err.value.code == "dataset_path_forbidden" and err.value.field == "dataset.path"
    with pytest.raises(DatasetNotFound) as missing:
        datarefs.resolve_reference("theirs", [root], tenant="alice")  # bob's, not under alice's part
    assert missing.value.code == "dataset_not_found"
    # the CLI takes a local absolute path; a second root is looked in when the first lacks the folder
    assert datarefs.resolve_reference(str(tmp_path / "outside"), [root], allow_absolute=True).name == "outside"
    assert datarefs.resolve_reference("theirs", [root / "alice", root / "bob"]).name == "theirs"


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)


def _invalid(tmp_path: Path, layout: dict[str, str | None]) -> DatasetInvalid:
    folder = tmp_path / "bad"
    for rel, content in layout.items():
        p = folder / rel
        if content is None:
            _png(p)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
    with pytest.raises(DatasetInvalid) as err:
        datarefs.scan_imagefolder(folder, verify=True)
    assert err.value.code == "dataset_invalid"
    return err.value


def test_folders_that_cannot_be_trained_on_are_invalid_and_say_why(tmp_path: Path) -> None:
    assert "train/" in _invalid(tmp_path / "a", {"test/cat/0.png": None}).message
    assert "no class folders" in _invalid(tmp_path / "b", {"train/0.png": None, "test/cat/0.png": None}).message
    one = _invalid(tmp_path / "c", {"train/cat/0.png": None, "test/cat/0.png": None}).message
    assert "one class (cat)" in one
    differ = _invalid(
        tmp_path / "d",
        {"train/cat/0.png": None, "train/dog/0.png": None, "test/cat/0.png": None, "test/emu/0.png": None},
    ).message
    assert "only in train/: dog" in differ and "only in test/: emu" in differ
    base = {"train/cat/0.png": None, "train/dog/0.png": None, "test/cat/0.png": None, "test/dog/0.png": None}
    strangers = _invalid(tmp_path / "e", {**base, "train/cat/notes.txt": "x", "test/dog/labels.csv": "y"}).message
    assert "2 file(s) are not images" in strangers and "notes.txt" in strangers and "labels.csv" in strangers
    broken = _invalid(tmp_path / "f", {**base, "train/dog/1.png": "not a png", "test/cat/9.jpg": "nor a jpeg"}).message
    assert "2 file(s) are not readable images" in broken and "1.png" in broken and "9.jpg" in broken


def test_shards_without_labels_or_with_other_files_are_invalid(tmp_path: Path) -> None:
    folder = tmp_path / "sh"
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
        with tarfile.open(folder / split / "0.tar", "w") as tar:
            for key, label in (("a", 0), ("b", 1)):
                for ext, data in (("png", _png_bytes()), ("cls", str(label).encode())):
                    if split == "test" and key == "b" and ext == "cls":
                        continue
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetInvalid, match=r"1 sample\(s\) lack an image or a \.cls label: b"):
        datarefs.scan_shards(folder)
    (folder / "test" / "0.tar").unlink()
    (folder / "test" / "readme.md").write_text("x")
    with pytest.raises(DatasetInvalid, match=r"not \.tar shards: readme\.md"):
        datarefs.scan_shards(folder)


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_file_that_stops_decoding_fails_the_epoch_with_its_name(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", n_train=4, n_test=1, size=(8, 8))
    data = load_dataset(DatasetSpec(name="imagefolder", path="ds", root=str(tmp_path), workers=0))
    victim = Path(data.train.split.files[5])
    victim.write_bytes(b"truncated")
    with pytest.raises(DatasetInvalid, match=f"1 image\\(s\\) do not decode: {victim.name}"):
        list(StreamBatches(data.train, 4, workers=0))


# --- listing ----------------------------------------------------------------------------------------
def test_listing_counts_a_tenants_folders_and_caches_the_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    make_image_folder(root / "alice" / "pets", n_train=3, n_test=2)
    make_image_folder(root / "alice" / "imagenet-like", n_train=1, n_test=1, test_dir="val")
    _write_shards(root / "alice" / "pets", root / "alice" / "pet-shards")
    (root / "alice" / "broken" / "train" / "cat").mkdir(parents=True)
    (root / "alice" / "broken" / "test").mkdir()
    make_image_folder(root / "bob" / "secret", n_train=1, n_test=1)
    listed = {f["path"]: f for f in datarefs.list_folders([root], "alice")}
    assert set(listed) == {"pets", "imagenet-like", "pet-shards", "broken"}
    assert listed["pets"]["splits"] == {"train": 9, "test": 6} and listed["pets"]["num_classes"] == 3
    assert listed["imagenet-like"]["splits"] == {"train": 3, "val": 3}
    assert listed["pet-shards"]["format"] == "shards" and listed["pet-shards"]["splits"] == {"train": 9, "test": 6}
    assert listed["broken"]["status"] == "invalid" and "one class" in str(listed["broken"]["error"])
    counted: list[Path] = []
    real = datarefs._count_folder
    monkeypatch.setattr(datarefs, "_count_folder", lambda f: counted.append(f) or real(f))
    datarefs.list_folders([root], "alice")
    assert counted == []  # nothing changed: every count came from the cache
    _png(root / "alice" / "pets" / "train" / "cat" / "new.png")
    again = {f["path"]: f for f in datarefs.list_folders([root], "alice")}
    assert counted == [root / "alice" / "pets"] and again["pets"]["splits"] == {"train": 10, "test": 6}


# --- specification ----------------------------------------------------------------------------------
def test_presets_fill_what_is_not_given_and_are_named() -> None:
    spec = parse_spec(
        {
            "method": "natural",
            "dataset": {"name": "imagefolder", "path": "in1k", "preprocessing": {"preset": "Res256Crop224"}},
            "evaluation": {"preset": "imagenet"},
        }
    )
    pre = spec.dataset.preprocessing
    assert pre is not None and (pre.train, pre.size, pre.resize, pre.center_crop) == (
        "random_resized_crop",
        224,
        256,
        224,
    )
    assert spec.evaluation.eps == 4 / 255 and spec.evaluation.subset == 5000 and spec.evaluation.autoattack
    assert spec.evaluation.preset_name() == "imagenet"
    custom = parse_spec({"method": "natural", "evaluation": {"preset": "imagenet", "eps": 8 / 255}})
    assert custom.evaluation.preset_name() == "custom"
    assert parse_spec({"method": "natural"}).evaluation.preset_name() == "cifar"


@pytest.mark.parametrize(
    ("dataset", "field"),
    [
        ({"name": "imagefolder"}, "dataset.path"),
        ({"name": "shards", "path": "x", "id": "ds_0"}, "dataset.id"),
        (
            {"name": "imagefolder", "path": "x", "preprocessing": {"size": 32, "center_crop": 28}},
            "dataset.preprocessing.size",
        ),
        ({"name": "imagefolder", "path": "x", "preprocessing": {"train": "mixup"}}, "dataset.preprocessing.train"),
    ],
)
def test_bad_folder_references_are_spec_errors(dataset: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({"method": "natural", "dataset": dataset})
    assert err.value.errors[0][0] == field


def test_an_in_memory_dataset_refuses_a_crop_of_another_size(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", n_train=2, n_test=1, size=(16, 16))
    with pytest.raises(Exception, match=r"preprocessing\.size 12"):
        load_dataset(DatasetSpec(name="custom", path=str(tmp_path / "ds"), preprocessing={"size": 12}))


def test_the_cli_resolves_relative_paths_under_gacd_data_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_image_folder(tmp_path / "b" / "ds", n_train=2, n_test=1, size=(8, 8))
    monkeypatch.setenv("GACD_DATA_ROOTS", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    data = load_dataset(DatasetSpec(name="imagefolder", path="ds"))
    assert len(data.train) == 6 and data.info["source"] == "ds"
    with pytest.raises(DatasetPathForbidden):
        load_dataset(DatasetSpec(name="imagefolder", path="../b/ds"))
    with pytest.raises(DatasetNotFound):
        load_dataset(DatasetSpec(name="imagefolder", path="nothing"))


# --- evaluation, streamed ---------------------------------------------------------------------------
EVAL = {"attacks": ["fgsm", "pgd20"], "eps_sweep": [0.0], "batch_size": 8}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 24-image test split streamed by two loader processes, and the protocol (AutoAttack on 6 of
    the images, PGD-20 examples kept) on it and on the same images decoded into memory."""
    from gacd_core.evaluation import evaluate_model
    from gacd_core.models import create_model
    from gacd_core.spec import EvaluationSpec

    root = tmp_path_factory.mktemp("eval")
    make_image_folder(root / "ds", classes=("ant", "bee", "cat", "dog"), n_train=2, n_test=6, size=(20, 20))
    data = load_dataset(DatasetSpec(name="imagefolder", path="ds", root=str(root), image_size=16, workers=2))
    torch.manual_seed(0)
    model = create_model("tiny_resnet", 4)  # AutoAttack's targeted attacks need 4 classes
    with torch.no_grad():  # at initialisation the logits barely move with the input: make them (and the
        model.linear.weight.mul_(300)  # attacks, AutoAttack's first breaking every point, so it is quick)
        model.linear.bias.zero_()
    ev = EvaluationSpec(**EVAL, autoattack=True, autoattack_subset=6)
    memory = data.test.decoded()
    run = {
        name: evaluate_model(model, split, ev, torch.device("cpu"), keep_adv=True)
        for name, split in (("of_memory", memory), ("of_stream", data.test))
    }
    return {"data": data, "memory": memory, "model": model, **run}


@pytest.mark.slow
def test_a_streamed_test_split_evaluates_exactly_as_its_images_in_memory(evaluated: dict[str, Any]) -> None:
    from gacd_core.evaluation import features_and_logits

    a, b = evaluated["of_memory"], evaluated["of_stream"]
    assert len(evaluated["data"].test) == 24 and evaluated["data"].image_size == 16
    assert {**a.metrics, "seconds": 0} == {**b.metrics, "seconds": 0}
    assert a.metrics["autoattack_acc"] is not None and a.metrics["autoattack_breakdown"]
    assert torch.equal(a.clean_logits, b.clean_logits) and torch.equal(a.clean_feats, b.clean_feats)
    assert torch.equal(a.adv_inputs, b.adv_inputs) and torch.equal(b.adv_positions, torch.arange(24))
    bits_a, bits_b = a.extra["per_image"], b.extra["per_image"]
    assert bits_a["correct"].keys() == bits_b["correct"].keys()
    assert all(torch.equal(bits_a["correct"][k], bits_b["correct"][k]) for k in bits_a["correct"])
    assert torch.equal(bits_a["autoattack"], bits_b["autoattack"]) and len(bits_b["autoattack"]) == 6
    assert torch.equal(bits_a["autoattack_positions"], bits_b["autoattack_positions"])
    # the features of a model on a split, as a teacher's across tasks: read a batch at a time
    model, memory = evaluated["model"], evaluated["memory"]
    whole = features_and_logits(model, memory.images.float().div(255), torch.device("cpu"), 8)
    streamed = features_and_logits(model, evaluated["data"].test, torch.device("cpu"), 8)
    assert all(torch.equal(x, y) for x, y in zip(whole, streamed, strict=True))


@pytest.mark.slow
def test_a_streamed_split_keeps_a_bounded_stratified_share_of_its_examples_and_chunks_autoattack(
    evaluated: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gacd_core import evaluation as E
    from gacd_core.attacks import AutoAttack
    from gacd_core.data import stratified_subset
    from gacd_core.spec import EvaluationSpec

    per_image = 3 * 16 * 16 * 4
    monkeypatch.setattr(E, "KEEP_ADV_BYTES", 5 * per_image + 7)  # room for 5 examples
    monkeypatch.setattr(E, "AUTOATTACK_CHUNK_BYTES", 4 * per_image)  # AutoAttack on 4 images at a time
    data, model, memory, whole = evaluated["data"], evaluated["model"], evaluated["memory"], evaluated["of_memory"]
    ev = EvaluationSpec(**EVAL, autoattack=True, autoattack_subset=6)
    got = E.evaluate_model(model, data.test, ev, torch.device("cpu"), keep_adv=True)
    kept = stratified_subset(data.test.labels, 5)
    assert torch.equal(got.adv_positions, kept) and torch.bincount(data.test.labels[kept]).tolist() == [2, 1, 1, 1]
    assert torch.equal(got.adv_inputs, whole.adv_inputs[kept])  # the same examples, five of them
    assert {k: v for k, v in got.metrics.items() if "autoattack" not in k and k != "seconds"} == {
        k: v for k, v in whole.metrics.items() if "autoattack" not in k and k != "seconds"
    }
    # AutoAttack in two chunks (4 + 2 images), chunk k seeded seed + k: each is the run on its images alone
    aa = memory.select(stratified_subset(memory.labels, 6))
    x = aa.images.float().div(255)
    parts = [
        AutoAttack(ev.eps, 4, seed=E.EVAL_SEED + k, batch_size=8).run(model, x[s : s + 4], aa.labels[s : s + 4])
        for k, s in enumerate((0, 4))
    ]
    bits = got.extra["per_image"]["autoattack"]
    assert torch.equal(bits, torch.cat([p.correct for p in parts]))
    assert got.metrics["autoattack_acc"] == pytest.approx(float(bits.float().mean()))
    # the breakdown: robust images after each attack, counted over both chunks
    names = list(dict.fromkeys(name for p in parts for name in p.breakdown))
    robust = {n: sum(round(p.breakdown.get(n, 0.0) * m) for p, m in zip(parts, (4, 2), strict=True)) for n in names}
    assert names and got.metrics["autoattack_breakdown"] == pytest.approx({n: r / 6 for n, r in robust.items()})
    # an in-memory split keeps every example, whatever the bound
    assert torch.equal(E.resident_positions(memory, 1), torch.arange(24))
