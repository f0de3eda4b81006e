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


EVALUATION = {"attacks": ["pgd20"], "eps_sweep": [0.0], "batch_size": 8, "teacher": False, "throughput": False}


@pytest.mark.slow
def test_a_streamed_job_reads_its_test_split_a_batch_at_a_time_and_never_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gacd_core import jobs
    from gacd_core.data.stream import StreamedSet

    make_image_folder(tmp_path / "ds", n_train=6, n_test=8, size=(16, 16))  # 3 classes: 18 and 24 images
    decoded: list[int] = []  # the sizes of the streamed sets decoded whole
    read: list[tuple[int, int]] = []  # (images, batch) of every streamed read
    whole, chunks = StreamedSet.decoded, StreamedSet.chunks

    def decode(self: StreamedSet) -> Any:
        decoded.append(len(self))
        return whole(self)

    def chunk(self: StreamedSet, size: int, pin: bool = False) -> Any:
        read.append((len(self), size))
        return chunks(self, size, pin)

    monkeypatch.setattr(StreamedSet, "decoded", decode)
    monkeypatch.setattr(StreamedSet, "chunks", chunk)
    monkeypatch.setattr(jobs, "ONNX_CHECK_IMAGES", 5)
    spec = parse_spec(
        {
            "method": "natural",
            "student": {"arch": "tiny_resnet"},
            "dataset": {"name": "imagefolder", "path": "ds", "root": str(tmp_path), "workers": 1, "val_size": 6},
            "hyperparameters": {"epochs": 1, "batch_size": 4, "lr": 0.05},
            "evaluation": EVALUATION,
            "device": "cpu",
            "precision": "fp32",
        }
    )
    report = jobs.run_job(spec, tmp_path / "out")
    assert report.dataset is not None and (report.dataset.test_size, report.dataset.val_size) == (24, 6)
    assert decoded == [5]  # the ONNX check's images, and nothing else decoded whole
    assert report.export is not None and report.export.onnx is not None and report.export.onnx.images == 5
    assert (24, 8) in read  # the protocol read the 24 test images 8 at a time
    assert report.training is not None and report.training.history[0].val_clean_acc is not None  # streamed val


@pytest.mark.slow
def test_the_report_says_on_how_many_images_the_adversarial_structure_was_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gacd_core import evaluation as E
    from gacd_core.jobs import run_evaluation
    from gacd_core.models import save_weights
    from gacd_core.spec import TeacherSpec

    make_image_folder(tmp_path / "ds", n_train=2, n_test=8, size=(16, 16))
    files = []
    for seed in (0, 1):  # a student and a teacher, both untrained
        torch.manual_seed(seed)
        model = create_model("tiny_resnet", 3)
        files.append(save_weights(model, tmp_path / f"m{seed}.safetensors", {"input_size": 16}))
    monkeypatch.setattr(E, "KEEP_ADV_BYTES", 5 * 3 * 16 * 16 * 4)  # the examples of five images
    spec = parse_spec(
        {
            "method": "natural",
            "dataset": {"name": "imagefolder", "path": "ds", "root": str(tmp_path), "workers": 0},
            "evaluation": EVALUATION,
            "device": "cpu",
        }
    )
    teacher = TeacherSpec(weights=str(files[1]), allow_weak=True)
    report = run_evaluation(files[0], tmp_path / "out", spec, teacher=teacher)
    s = report.structure
    assert s is not None and s.adv_images == 5 and s.cka_adv is not None
    assert s.adv_inputs is not None and "on 5 of the 24 images" in s.adv_inputs
    assert report.agreement is not None and report.agreement.adv is not None
    assert report.protocol is not None and report.protocol.test_size == 24
    assert "Images of the adversarial figures" in (tmp_path / "out" / "report.html").read_text()
