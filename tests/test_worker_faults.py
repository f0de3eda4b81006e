"""Faults of the workers' world, each caused for real:

- a worker killed mid-job: the job's lease expires, another worker takes the job, resumes from the last
  checkpoint and succeeds, and the student is the same as that of a run that was never interrupted;
- a job that runs longer than the broker's visibility timeout: the broker hands its message to a second
  worker, which finds the lease held and drops it; the job runs once;
- a full, then a read-only artifact store (a small tmpfs; skipped where it cannot be mounted): the job
  fails at once with ``storage_error`` saying which, instead of hanging or retrying forever.

Its own Redis and workers (a short lease, so the tests take seconds, not minutes)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _fakes import make_cifar10
from _workers import start_worker
from _workers import wait_until as _wait
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


def _finished(api: TestClient, job_id: str) -> dict[str, Any] | None:
    j = api.get(f"/v1/jobs/{job_id}", headers=H).json()
    return j if j["status"] in ("succeeded", "failed", "cancelled") else None


def test_a_job_longer_than_the_broker_timeout_runs_once(env: dict[str, Any]) -> None:
    # The broker hands an unacknowledged message out again after 2 s (and looks for such messages every
    # second), while the job runs for many seconds: the second worker gets the message and must drop it.
    settings = {
        **env["settings"], "queue": "dupes", "broker_visibility_timeout": 2,
        "broker_transport_options": '{"unacked_restore_interval": 1, "unacked_restore_throttle": 1}',
    }  # fmt: skip
    logs = {name: env["base"] / f"{name}.log" for name in ("d1", "d2")}
    first = start_worker(settings, "d1", logs["d1"])
    api = TestClient(create_app(Settings(**{k: v for k, v in settings.items() if k != "broker_transport_options"})))
    spec = {
        "method": "at", "student": {"arch": "tiny_resnet"}, "dataset": {"name": "cifar10", "test_subset": 20},
        "hyperparameters": {"epochs": 12, "batch_size": 25, "attack": {"steps": 2}},
        "evaluation": {"attacks": ["pgd20"], "eps_sweep": [], "throughput": False}, "seed": 5,
    }  # fmt: skip
    job = api.post("/v1/jobs", headers=H, json=spec).json()
    _wait(lambda: api.get(f"/v1/jobs/{job['id']}", headers=H).json()["status"] == "running", "the job to start")
    second = start_worker(settings, "d2", logs["d2"])
    try:
        dropped = f"job {job['id']}: another worker holds its lease"
        _wait(lambda: dropped in logs["d2"].read_text(), "the broker to deliver the job again", timeout=120)
        final = _wait(lambda: _finished(api, job["id"]), "the job to finish")
    finally:
        for p in (first, second):
            p.terminate()
            p.wait(timeout=30)
    assert final["status"] == "succeeded", final["error"]
    assert final["attempts"] == 1
    events = _events(api, job["id"])
    types = [e["type"] for e in events]
    assert types.count("started") == 1 and types.count("epoch") == 12 and types.count("succeeded") == 1
    assert next(e for e in events if e["type"] == "started")["data"]["worker"] == "d1"


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``path``; the reason it could not be done, or None."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "mounting a small file system needs root"
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return None if out.returncode == 0 else f"mount failed: {out.stderr.decode().strip()}"


def test_a_full_or_read_only_artifact_store_fails_the_job_clearly(env: dict[str, Any]) -> None:
    store_root = env["base"] / "small-store"
    why = _mount_tmpfs(store_root, "4m")
    if why is not None:
        pytest.skip(f"cannot make a small artifact store here ({why})")
    try:
        settings = {**env["settings"], "queue": "disk", "artifact_root": store_root}
        worker = start_worker(settings, "disk", env["base"] / "disk.log")
        api = TestClient(create_app(Settings(**settings)))
        spec = {
            "method": "at", "student": {"arch": "tiny_resnet"}, "dataset": {"name": "cifar10", "test_subset": 20},
            "hyperparameters": {"epochs": 3, "batch_size": 25, "attack": {"steps": 1}},
            "evaluation": {"attacks": ["pgd20"], "eps_sweep": [], "throughput": False}, "seed": 0,
        }  # fmt: skip
        try:
            # full: leave less room than one checkpoint needs
            filler = store_root / "filler"
            with open(filler, "wb") as f:
                f.write(b"\0" * ((4 << 20) - (96 << 10)))
            job = api.post("/v1/jobs", headers=H, json=spec).json()
            final = _wait(lambda: _finished(api, job["id"]), "the job on a full store", timeout=120)
            assert final["status"] == "failed" and final["error"]["code"] == "storage_error", final
            assert final["error"]["message"].startswith("the artifact store is full (No space left on device")
            assert not list(store_root.rglob("*.tmp"))  # no half-written checkpoint left behind
            assert _events(api, job["id"])[-1]["type"] == "failed"
            # an upload that does not fit: 503 with Retry-After, and nothing of it stays
            form = {"arch": "tiny_resnet", "num_classes": "10", "dataset": "cifar10"}
            r = api.post("/v1/teachers", headers=H, data=form, files={"file": ("t.pt", b"\1" * (512 << 10))})
            assert r.status_code == 503 and r.headers["retry-after"] == "60", r.text
            err = r.json()["error"]
            assert err["code"] == "storage_unavailable" and "No space left" in err["message"], err
            assert not list((store_root / "t" / "teachers").rglob("*"))

            # read-only
            filler.unlink()
            subprocess.run(["mount", "-o", "remount,ro", str(store_root)], check=True)
            job = api.post("/v1/jobs", headers=H, json={**spec, "seed": 1}).json()
            final = _wait(lambda: _finished(api, job["id"]), "the job on a read-only store", timeout=120)
            assert final["status"] == "failed" and final["error"]["code"] == "storage_error", final
            assert final["error"]["message"].startswith("the artifact store is read-only")
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    finally:
        subprocess.run(["umount", "-l", str(store_root)], capture_output=True)
