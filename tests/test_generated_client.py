"""A client generated from the service's own OpenAPI document by openapi-python-client, as a user of
another language's tooling would make one, driving a real service: Redis, a worker process and the API
served by uvicorn on a local port, all started here.

The client is generated at test time from what the running service serves at ``/openapi.json`` (with
the generator's own post-processing, ``ruff --fix`` and ``ruff format``, as ``openapi-python-client
generate`` runs it for everyone), must pass ``ruff check --select F`` (no undefined names: the teacher
module of the earlier document did not import), and every module of it must import. Then, through it
alone: the datasets, a job on a dataset the workers lack (refused, nothing queued), a tiny job followed
to its end with its events, a teacher upload (multipart, safetensors), a teacher made from the job, and
the student's weights downloaded and checked against the listed SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import pkgutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import torch
from _fakes import make_cifar10
from _workers import ServiceEnv, stop_process, wait_until

from gacd_core.models import create_model, save_weights
from service.launch.commands import api_command

pytestmark = [pytest.mark.api, pytest.mark.worker, pytest.mark.e2e]

KEY = "client-key-" + "c" * 24
QUEUE = "genclient"
BIN = Path(sys.executable).parent  # the environment's scripts: openapi-python-client and ruff


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Redis, a worker and the API served by uvicorn: the API's base URL."""
    data_root = tmp_path_factory.mktemp("data")
    make_cifar10(data_root, n_train=200, n_test=40)  # CIFAR-10 only: STL-10 is missing on the workers
    env = start_service(
        "genclient", workers=["client-worker"], data_root=data_root, api_keys=f"{KEY}=client", queue=QUEUE
    )
    port = _free_port()
    log = env.base / "api.log"
    environ = {**os.environ, **{f"GACD_{k.upper()}": str(v) for k, v in env.settings.items()}}
    with open(log, "ab") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", *api_command("127.0.0.1", port)], env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return api.poll() is not None  # (stop waiting: the assertion below says why)

    try:
        wait_until(up, "the API to answer", timeout=60, log=log)
        assert api.poll() is None, log.read_text()[-3000:]
        yield base
    finally:
        stop_process(api)


@pytest.fixture(scope="module")
def gacd_client(service: str, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The package openapi-python-client generates from the running service's document, imported."""
    out = tmp_path_factory.mktemp("generated")
    document = out / "openapi.json"
    document.write_bytes(httpx.get(f"{service}/openapi.json", timeout=10).content)
    config = out / "config.yaml"
    config.write_text("project_name_override: gacd-client\npackage_name_override: gacd_client\n")
    package = out / "gacd_client"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # its post-hooks run ruff
    argv = [str(BIN / "openapi-python-client"), "generate", "--path", str(document), "--output-path", str(package)]
    done = subprocess.run([*argv, "--meta", "none", "--config", str(config)], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and (package / "api").is_dir(), done.stdout + done.stderr
    assert "Error" not in done.stdout and "Warning" not in done.stdout, done.stdout  # every schema understood
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F", str(package)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    sys.path.insert(0, str(out))
    try:
        root = importlib.import_module("gacd_client")
        for module in pkgutil.walk_packages(root.__path__, "gacd_client."):
            importlib.import_module(module.name)  # every operation and model imports
        return root
    finally:
        sys.path.remove(str(out))


def _ok(response: Any, status: int) -> Any:
    assert response.status_code == status, (response.status_code, response.content[:2000])
    return response.parsed


def _wait(fetch: Callable[[], Any], done: Callable[[Any], bool], what: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {value}"
        time.sleep(0.3)


def test_a_generated_client_drives_the_service(gacd_client: ModuleType, service: str, tmp_path: Path) -> None:
    from gacd_client import AuthenticatedClient  # type: ignore[import-not-found]
    from gacd_client.api.datasets import list_datasets  # type: ignore[import-not-found]
    from gacd_client.api.jobs import (  # type: ignore[import-not-found]
        create_job,
        download_artifact,
        get_job,
        list_job_artifacts,
        list_job_events,
        list_jobs,
    )
    from gacd_client.api.teachers import (  # type: ignore[import-not-found]
        create_teacher_from_job,
        get_teacher,
        upload_teacher,
    )
    from gacd_client.models import (  # type: ignore[import-not-found]
        ErrorBody,
        Job,
        JobStatus,
        NaturalJobCreate,
        Teacher,
        TeacherFromJob,
        TeacherUpload,
        TeacherUploadArch,
    )
    from gacd_client.types import File  # type: ignore[import-not-found]

    client = AuthenticatedClient(base_url=service, token=KEY, timeout=httpx.Timeout(30.0))

    datasets = {d.id: d.status.value for d in _ok(list_datasets.sync_detailed(client=client), 200).data}
    assert datasets["cifar10"] == "available" and datasets["stl10"] == "missing", datasets

    spec: dict[str, Any] = {
        "method": "natural",
        "student": {"arch": "tiny_wrn"},
        "dataset": {"name": "cifar10", "train_subset": 64, "test_subset": 16},
        "hyperparameters": {"epochs": 1, "batch_size": 32},
        "evaluation": {"attacks": ["fgsm", "pgd20"], "eps_sweep": [], "throughput": False},
        "metadata": {"client": "generated"},
    }
    # a dataset the workers do not have: refused at submission, and nothing is queued
    refused = _ok(
        create_job.sync_detailed(
            client=client, body=NaturalJobCreate.from_dict({**spec, "dataset": {"name": "stl10"}})
        ),
        409,
    )
    assert isinstance(refused, ErrorBody) and refused.error.code == "dataset_unavailable", refused
    assert _ok(list_jobs.sync_detailed(client=client), 200).data == []

    # JobCreate is one model per method (a union discriminated by `method`): this job is a natural one
    job = _ok(create_job.sync_detailed(client=client, body=NaturalJobCreate.from_dict(spec)), 202)
    assert isinstance(job, Job) and job.status == JobStatus.QUEUED and isinstance(job.spec, NaturalJobCreate)
    assert job.spec.student.arch.value == "tiny_wrn"
    assert job.metadata.to_dict() == {"client": "generated"}
    final = _wait(
        lambda: _ok(get_job.sync_detailed(job.id, client=client), 200),
        lambda j: j.status.value in ("succeeded", "failed", "cancelled"),
        "the job to finish",
    )
    assert final.status == JobStatus.SUCCEEDED, final.error
    assert final.progress.fraction == 1.0 and final.finished_at >= final.created_at
    assert 0.0 <= final.progress.metrics.additional_properties["pgd20_acc"] <= 1.0
    events = [e.type_ for e in _ok(list_job_events.sync_detailed(job.id, client=client), 200).data]
    assert events[0] == "queued" and events[-1] == "succeeded", events

    # a teacher uploaded as multipart: safetensors weights of a tiny model (random: at chance, so allow_weak)
    torch.manual_seed(0)
    weights = save_weights(create_model("tiny_resnet", 10), tmp_path / "teacher.safetensors").read_bytes()
    upload = TeacherUpload(
        file=File(payload=io.BytesIO(weights), file_name="teacher.safetensors", mime_type="application/octet-stream"),
        arch=TeacherUploadArch.TINY_RESNET,
        dataset="cifar10",
        allow_weak=True,
        name="uploaded by a generated client",
    )
    uploaded = _ok(upload_teacher.sync_detailed(client=client, body=upload), 201)
    assert isinstance(uploaded, Teacher) and uploaded.sha256 == hashlib.sha256(weights).hexdigest()

    # the job's student, registered as a teacher through its own operation
    derived = _ok(
        create_teacher_from_job.sync_detailed(job.id, client=client, body=TeacherFromJob(allow_weak=True)), 201
    )
    assert derived.source_job_id == job.id and derived.arch == "tiny_wrn"
    for teacher in (uploaded, derived):
        ready = _wait(
            lambda t=teacher: _ok(get_teacher.sync_detailed(t.id, client=client), 200),
            lambda t: t.status.value != "validating",
            f"teacher {teacher.id} to be validated",
        )
        assert ready.status.value == "ready", ready.error

    listed = {a.name: a for a in _ok(list_job_artifacts.sync_detailed(job.id, client=client), 200).data}
    got = download_artifact.sync_detailed(job.id, "student.safetensors", client=client)
    assert got.status_code == 200 and got.headers["etag"] == f'"{listed["student.safetensors"].sha256}"'
    assert hashlib.sha256(got.content).hexdigest() == listed["student.safetensors"].sha256
    assert len(got.content) == listed["student.safetensors"].bytes_  # (the generator renames a builtin)
