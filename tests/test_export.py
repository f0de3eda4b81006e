"""student.onnx: every architecture exports with a dynamic batch and the normalisation inside; ONNX
Runtime gives PyTorch's logits on real CIFAR-10 test images; a job writes and checks the file and its
report records the check; `gacd export --onnx` does the same from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from gacd_core.cli import main
from gacd_core.data import load_dataset
from gacd_core.export import MAX_ABS_DIFF, ONNX_FILE, OPSET, export_onnx, onnx_metadata, verify_onnx
from gacd_core.jobs import run_job
from gacd_core.models import create_model, load_weights, save_weights
from gacd_core.spec import DatasetSpec, parse_spec

ARCHS = ["tiny_resnet", "tiny_preact_resnet", "tiny_wrn", "tiny_mobilenetv2", "resnet10_w8"]


def _logits(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixels": x.numpy()})[0]


@pytest.mark.slow
@pytest.mark.unit
@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_exports_with_a_dynamic_batch(tmp_path: Path, arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, 10, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)).eval()
    path = export_onnx(model, tmp_path / "m.onnx", info={"class_names": [str(i) for i in range(10)]})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET
    (inp,) = proto.graph.input
    assert inp.name == "pixels" and inp.type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [3, 32, 32]
    meta = onnx_metadata(path)
    assert json.loads(meta["gacd.mean"]) == pytest.approx([0.5, 0.4, 0.3])
    assert json.loads(meta["gacd.std"]) == pytest.approx([0.2, 0.25, 0.3])
    assert "[0, 1]" in meta["gacd.input"] and "inside the graph" in meta["gacd.normalization"]
    assert meta["gacd.arch"] == arch and meta["gacd.opset"] == str(OPSET)
    for n in (1, 5):  # the normalisation is in the graph: raw [0, 1] pixels in, PyTorch's logits out
        x = torch.rand(n, 3, 32, 32)
        with torch.no_grad():
            ref = model(x).numpy()
        got = _logits(path, x)
        assert got.shape == (n, 10)
        assert np.abs(got - ref).max() < 1e-4


@pytest.mark.slow
@pytest.mark.unit
def test_the_same_weights_give_the_same_onnx_bytes(tmp_path: Path) -> None:
    model = create_model("tiny_resnet", 10)
    a = export_onnx(model, tmp_path / "a.onnx").read_bytes()
    b = export_onnx(model, tmp_path / "b.onnx").read_bytes()
    assert a == b  # so an artifact's SHA-256 survives a job that is resumed and exported again


@pytest.mark.slow
def test_onnx_runtime_agrees_with_pytorch_on_real_cifar10(tmp_path: Path, cifar10_root: Path) -> None:
    # A real job (natural training, 1 epoch on 2000 images) writes student.onnx and records its check;
    # then the same file runs on all 10000 CIFAR-10 test images against PyTorch.
    spec = parse_spec(
        {
            "method": "natural",
            "student": {"arch": "resnet10_w8"},
            "dataset": {"name": "cifar10", "root": str(cifar10_root), "train_subset": 2000, "test_subset": 500},
            "hyperparameters": {"epochs": 1, "batch_size": 64},
            "evaluation": {"attacks": ["fgsm"], "eps_sweep": [], "throughput": False},
            "device": "cpu",
        }
    )
    report = run_job(spec, tmp_path).to_dict()
    check = report["export"]["onnx"]
    assert (tmp_path / ONNX_FILE).is_file() and check["file"] == ONNX_FILE
    assert check["opset"] == OPSET and check["images"] == 500
    assert check["max_abs_diff"] <= MAX_ABS_DIFF and check["agreement"] >= 0.99
    assert json.loads((tmp_path / "report.json").read_text())["export"]["onnx"] == pytest.approx(check)
    assert "ONNX export" in (tmp_path / "report.html").read_text()

    test = load_dataset(DatasetSpec(name="cifar10", root=str(cifar10_root))).test
    assert len(test) == 10_000
    model = load_weights(tmp_path / "student.safetensors")
    full = verify_onnx(tmp_path / ONNX_FILE, model, test.images)
    assert full["images"] == 10_000
    assert full["max_abs_diff"] < 1e-4, full
    assert full["agreement"] >= 0.999, full
    # a trained model (one short epoch: about 20% here), so the agreement is about real predictions
    with torch.no_grad():
        pred = torch.cat([model(test.images[i : i + 500].float() / 255).argmax(1) for i in range(0, 10_000, 500)])
    accuracy = float((pred == test.labels).float().mean())
    assert accuracy > 0.15, accuracy  # chance is 0.10
    print(f"ONNX Runtime vs PyTorch on 10000 CIFAR-10 test images: {full}, PyTorch accuracy {accuracy:.4f}")


@pytest.mark.slow
@pytest.mark.unit
def test_gacd_export_onnx_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = save_weights(create_model("tiny_wrn", 10), tmp_path / "m.safetensors", {"dataset": "cifar10"})
    assert main(["export", "--onnx", str(weights), "--out", str(tmp_path / "out" / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert "model.onnx" in out and f"opset {OPSET}" in out and "100.00% identical predictions" in out
    path = tmp_path / "out" / "model.onnx"
    assert path.is_file() and not (tmp_path / "out" / ONNX_FILE).exists()
    assert json.loads(onnx_metadata(path)["gacd.dataset"]) == "cifar10"
    assert main(["export", "--onnx", str(tmp_path / "missing.safetensors")]) == 2
