"""Models: every registered architecture follows the one model API, normalises inside, round-trips
through its weights file, and has the published size; weights from elsewhere load safely or fail
with a message that says why."""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import pytest
import torch
from _fakes import RunsCode
from safetensors.torch import save_file

from gacd_core.errors import WeightsError
from gacd_core.models import (
    MODELS,
    ImageClassifier,
    count_macs,
    count_params,
    create_model,
    load_model_file,
    load_weights,
    measure_throughput,
    read_info,
    save_weights,
)

pytestmark = pytest.mark.unit

BIG = {
    "resnet18",
    "preact_resnet18",
    "preact_resnet18_nofinalbn",
    "preact_resnet18_robustbench",
    "wrn_28_10",
    "wrn_34_10",
    "mobilenetv2",
    "wrn_16_4",
}
SMALL = sorted(set(MODELS.names()) - BIG)
ALL = MODELS.names()


@functools.cache
def _model(arch: str) -> ImageClassifier:
    """One instance per architecture for the whole module (the big ones take seconds to build).

    Its BatchNorm statistics are calibrated on a few random images: with fresh statistics (mean 0,
    variance 1) some deep networks give nearly the same logits for every input in eval mode, and
    the comparisons below would then hold whatever the model did with its input.
    """
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = None  # a cumulative average: one pass sets the batch's statistics
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


@functools.cache
def _x() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _one_thread():
    # Another job shares the two cores; one thread keeps the big models from thrashing.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_catalogued_model_is_covered() -> None:
    assert set(ALL) >= BIG
    assert len(ALL) == 14


# --------------------------------------------------------------------------------------------------
# The one model API
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_forward_and_backward(arch: str) -> None:
    model = _model(arch)
    model.train()
    model.zero_grad(set_to_none=True)
    x = _x()
    out = model(x)
    assert out.shape == (2, 10)
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    out.square().sum().backward()  # a loss that reaches every logit, so every parameter gets a gradient
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"
    zero = [n for n, p in model.named_parameters() if not bool(p.grad.abs().sum() > 0)]
    assert not zero, f"parameters with an all-zero gradient: {zero[:5]}"
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("arch", ALL)
def test_features_head_and_forward_all_agree(arch: str) -> None:
    model = _model(arch).eval()
    x = _x()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 4
        assert feats.shape[:2] == (2, model.num_features)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model.forward_head(feats)
        full = model(x)
        all_feats, all_logits = model.forward_all(x)
    assert pooled.shape == (2, model.num_features)
    torch.testing.assert_close(pooled, feats.mean(dim=(2, 3)))
    assert logits.shape == (2, model.num_classes)
    torch.testing.assert_close(logits, full, rtol=0, atol=0)
    torch.testing.assert_close(all_feats, pooled, rtol=0, atol=0)
    torch.testing.assert_close(all_logits, full, rtol=0, atol=0)
    assert model.arch == arch
    assert model.config() == {
        "arch": arch,
        "num_classes": 10,
        "mean": list(model.mean),
        "std": list(model.std),
    }


@pytest.mark.parametrize("arch", ALL)
def test_normalisation_is_inside_the_model(arch: str) -> None:
    model = _model(arch).eval()
    norm = model.normalize
    saved = norm.mean.clone(), norm.std.clone()
    x = _x()
    try:
        norm.mean.fill_(0.5)
        norm.std.fill_(0.25)
        assert model.mean == (0.5, 0.5, 0.5) and model.std == (0.25, 0.25, 0.25)
        with torch.no_grad():
            inside = model(x)
            norm.mean.fill_(0.0)
            norm.std.fill_(1.0)
            outside = model((x - 0.5) / 0.25)
            raw = model(x)
    finally:
        norm.mean.copy_(saved[0])
        norm.std.copy_(saved[1])
    torch.testing.assert_close(inside, outside, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(inside, raw, atol=1e-3)  # the normalisation did change the output


@pytest.mark.parametrize("arch", ALL)
def test_state_dict_has_no_normalisation_buffers(arch: str) -> None:
    keys = list(_model(arch).state_dict())
    assert not [k for k in keys if k.startswith("normalize") or k.endswith((".mean", ".std"))]
    assert keys  # and it does hold the weights


@pytest.mark.parametrize("arch", ALL)
def test_save_load_round_trip(arch: str, tmp_path: Path) -> None:
    model = _model(arch).eval()
    norm = model.normalize
    saved = norm.mean.clone(), norm.std.clone()
    try:
        norm.mean.copy_(torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1))
        norm.std.copy_(torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        path = save_weights(model, tmp_path / "m.safetensors", info={"dataset": "cifar10", "classes": ["a", "b"]})
        loaded = load_weights(path).eval()
        with torch.no_grad():
            expected, got = model(_x()), loaded(_x())
        mean, std = model.mean, model.std
    finally:
        norm.mean.copy_(saved[0])
        norm.std.copy_(saved[1])
    assert type(loaded) is type(model)
    assert (loaded.arch, loaded.num_classes) == (arch, 10)
    assert loaded.mean == mean and loaded.std == std
    assert loaded.mean == pytest.approx((0.1, 0.2, 0.3), rel=1e-6)
    assert loaded.std == pytest.approx((0.4, 0.5, 0.6), rel=1e-6)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert read_info(path) == {"dataset": "cifar10", "classes": ["a", "b"]}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("arch", SMALL)
def test_num_classes_sets_the_output_and_survives_a_round_trip(arch: str, tmp_path: Path) -> None:
    model = create_model(arch, num_classes=7).eval()
    assert model(_x()).shape == (2, 7)
    loaded = load_weights(save_weights(model, tmp_path / "m.safetensors"))
    assert loaded.num_classes == 7
    assert loaded.classifier.out_features == 7


# --------------------------------------------------------------------------------------------------
# Published sizes
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "params"),
    [("resnet18", 11_173_962), ("wrn_34_10", 46_160_474), ("mobilenetv2", 2_296_922)],
)
def test_parameter_counts_of_published_architectures(arch: str, params: int) -> None:
    assert count_params(_model(arch)) == params


def test_resnet18_macs() -> None:
    model = _model("resnet18")
    model.train()
    macs = count_macs(model)
    assert abs(macs - 556e6) / 556e6 < 0.01, macs
    assert model.training  # count_macs restores the mode


# --------------------------------------------------------------------------------------------------
# Weights from elsewhere
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny() -> ImageClassifier:
    torch.manual_seed(0)
    return create_model("tiny_resnet", num_classes=7).eval()


def _outputs(model: ImageClassifier) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(_x())


def test_pt_state_dict_with_wrapper_and_module_prefix_loads(tiny: ImageClassifier, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in tiny.state_dict().items()}}, path)
    loaded = load_model_file(path, arch="tiny_resnet", num_classes=7)
    assert (loaded.arch, loaded.num_classes) == ("tiny_resnet", 7)
    torch.testing.assert_close(_outputs(loaded), _outputs(tiny), rtol=0, atol=0)


def test_pt_without_arch_is_refused(tiny: ImageClassifier, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(WeightsError, match="does not say its architecture: give arch") as info:
        load_model_file(path)
    assert info.value.field == "arch"


def test_pt_num_classes_is_read_from_the_classifier(tiny: ImageClassifier, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.t7"  # ARD saves {'net': state_dict} under a .t7 name
    torch.save({"net": tiny.state_dict(), "acc": torch.tensor(0.5), "epoch": torch.tensor(3)}, path)
    loaded = load_model_file(path, arch="tiny_resnet")
    assert loaded.num_classes == 7
    torch.testing.assert_close(_outputs(loaded), _outputs(tiny), rtol=0, atol=0)


def test_identity_is_the_default_normalisation_of_foreign_files(tiny: ImageClassifier, tmp_path: Path) -> None:
    """A state_dict from elsewhere is not normalised unless someone says so (the public code feeds raw
    [0, 1] pixels); CIFAR statistics apply only when asked for, and the source says which."""
    path = tmp_path / "ckpt.pt"
    torch.save(tiny.state_dict(), path)
    plain = load_model_file(path, arch="tiny_resnet")
    assert plain.normalization() == {"name": "none", "mean": [0.0] * 3, "std": [1.0] * 3, "source": "default"}
    asked = load_model_file(path, arch="tiny_resnet", mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616))
    assert asked.normalization()["name"] == "cifar10" and asked.normalization()["source"] == "user"
    assert not torch.allclose(_outputs(asked), _outputs(plain), atol=1e-3)


def test_robustbench_mu_sigma_buffers_become_the_normalisation(tiny: ImageClassifier, tmp_path: Path) -> None:
    mu, sigma = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1), torch.tensor([0.5, 0.6, 0.7]).view(1, 3, 1, 1)
    path = tmp_path / "rb.pt"
    torch.save({**tiny.state_dict(), "mu": mu, "sigma": sigma}, path)
    loaded = load_model_file(path, arch="tiny_resnet")
    assert loaded.normalization()["source"] == "file"
    assert loaded.mean == pytest.approx((0.1, 0.2, 0.3)) and loaded.std == pytest.approx((0.5, 0.6, 0.7))
    with torch.no_grad():
        expected = tiny.eval()((_x() - mu) / sigma)
    torch.testing.assert_close(_outputs(loaded), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(WeightsError, match="normalises with its own mu"):
        load_model_file(path, arch="tiny_resnet", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def test_pt_for_another_architecture_lists_missing_and_unexpected_keys(tiny: ImageClassifier, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(WeightsError) as info:
        load_model_file(path, arch="tiny_wrn", num_classes=7)
    msg = str(info.value)
    assert "does not fit tiny_wrn with 7 classes" in msg
    assert "missing keys (block1.layer.0.bn1.weight" in msg
    assert "unexpected keys (" in msg and "layer1.0.conv1.weight" in msg


def test_pt_with_other_num_classes_lists_shape_mismatches(tiny: ImageClassifier, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(WeightsError) as info:
        load_model_file(path, arch="tiny_resnet", num_classes=10)
    msg = str(info.value)
    assert "2 shape mismatches" in msg
    assert "linear.weight: file (7, 32) vs tiny_resnet (10, 32)" in msg
    assert "missing" not in msg and "unexpected" not in msg


def test_nan_weights_are_refused(tiny: ImageClassifier, tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(WeightsError, match="NaN") as info:
        load_model_file(tmp_path / "nan.pt", arch="tiny_resnet", num_classes=7)
    assert "layer2.0.conv1.weight" in str(info.value)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(WeightsError, match="NaN"):
        load_model_file(tmp_path / "nan.safetensors", arch="tiny_resnet", num_classes=7)


def test_pt_whose_pickle_runs_code_is_refused(tiny: ImageClassifier, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny.state_dict(), "hook": RunsCode(marker)}, path)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="refused"):
        load_model_file(path, arch="tiny_resnet", num_classes=7)
    assert not marker.exists()
    # The payload is really in the file: its pickle calls os.system (posix.system on Linux).
    with zipfile.ZipFile(path) as zf:
        pkl = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    assert b"system" in pkl and b"touch" in pkl


def test_non_tensor_entries_are_refused(tmp_path: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(1), "note": "hello"}, tmp_path / "odd.pt")
    with pytest.raises(WeightsError, match="non-tensor entries"):
        load_model_file(tmp_path / "odd.pt", arch="tiny_resnet", num_classes=7)


def test_truncated_safetensors_is_refused(tiny: ImageClassifier, tmp_path: Path) -> None:
    data = save_weights(tiny, tmp_path / "m.safetensors").read_bytes()
    for name, cut in (
        ("head.safetensors", data[:5]),
        ("half.safetensors", data[: len(data) // 2]),
        ("tail.safetensors", data[:-64]),
    ):
        (tmp_path / name).write_bytes(cut)
        with pytest.raises(WeightsError, match=r"not a readable \.safetensors"):
            load_model_file(tmp_path / name)
        with pytest.raises(WeightsError, match=r"not a readable \.safetensors"):
            load_weights(tmp_path / name)


def test_safetensors_without_metadata_needs_arch(tiny: ImageClassifier, tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(path))
    with pytest.raises(WeightsError, match="does not say its architecture: give arch"):
        load_model_file(path)
    with pytest.raises(WeightsError, match="no gacd metadata"):
        load_weights(path)
    loaded = load_model_file(path, arch="tiny_resnet")
    torch.testing.assert_close(_outputs(loaded), _outputs(tiny), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"arch": "tiny_wrn"}, "holds a 'tiny_resnet', not a 'tiny_wrn'"),
        ({"num_classes": 10}, "has 7 classes, not 10"),
        ({"mean": (0.5, 0.5, 0.5)}, "normalises with mean"),
        ({"std": (0.25, 0.25, 0.25)}, "normalises with std"),
    ],
)
def test_metadata_conflicts_are_refused(tiny: ImageClassifier, tmp_path: Path, kwargs: dict, fragment: str) -> None:
    path = save_weights(tiny, tmp_path / "m.safetensors")
    with pytest.raises(WeightsError, match=fragment):
        load_model_file(path, **kwargs)
    agreeing = load_model_file(path, arch="tiny_resnet", num_classes=7)
    assert agreeing.arch == "tiny_resnet"


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "w.onnx").write_bytes(b"\0" * 16)
    with pytest.raises(WeightsError, match="unsupported weights file"):
        load_model_file(tmp_path / "w.onnx", arch="tiny_resnet", num_classes=7)
    with pytest.raises(WeightsError, match="no such file"):
        load_model_file(tmp_path / "absent.pt", arch="tiny_resnet", num_classes=7)


def test_measure_throughput_of_two_tiny_models() -> None:
    a, b = create_model("tiny_resnet").train(), create_model("tiny_wrn").eval()
    speeds = measure_throughput({"a": a, "b": b}, torch.device("cpu"), batch_size=4, rounds=2, min_seconds=0.01)
    assert set(speeds) == {"a", "b"}
    assert all(v > 0 for v in speeds.values()), speeds
    assert a.training and not b.training  # modes restored


@pytest.mark.unit
def test_safetensors_writer_is_reproducible_and_readable(tmp_path):
    from safetensors.torch import load_file

    from gacd_core.models.io import write_safetensors

    tensors = {
        "b.f32": torch.randn(3, 4),
        "a.bf16": torch.randn(5).to(torch.bfloat16),
        "c.i64": torch.arange(7),
        "d.bool": torch.tensor([True, False, True]),
        "e.u8": torch.arange(9, dtype=torch.uint8).view(3, 3),
        "f.scalar": torch.tensor(2.5),
        "g.empty": torch.zeros(0, 3),
    }
    meta = {"z": "last", "a": "first", "format": "x"}
    write_safetensors(tensors, tmp_path / "one.safetensors", meta)
    write_safetensors(dict(reversed(list(tensors.items()))), tmp_path / "two.safetensors", dict(reversed(meta.items())))
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()
    back = load_file(str(tmp_path / "one.safetensors"))
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
