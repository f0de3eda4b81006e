"""A new method is its parameters class and its implementation, nothing else (docs/extending.md).

The toy method of ``tests/_toy_method.py`` is declared only there. Imported, it is listed, validated,
trained, evaluated and reported by the ``gacd`` command, and accepted and run by the HTTP API and its
worker: every list of methods derives from its two declarations.

The service comes from conftest.py's ``start_service``, with a worker that imports the toy method first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _fakes import make_cifar10
from _workers import ServiceEnv
from fastapi.testclient import TestClient
from test_service import ALICE, H, small_job, teacher_file, upload_teacher, wait_status

from gacd_core import catalog
from gacd_core.errors import SpecError
from gacd_core.methods import METHODS
from gacd_core.spec import method_names, parse_spec, withdraw_method

TOY = "logit_matching"
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def toy() -> Iterator[Any]:
    """The toy method, declared in this process for this module's tests and withdrawn after them."""
    import _toy_method

    yield _toy_method
    withdraw_method(TOY)
    METHODS.unregister(TOY)
    del sys.modules["_toy_method"]
    assert TOY not in catalog.METHODS and TOY not in METHODS
    with pytest.raises(SpecError):
        parse_spec({"method": TOY, "teacher": {"weights": "t.safetensors"}})


def gacd(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``gacd`` command in a process that imports the toy method first, as if the package held it."""
    code = "import sys, _toy_method; from gacd_core.cli import main; sys.exit(main())"
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}  # tiny models: threads only contend
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.unit
def test_the_two_declarations_are_all_the_lists_need(toy: Any) -> None:
    assert catalog.METHODS[TOY] == catalog.MethodEntry("Logit matching", toy.LogitMatchingParams.description, True)
    assert method_names(needs_teacher=True)[-1] == TOY and TOY not in method_names(needs_teacher=False)
    assert METHODS.get(TOY) is toy.LogitMatching and toy.LogitMatching.params_class is toy.LogitMatchingParams
    spec = parse_spec({"method": TOY, "teacher": {"weights": "t.safetensors"}})
    assert spec.params == toy.LogitMatchingParams() and spec.hyperparameters.weight_decay == 5e-4
    with pytest.raises(SpecError) as info:
        parse_spec({"method": TOY})  # it needs a teacher, as declared
    assert info.value.field == "teacher"
    with pytest.raises(SpecError) as info:
        parse_spec({"method": TOY, "teacher": {"weights": "t"}, "hyperparameters": {"method_params": {"alpha": 1}}})
    assert info.value.errors == [("hyperparameters.method_params.alpha", "unknown field; valid fields: ce_weight")]


@pytest.mark.unit
def test_the_cli_lists_trains_and_reports_a_new_method(
    toy: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gacd_core.cli import build_parser, build_spec, main
    from gacd_core.models import create_model, save_weights

    assert main(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["methods"][TOY].startswith("regression of the student's logits")
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    assert "rslad, crd, gacd or logit_matching (default gacd)" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SpecError, match="--method natural or at, not 'logit_matching'"):
        build_spec(build_parser().parse_args(["train", "--method", TOY, "--out", str(tmp_path / "no")]))

    make_cifar10(tmp_path / "data", n_train=64, n_test=16)
    teacher = save_weights(create_model("tiny_resnet", 10), tmp_path / "teacher.safetensors")
    out = tmp_path / "student"
    run = gacd(
        "distill", "--method", TOY, "--teacher", str(teacher), "--allow-weak-teacher", "--student-arch", "tiny_wrn",
        "--data-root", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "32", "--device", "cpu",
        "--test-subset", "16", "--set", "hyperparameters.method_params.ce_weight=0.5",
        "--set", "evaluation.eps_sweep=[0]", "--set", "evaluation.throughput=false",
        "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == TOY and report["kind"] == "distill"
    assert report["spec"]["hyperparameters"]["method_params"] == {"ce_weight": 0.5}
    assert set(report["training"]["history"][0]["loss_parts"]) == {"logit_mse", "ce"}
    assert 0.0 <= report["metrics"]["pgd20_acc"] <= report["metrics"]["clean_acc"]
    assert "with</span> Logit matching" in (out / "report.html").read_text()  # the declared label


@pytest.fixture(scope="module")
def service(
    toy: Any, start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory
) -> tuple[TestClient, ServiceEnv]:
    """Redis, a worker that imported the toy method, and the API in this process (which declared it too)."""
    data_root = tmp_path_factory.mktemp("toy-data")
    make_cifar10(data_root, n_train=200, n_test=40)
    env = start_service("toy-service", data_root=data_root, api_keys=f"{ALICE}=alice", queue="gacdtoy")
    env.start_worker("toy-worker", preload="_toy_method")
    return env.app(), env


@pytest.mark.api
@pytest.mark.worker
def test_the_api_accepts_and_runs_a_new_method(service: tuple[TestClient, ServiceEnv], tmp_path: Path) -> None:
    api, env = service
    r = upload_teacher(api, teacher_file(tmp_path))
    assert r.status_code == 201, r.text
    teacher = wait_status(api, "teachers", r.json()["id"], ("ready", "invalid"), env)
    assert teacher["status"] == "ready", teacher
    doc = small_job(TOY, teacher["id"])
    doc["hyperparameters"]["method_params"] = {"tau": 2}
    bad = api.post("/v1/jobs", headers=H(), json=doc)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "hyperparameters.method_params.tau", bad.text
    assert "valid fields: ce_weight" in bad.json()["error"]["message"]

    doc["hyperparameters"]["method_params"] = {"ce_weight": 0.5}
    r = api.post("/v1/jobs", headers=H(), json=doc)
    assert r.status_code == 202, r.text
    job = wait_status(api, "jobs", r.json()["id"], ("succeeded", "failed"), env)
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["method"] == TOY and job["spec"]["hyperparameters"]["method_params"] == {"ce_weight": 0.5}
    assert 0.0 <= job["progress"]["metrics"]["pgd20_acc"] <= 1.0
    report = api.get(f"/v1/jobs/{job['id']}/artifacts/report.json", headers=H()).json()
    assert report["method"] == TOY and report["kind"] == "distill"
    assert set(report["training"]["history"][0]["loss_parts"]) == {"logit_mse", "ce"}
