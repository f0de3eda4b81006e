"""Streamed jobs end to end: a paused epoch and a SIGKILL resume exactly on the streamed path, and a job
that names an image folder under ``GACD_DATA_ROOTS`` runs through the ``gacd`` command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from _fakes import make_image_folder
from safetensors.torch import load_file

from gacd_core.data import load_dataset
from gacd_core.errors import TrainingPaused
from gacd_core.methods import METHODS, MethodContext
from gacd_core.models import create_model
from gacd_core.spec import DatasetSpec, parse_spec
from gacd_core.trainer import CHECKPOINT_NAME, Trainer

GACD = [sys.executable, "-m", "gacd_core.cli"]


def _trainer(data: Any, ckpt: Path, **kw: Any) -> Trainer:
    torch.manual_seed(0)
    spec = parse_spec({"method": "natural", "hyperparameters": {"epochs": 2, "batch_size": 6, "lr": 0.05}})
    student = create_model("tiny_resnet", data.num_classes, mean=data.mean, std=data.std)
    method = METHODS.get("natural")(
        student, None, spec.params, MethodContext(data.num_classes, data.train.labels, spec.hyperparameters.attack)
    )
    return Trainer(
        method,
        data.train,
        spec.hyperparameters,
        device=torch.device("cpu"),
        seed=7,
        checkpoint_dir=ckpt,
        workers=1,
        **kw,
    )


@pytest.mark.unit
def test_a_streamed_epoch_paused_midway_resumes_to_the_same_weights(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ds", n_train=10, n_test=2, size=(16, 16))
    data = load_dataset(DatasetSpec(name="imagefolder", path="ds", root=str(tmp_path), workers=1))
    straight = _trainer(data, tmp_path / "a")
    straight.fit()
    calls = iter(range(1000))
    paused = _trainer(data, tmp_path / "b", should_pause=lambda: next(calls) == 7)  # epoch 2, step 3
    with pytest.raises(TrainingPaused) as stop:
        paused.fit()
    assert (stop.value.epoch, stop.value.step) == (2, 2)
    resumed = _trainer(data, tmp_path / "b")
    resumed.fit(resume_from=tmp_path / "b" / CHECKPOINT_NAME)
    for k, v in straight.method.student.state_dict().items():
        assert torch.equal(v, resumed.method.student.state_dict()[k]), k


def _job(tmp_path: Path, epochs: int) -> Path:
    spec = {
        "method": "natural",
        "student": {"arch": "tiny_resnet"},
        "dataset": {"name": "imagefolder", "path": "pets", "workers": 1},
        "hyperparameters": {"epochs": epochs, "batch_size": 4, "lr": 0.05},
        "evaluation": {"attacks": ["pgd20"], "eps_sweep": [0.0], "teacher": False, "throughput": False},
        "device": "cpu",
        "precision": "fp32",
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    return path


def _gacd(args: list[str], root: Path, **kw: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GACD_DATA_ROOTS": str(root), "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.Popen([*GACD, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


@pytest.mark.slow
@pytest.mark.e2e
def test_a_folder_under_the_data_roots_trains_through_the_cli_and_resumes_exactly_after_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "roots"
    make_image_folder(root / "pets", n_train=16, n_test=2, size=(16, 16))
    spec = _job(tmp_path, epochs=6)
    reference = _gacd(["train", "--spec", str(spec), "--out", str(tmp_path / "ref"), "--quiet"], root)
    out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out.decode()
    report = json.loads((tmp_path / "ref" / "report.json").read_text())
    assert report["dataset"]["format"] == "imagefolder" and report["dataset"]["streamed"] is True
    assert report["dataset"]["source"] == "pets" and report["dataset"]["train_size"] == 48
    assert report["dataset"]["preprocessing"]["train"] == "random_crop"
    assert report["protocol"]["preset"] == "cifar" and report["metrics"]["pgd20_acc"] is not None

    killed = _gacd(["train", "--spec", str(spec), "--out", str(tmp_path / "run"), "--quiet"], root)
    ckpt = tmp_path / "run" / CHECKPOINT_NAME
    deadline = time.monotonic() + 240
    while not ckpt.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)  # a crash in the middle of a later epoch
    killed.wait()
    at = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= at < 6, "the kill landed after training"
    again = _gacd(["train", "--spec", str(spec), "--out", str(tmp_path / "run"), "--quiet"], root)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out.decode()
    resumed = json.loads((tmp_path / "run" / "report.json").read_text())
    assert resumed["training"]["resumed_from_epoch"] == at
    a, b = load_file(tmp_path / "ref" / "student.safetensors"), load_file(tmp_path / "run" / "student.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
