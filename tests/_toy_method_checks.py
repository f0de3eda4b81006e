"""The checks tests/test_adding_a_method.py runs in a fresh interpreter whose ``gacd_core`` is a copy of
the package with the toy method added (its parameters class and its implementation file, nothing
else): it is listed, validated, trained, evaluated and reported by the ``gacd`` command, and accepted
and run by the HTTP API and a worker. Not collected on its own (no ``test_`` prefix)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _fakes import make_cifar10
from _workers import ServiceEnv
from fastapi.testclient import TestClient
from test_service import ALICE, H, small_job, teacher_file, upload_teacher, wait_status

import gacd_core
from gacd_core import catalog
from gacd_core.errors import SpecError
from gacd_core.method_params import METHOD_PARAMS, method_names
from gacd_core.methods import METHODS
from gacd_core.spec import parse_spec

TOY = "logit_matching"


def test_this_is_the_copy_with_the_toy_method() -> None:
    assert Path(gacd_core.__file__).resolve().parent == Path(os.environ["GACD_TOY_PACKAGE"]).resolve()


@pytest.mark.unit
def test_the_two_declarations_are_all_the_lists_need() -> None:
    from gacd_core.methods.logit_matching import LogitMatching  # type: ignore[import-not-found]

    params = METHOD_PARAMS[TOY]
    assert catalog.METHODS[TOY] == catalog.MethodEntry("Logit matching", params.description, True)
    assert method_names(needs_teacher=True)[-1] == TOY and TOY not in method_names(needs_teacher=False)
    assert METHODS.get(TOY) is LogitMatching and LogitMatching.params_class is params
    spec = parse_spec({"method": TOY, "teacher": {"weights": "t.safetensors"}})
    assert spec.params == params() and spec.hyperparameters.weight_decay == 5e-4
    with pytest.raises(SpecError) as info:
        parse_spec({"method": TOY})  # it needs a teacher, as declared
    assert info.value.field == "teacher"
    with pytest.raises(SpecError) as info:
        parse_spec({"method": TOY, "teacher": {"weights": "t"}, "hyperparameters": {"method_params": {"alpha": 1}}})
    assert info.value.errors == [("hyperparameters.method_params.alpha", "unknown field; valid fields: ce_weight")]
    from service.api.contract import job_schemas

    schemas = job_schemas()  # the HTTP contract states it too
    assert schemas["JobCreate"]["discriminator"]["mapping"][TOY].endswith("/LogitMatchingJobCreate")
    assert schemas["LogitMatchingJobCreate"]["required"] == ["method", "teacher"]


@pytest.mark.unit
def test_the_cli_lists_trains_and_reports_a_new_method(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gacd_core.cli import build_parser, build_spec, main
    from gacd_core.models import create_model, save_weights

    assert main(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["methods"][TOY].startswith("regression of the student's logits")
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    assert "rslad, iad, crd, gacd or logit_matching (default gacd)" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SpecError, match="--method natural, at or trades, not 'logit_matching'"):
        build_spec(build_parser().parse_args(["train", "--method", TOY, "--out", str(tmp_path / "no")]))

    make_cifar10(tmp_path / "data", n_train=64, n_test=16)
    teacher = save_weights(create_model("tiny_resnet", 10), tmp_path / "teacher.safetensors")
    out = tmp_path / "student"
    code = main([
        "distill", "--method", TOY, "--teacher", str(teacher), "--allow-weak-teacher", "--student-arch", "tiny_wrn",
        "--data-root", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "32", "--device", "cpu",
        "--test-subset", "16", "--set", "hyperparameters.method_params.ce_weight=0.5",
        "--set", "evaluation.eps_sweep=[0]", "--set", "evaluation.throughput=false",
        "--out", str(out),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == TOY and report["kind"] == "distill"
    assert report["spec"]["hyperparameters"]["method_params"] == {"ce_weight": 0.5}
    assert set(report["training"]["history"][0]["loss_parts"]) == {"logit_mse", "ce"}
    assert 0.0 <= report["metrics"]["pgd20_acc"] <= report["metrics"]["clean_acc"]
    assert "with</span> Logit matching" in (out / "report.html").read_text()  # the declared label


@pytest.fixture(scope="module")
def service(
    start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory
) -> tuple[TestClient, ServiceEnv]:
    """Redis, a worker (a process that imports the same copy of the package) and the API in this process."""
    data_root = tmp_path_factory.mktemp("toy-data")
    make_cifar10(data_root, n_train=200, n_test=40)
    env = start_service("toy-service", data_root=data_root, api_keys=f"{ALICE}=alice", queue="gacdtoy")
    env.start_worker("toy-worker")
    return env.app(), env


@pytest.mark.api
@pytest.mark.worker
def test_the_api_accepts_and_runs_a_new_method(service: tuple[TestClient, ServiceEnv], tmp_path: Path) -> None:
    api, env = service
    r = upload_teacher(api, teacher_file(tmp_path))
    assert r.status_code == 201, r.text
    teacher = wait_status(api, "teachers", r.json()["id"], ("ready", "invalid"), env)
    assert teacher["status"] == "ready", teacher
    doc: dict[str, Any] = small_job(TOY, teacher["id"])
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
