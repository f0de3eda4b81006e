"""A worker killed mid-job: the job's lease expires, another worker takes the job, resumes from the last
checkpoint and succeeds, and the student is the same as that of a run that was never interrupted.

Its own Redis and workers (a short lease, so the test takes seconds, not minutes)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from _fakes import make_cifar10
from _workers import start_worker
from fastapi.testclient import TestClient
from safetensors.torch import load

from service.app import create_app
from service.embedded import RedisServer
from service.settings import Settings

pytestmark = [pytest.mark.api, pytest.mark.worker]
KEY = "fault-test-key-" + "f" * 20
H = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("faults")
    redis_server = RedisServer(base / "redis", appendonly=False).start()
    data = base / "data"
    make_cifar10(data, n_train=200, n_test=20)
    settings = dict(
        redis_url=redis_server.url, artifact_root=base / "artifacts", data_root=data, api_keys=f"{KEY}=t",
        queue="faults", heartbeat_seconds=0.5, lease_seconds=3, worker_stale_seconds=3,
    )  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        procs.append(start_worker(settings, name, base / f"{name}.log"))
        return procs[-1]

    try:
        yield {"settings": settings, "start_worker": start, "base": base}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        redis_server.stop()


def _events(api: TestClient, job_id: str) -> list[dict[str, Any]]:
    return api.get(f"/v1/jobs/{job_id}/events", headers=H).json()["data"]


def _wait(pred: Any, what: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_worker_loses_at_most_an_epoch_and_the_result_is_unchanged(env: dict[str, Any]) -> None:
    api = TestClient(create_app(Settings(**env["settings"])))
    spec = {
        "method": "at", "student": {"arch": "tiny_resnet"}, "dataset": {"name": "cifar10", "test_subset": 20},
        "hyperparameters": {"epochs": 6, "batch_size": 25, "attack": {"steps": 2}},
        "evaluation": {"attacks": ["pgd20"], "eps_sweep": [], "throughput": False}, "seed": 3,
    }  # fmt: skip
    first = env["start_worker"]("w1")
    job = api.post("/v1/jobs", headers=H, json={**spec, "metadata": {"run": "interrupted"}}).json()
    _wait(lambda: sum(e["type"] == "epoch" for e in _events(api, job["id"])) >= 2, "two epochs")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = max(e["data"]["epoch"] for e in _events(api, job["id"]) if e["type"] == "epoch")
    assert api.get(f"/v1/jobs/{job['id']}", headers=H).json()["status"] == "running"  # until its lease expires

    env["start_worker"]("w2")
    final = _wait(
        lambda: (j := api.get(f"/v1/jobs/{job['id']}", headers=H).json())["status"] in ("succeeded", "failed") and j,
        "the job to finish on the second worker",
    )
    assert final["status"] == "succeeded", final["error"]
    assert final["attempts"] == 2
    events = _events(api, job["id"])
    types = [e["type"] for e in events]
    assert types.count("requeued") == 1 and types.count("started") == 2
    restart = [e for e in events if e["type"] == "started"][1]
    assert restart["data"]["resume"] is True and restart["data"]["worker"] == "w2"
    epochs = [e["data"]["epoch"] for e in events if e["type"] == "epoch"]
    # the second worker continued after the last checkpoint: at most the epoch in flight was redone
    assert epochs[killed_at:] == list(range(killed_at + 1, 7)) and epochs[:killed_at] == list(range(1, killed_at + 1))

    again = api.post("/v1/jobs", headers=H, json={**spec, "metadata": {"run": "straight"}}).json()
    straight = _wait(
        lambda: (j := api.get(f"/v1/jobs/{again['id']}", headers=H).json())["status"] in ("succeeded", "failed") and j,
        "the uninterrupted job",
    )
    assert straight["status"] == "succeeded" and straight["attempts"] == 1

    def weights(job_id: str) -> dict[str, torch.Tensor]:
        blob = api.get(f"/v1/jobs/{job_id}/artifacts/student.safetensors", headers=H).content
        return load(blob)

    interrupted, uninterrupted = weights(job["id"]), weights(again["id"])
    assert interrupted.keys() == uninterrupted.keys()
    for name, tensor in interrupted.items():  # CPU, fixed seed: bit-identical students
        assert torch.equal(tensor, uninterrupted[name]), name
