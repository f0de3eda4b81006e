"""The ``gacd`` command line as a user runs it: a subprocess per command, outputs checked on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _fakes import make_cifar10

GACD = [sys.executable, "-m", "gacd_core.cli"]
# Every key the report promises (issue: "report.json holds at least").
REPORT_KEYS = [
    "method", "student.arch", "student.params", "teacher.arch", "dataset.name", "dataset.test_size",
    "protocol.eps", "protocol.attacks", "metrics.clean_acc", "metrics.fgsm_acc", "metrics.pgd20_acc",
    "metrics.cw_acc", "metrics.autoattack_acc", "teacher_metrics.clean_acc", "teacher_metrics.fgsm_acc",
    "teacher_metrics.pgd20_acc", "teacher_metrics.cw_acc", "teacher_metrics.autoattack_acc",
    "structure.cka_clean", "structure.cka_adv", "structure.logit_corr_diff", "compression.params_ratio",
    "compression.macs_ratio", "compression.speedup", "training.epochs", "training.seconds",
    "training.images_per_second", "training.history", "environment.torch", "environment.device",
    "environment.git_commit",
]  # fmt: skip
ACCURACIES = ["clean_acc", "fgsm_acc", "pgd20_acc", "cw_acc"]


def run(*args: str, env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GACD, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def get(report: dict, dotted: str):
    node = report
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"report.json lacks {dotted}"
        node = node[part]
    return node


def check_report(report: dict, method: str, *, autoattack: bool) -> None:
    for key in REPORT_KEYS:
        value = get(report, key)
        if key == "training.history":
            assert len(value) == report["training"]["epochs"]
    assert report["method"] == method
    for k in ACCURACIES:
        assert 0.0 <= report["metrics"][k] <= 1.0 and 0.0 <= report["teacher_metrics"][k] <= 1.0
    assert (report["metrics"]["autoattack_acc"] is not None) == autoattack
    assert report["protocol"]["eps"] == pytest.approx(8 / 255)
    assert report["compression"]["params_ratio"] > 1 and report["compression"]["speedup"] > 0


@pytest.mark.unit
def test_list_names_every_choice():
    out = run("list", "--json")
    assert out.returncode == 0, out.stderr
    tables = json.loads(out.stdout)
    assert {"resnet18", "preact_resnet18", "wrn_34_10", "mobilenetv2"} <= set(tables["models"])
    assert set(tables["methods"]) == {"natural", "at", "trades", "kd", "ard", "rslad", "iad", "crd", "gacd"}
    assert {"fgsm", "pgd", "cw", "guided", "autoattack"} <= set(tables["attacks"])
    assert run("list").stdout.count("\n") > 25


@pytest.mark.e2e
def test_bad_input_is_a_clear_error_naming_the_flag(tmp_path):
    cases = [
        (["train", "--method", "gacd", "--arch", "tiny_resnet", "--out", str(tmp_path)], "method"),
        (["train", "--arch", "resnet19", "--out", str(tmp_path)], "student.arch: unknown model 'resnet19'"),
        (["train", "--arch", "tiny_resnet", "--epochs", "0", "--out", str(tmp_path)],
         "hyperparameters.epochs (--epochs)"),
        (["distill", "--teacher", str(tmp_path / "missing.safetensors"), "--student-arch", "tiny_resnet",
          "--data-root", str(tmp_path), "--out", str(tmp_path)], "dataset.root (--data-root)"),
        (["train", "--arch", "tiny_resnet", "--set", "hyperparameters.method_params.nope=1", "--out", str(tmp_path)],
         "hyperparameters.method_params.nope: unknown field"),
    ]  # fmt: skip
    for args, expected in cases:
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert expected in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    (tmp_path / "spec.yaml").write_text("method: !!python/object/apply:os.system ['echo pwned']\n")
    out = run("train", "--spec", str(tmp_path / "spec.yaml"), "--out", str(tmp_path))
    assert out.returncode == 2 and "spec" in out.stderr and "pwned" not in out.stdout + out.stderr


@pytest.mark.e2e
def test_missing_teacher_file_names_the_teacher_flag(tmp_path):
    make_cifar10(tmp_path / "data", n_train=40, n_test=20)
    out = run(
        "distill",
        "--teacher",
        str(tmp_path / "missing.safetensors"),
        "--student-arch",
        "tiny_resnet",
        "--data-root",
        str(tmp_path / "data"),
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "o"),
    )
    assert out.returncode == 2
    assert "teacher.weights (--teacher): no such file" in out.stderr


@pytest.mark.e2e
def test_train_distill_evaluate_on_small_data(tmp_path):
    """The three commands end to end on a small fake CIFAR-10 in the real on-disk layout."""
    data = tmp_path / "data"
    make_cifar10(data, n_train=128, n_test=40)
    common = [
        "--data-root",
        str(data),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--set",
        "hyperparameters.attack.steps=2",
        "--set",
        "evaluation.eps_sweep=[0, 0.0313725]",
    ]
    teacher, student, evaluated = tmp_path / "teacher", tmp_path / "student", tmp_path / "eval"
    # the teacher (tiny_resnet, 19.9k parameters) is larger than the student (tiny_wrn, 5.2k), as in real use
    out = run("train", "--method", "at", "--arch", "tiny_resnet", "--out", str(teacher), *common)
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and (teacher / "student.safetensors").is_file()
    # The fake data's labels are random, so every teacher is at chance and the teacher check would
    # (rightly) refuse it: these runs say --allow-weak-teacher, and the report must say it was allowed.
    distill = [
        "distill", "--method", "gacd", "--teacher", str(teacher / "student.safetensors"), "--student-arch",
        "tiny_wrn", "--out", str(student), *common, "--set", "hyperparameters.method_params.n_negatives=64",
        "--allow-weak-teacher",
    ]  # fmt: skip
    refused = run(*distill[:-1])
    assert refused.returncode == 2, refused.stderr
    assert "the teacher is at or near chance" in refused.stderr and "--allow-weak-teacher" in refused.stderr
    assert not student.exists()  # refused before anything was written
    out = run(*distill)
    assert out.returncode == 0, out.stderr
    assert "input normalisation cifar10" in out.stderr  # the teacher's normalisation, said when the job starts
    for name in ("student.safetensors", "report.json", "report.html", "checkpoint.pt"):
        assert (student / name).is_file(), name
    report = json.loads((student / "report.json").read_text())
    check_report(report, "gacd", autoattack=False)
    assert report["teacher"]["arch"] == "tiny_resnet" and report["student"]["arch"] == "tiny_wrn"
    check = report["teacher"]["check"]
    assert check["verdict"] == "unfit" and check["allowed_weak"] and check["clean_subset"] == 40
    assert report["teacher"]["normalization"]["source"] == "file"  # from the teacher's gacd metadata
    assert report["dataset"]["test_size"] == 40 and report["training"]["epochs"] == 1
    assert "<svg" in (student / "report.html").read_text()

    out = run(
        "evaluate",
        "--weights",
        str(student / "student.safetensors"),
        "--teacher",
        str(teacher / "student.safetensors"),
        "--allow-weak-teacher",
        "--data-root",
        str(data),
        "--device",
        "cpu",
        "--autoattack",
        "--autoattack-subset",
        "8",
        "--out",
        str(evaluated),
    )
    assert out.returncode == 0, out.stderr
    ev = json.loads((evaluated / "report.json").read_text())
    assert ev["kind"] == "evaluate" and ev["method"] == "gacd" and ev["training"] is None
    assert ev["protocol"]["autoattack_size"] == 8 and 0.0 <= ev["metrics"]["autoattack_acc"] <= 1.0
    assert ev["metrics"]["autoattack_acc"] <= ev["metrics"]["clean_acc"]
    assert ev["student"]["sha256"] == report["student"]["sha256"]

    # running the same distill command again continues from the checkpoint instead of starting over
    out = run(*distill)
    assert out.returncode == 0, out.stderr
    again = json.loads((student / "report.json").read_text())
    assert again["training"]["resumed_from_epoch"] == 1 and again["student"]["sha256"] == report["student"]["sha256"]


@pytest.mark.slow
@pytest.mark.e2e
def test_readme_example_on_real_cifar10(cifar10_root, tmp_path):
    """The README's three commands, on real CIFAR-10, with the sizes cut down to keep CI short."""
    env = {"GACD_DATA_ROOT": str(cifar10_root)}
    small = ["--train-subset", "512", "--test-subset", "100", "--epochs", "1"]
    # One epoch on 512 images leaves the teacher at chance, and the teacher check refuses it (the README's
    # sizes give 33%): the cut-down distill and evaluate allow a weak teacher, and the report says so.
    weak = "--allow-weak-teacher"
    out = run(
        "train",
        "--method",
        "at",
        "--arch",
        "resnet10_w16",
        "--out",
        str(tmp_path / "teacher"),
        *small,
        "--set",
        "hyperparameters.attack.steps=3",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    out = run(
        "distill",
        "--method",
        "gacd",
        "--teacher",
        str(tmp_path / "teacher/student.safetensors"),
        "--student-arch",
        "resnet10_w8",
        "--out",
        str(tmp_path / "gacd"),
        *small,
        "--set",
        "hyperparameters.attack.steps=3",
        weak,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    out = run(
        "evaluate",
        "--weights",
        str(tmp_path / "gacd/student.safetensors"),
        "--teacher",
        str(tmp_path / "teacher/student.safetensors"),
        "--test-subset",
        "100",
        "--autoattack",
        "--autoattack-subset",
        "20",
        "--out",
        str(tmp_path / "eval"),
        weak,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "student (resnet10_w8): clean" in out.stdout
    report = json.loads((tmp_path / "gacd/report.json").read_text())
    check_report(report, "gacd", autoattack=False)
    assert report["dataset"]["name"] == "cifar10" and report["dataset"]["train_size"] == 512
    assert report["teacher"]["check"]["clean_subset"] == 100
    assert report["teacher"]["check"]["verdict"] == "fit" or report["teacher"]["check"]["allowed_weak"]
    ev = json.loads((tmp_path / "eval/report.json").read_text())
    assert ev["metrics"]["autoattack_acc"] is not None
    for name in ("student.safetensors", "report.json", "report.html"):
        assert (tmp_path / "gacd" / name).is_file()


def test_the_report_names_the_commit_of_the_code_loaded_not_of_the_checkout_now(monkeypatch):
    # A long benchmark process outlives commits; its reports must name the code it runs. git is read
    # once, at import: a later HEAD (here: git refusing to answer) changes nothing.
    from gacd_core import report

    monkeypatch.delenv("GACD_GIT_COMMIT", raising=False)
    loaded = report.git_commit()

    def no_git(*a, **k):
        raise AssertionError("git_commit() ran git again after import")

    monkeypatch.setattr(report.subprocess, "run", no_git)
    assert report.git_commit() == loaded
    monkeypatch.setenv("GACD_GIT_COMMIT", "built-from-abc")  # an image's build argument still wins
    assert report.git_commit() == "built-from-abc"
