"""Faults of the workers' world, each caused for real:

- a worker killed mid-job: the job's lease expires, another worker takes the job, resumes from the last
  checkpoint and succeeds, and the student is the same as that of a run that was never interrupted;
- a worker stopped with SIGTERM mid-job (docker compose stop, a redeploy): it checkpoints at the next
  step and hands the job back at once; another worker resumes it within 10 s of the signal, no epoch is
  trained twice, and the student is again bit-identical;
- a job that runs longer than the broker's visibility timeout: the broker hands its message to a second
  worker, which finds the lease held and drops it; the job runs once;
- a full, then a read-only artifact store (a small tmpfs; skipped where it cannot be mounted): the job
  fails at once with ``storage_error`` saying which, instead of hanging or retrying forever.

Its own Redis and workers (a short lease, so the tests take seconds, not minutes)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from _fakes import make_cifar10
from _workers import ServiceEnv, start_worker, stop_process
from _workers import wait_until as _wait
from fastapi.testclient import TestClient
from safetensors.torch import load

from service.api.app import create_app
from service.state.settings import Settings

pytestmark = [pytest.mark.api, pytest.mark.worker, pytest.mark.e2e]
KEY = "fault-test-key-" + "f" * 20
H = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def env(start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory) -> ServiceEnv:
    """Redis and the settings; each test starts (and kills) its own workers."""
    data = tmp_path_factory.mktemp("data")
    make_cifar10(data, n_train=200, n_test=20)
    return start_service("faults", data_root=data, api_keys=f"{KEY}=t", queue="faults", lease_seconds=3,
                         worker_stale_seconds=3)  # fmt: skip


def _events(api: TestClient, job_id: str) -> list[dict[str, Any]]:
    return api.get(f"/v1/jobs/{job_id}/events", headers=H).json()["data"]


SPEC = {
    "method": "at", "student": {"arch": "tiny_resnet"}, "dataset": {"name": "cifar10", "test_subset": 20},
    "hyperparameters": {"epochs": 6, "batch_size": 25, "attack": {"steps": 2}},
    "evaluation": {"attacks": ["pgd20"], "eps_sweep": [], "throughput": False}, "seed": 3,
}  # fmt: skip


def _student(api: TestClient, job_id: str) -> dict[str, torch.Tensor]:
    return load(api.get(f"/v1/jobs/{job_id}/artifacts/student.safetensors", headers=H).content)


def _same_student(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, tensor in a.items():  # CPU, fixed seed: bit-identical students
        assert torch.equal(tensor, b[name]), name


@pytest.fixture(scope="module")
def reference(env: ServiceEnv) -> dict[str, torch.Tensor]:
    """The student of SPEC from a run that nothing interrupts (on a worker of its own queue)."""
    settings = {**env.settings, "queue": "reference"}
    worker = start_worker(settings, "ref", env.base / "ref.log")
    try:
        api = TestClient(create_app(Settings(**settings)))
        job = api.post("/v1/jobs", headers=H, json={**SPEC, "metadata": {"run": "straight"}}).json()
        final = _wait(lambda: _finished(api, job["id"]), "the uninterrupted job")
        assert final["status"] == "succeeded" and final["attempts"] == 1, final
        return _student(api, job["id"])
    finally:
        stop_process(worker)


def _finished(api: TestClient, job_id: str) -> dict[str, Any] | None:
    j = api.get(f"/v1/jobs/{job_id}", headers=H).json()
    return j if j["status"] in ("succeeded", "failed", "cancelled") else None


def _check_resumed(events: list[dict[str, Any]], stopped_at: int, second: str, why: str) -> None:
    types = [e["type"] for e in events]
    assert types.count("requeued") == 1 and types.count("started") == 2, (types, why)
    restart = [e for e in events if e["type"] == "started"][1]
    assert restart["data"]["resume"] is True and restart["data"]["worker"] == second, why
    epochs = [e["data"]["epoch"] for e in events if e["type"] == "epoch"]
    # the second worker continued after the last checkpoint: at most the epoch in flight was redone
    assert epochs == list(range(1, stopped_at + 1)) + list(range(stopped_at + 1, 7)), (epochs, why)


def test_a_killed_worker_loses_at_most_an_epoch_and_the_result_is_unchanged(
    env: ServiceEnv, reference: dict[str, torch.Tensor]
) -> None:
    api = TestClient(create_app(Settings(**env.settings)))
    first = env.start_worker("w1")
    job = api.post("/v1/jobs", headers=H, json={**SPEC, "metadata": {"run": "interrupted"}}).json()
    two = _wait(lambda: (ep := [e for e in _events(api, job["id"]) if e["type"] == "epoch"])[1:] and ep, "two epochs")
    t1, t2 = (datetime.fromisoformat(e["created_at"]) for e in two[:2])
    delay = random.uniform(0.0, 2.5) * (t2 - t1).total_seconds()  # a random point in the next epochs
    time.sleep(delay)
    first.send_signal(signal.SIGKILL)
    first.wait()
    why = f"SIGKILL {delay:.2f} s after the second epoch"
    killed_at = max(e["data"]["epoch"] for e in _events(api, job["id"]) if e["type"] == "epoch")
    assert _finished(api, job["id"]) is None, why  # running until its lease expires

    env.start_worker("w2")
    final = _wait(lambda: _finished(api, job["id"]), "the job to finish on the second worker")
    assert final["status"] == "succeeded" and final["attempts"] == 2, (final, why)
    if killed_at < 6:
        _check_resumed(_events(api, job["id"]), killed_at, "w2", why)
    _same_student(_student(api, job["id"]), reference)


def test_sigterm_mid_job_hands_the_job_to_another_worker_at_once(
    env: ServiceEnv, reference: dict[str, torch.Tensor]
) -> None:
    # A lease of 60 s: a resume within 10 s can only come from the stopping worker handing the job back,
    # never from the lease running out.
    settings = {**env.settings, "queue": "term", "lease_seconds": 60, "worker_stale_seconds": 5}
    api = TestClient(create_app(Settings(**settings)))
    logs = {name: env.base / f"{name}.log" for name in ("s1", "s2")}
    first = start_worker(settings, "s1", logs["s1"])
    second = None
    try:
        job = api.post("/v1/jobs", headers=H, json={**SPEC, "metadata": {"run": "sigterm"}}).json()
        _wait(lambda: api.get(f"/v1/jobs/{job['id']}", headers=H).json()["status"] == "running", "the job to start")
        second = start_worker(settings, "s2", logs["s2"])  # idle, on the same queue
        two = _wait(lambda: (ep := [e for e in _events(api, job["id"]) if e["type"] == "epoch"])[1:] and ep, "epochs")
        t1, t2 = (datetime.fromisoformat(e["created_at"]) for e in two[:2])
        delay = random.uniform(0.0, 2.5) * (t2 - t1).total_seconds()  # a random point in the next epochs
        time.sleep(delay)
        signalled = datetime.now(UTC)
        first.send_signal(signal.SIGTERM)
        why = f"SIGTERM {delay:.2f} s after the second epoch"

        def resumed() -> dict[str, Any] | None:
            started = [e for e in _events(api, job["id"]) if e["type"] == "started"]
            return started[1] if len(started) > 1 else None

        restart = _wait(resumed, "the second worker to take the job", timeout=60, log=logs["s1"])
        waited = (datetime.fromisoformat(restart["created_at"]) - signalled).total_seconds()
        assert restart["data"]["worker"] == "s2" and restart["data"]["resume"] is True, (restart, why)
        assert waited < 10, f"the job was resumed {waited:.1f} s after the signal ({why})"
        assert first.wait(timeout=60) == 0, why  # the stopped worker exits cleanly after handing the job back
        final = _wait(lambda: _finished(api, job["id"]), "the job to finish on the second worker")
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)
    assert final["status"] == "succeeded" and final["attempts"] == 2, (final, why)
    events = _events(api, job["id"])
    requeued = [e for e in events if e["type"] == "requeued"]
    assert len(requeued) == 1 and requeued[0]["data"]["reason"] == "shutdown", (requeued, why)
    assert requeued[0]["data"]["worker"] == "s1"
    # the checkpoint was taken at a step, not at the last epoch's end: no epoch was trained twice
    assert [e["data"]["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3, 4, 5, 6], why
    _same_student(_student(api, job["id"]), reference)


def test_a_paused_worker_that_lost_its_lease_writes_nothing(
    env: ServiceEnv, reference: dict[str, torch.Tensor]
) -> None:
    # SIGSTOP (a stalled machine, a long GC pause) for longer than the lease: the job goes to another
    # worker; when the first one wakes up, its lease is gone and it must not write a single file or
    # record more. The result is still bit-identical to an uninterrupted run.
    settings = {**env.settings, "queue": "pause"}
    api = TestClient(create_app(Settings(**settings)))
    logs = {name: env.base / f"{name}.log" for name in ("p1", "p2")}
    first = start_worker(settings, "p1", logs["p1"])
    second = None
    try:
        job = api.post("/v1/jobs", headers=H, json={**SPEC, "metadata": {"run": "paused"}}).json()
        _wait(lambda: sum(e["type"] == "epoch" for e in _events(api, job["id"])) >= 2, "two epochs")
        first.send_signal(signal.SIGSTOP)
        paused_at = max(e["data"]["epoch"] for e in _events(api, job["id"]) if e["type"] == "epoch")
        second = start_worker(settings, "p2", logs["p2"])
        _wait(lambda: [e["type"] for e in _events(api, job["id"])].count("started") == 2, "the second worker")
        first.send_signal(signal.SIGCONT)
        final = _wait(lambda: _finished(api, job["id"]), "the job to finish")
        noticed = ("lease lost", "the lease is gone")
        _wait(lambda: any(n in logs["p1"].read_text() for n in noticed), "the first worker to notice", timeout=30)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
        stop_process(first)
        if second is not None:
            stop_process(second)
    assert final["status"] == "succeeded" and final["attempts"] == 2, final
    _check_resumed(_events(api, job["id"]), paused_at, "p2", "paused")
    _same_student(_student(api, job["id"]), reference)


def test_a_job_longer_than_the_broker_timeout_runs_once(env: ServiceEnv) -> None:
    # The broker hands an unacknowledged message out again after 2 s (and looks for such messages every
    # second), while the job runs for many seconds: the second worker gets the message and must drop it.
    settings = {
        **env.settings, "queue": "dupes", "broker_visibility_timeout": 2,
        "broker_transport_options": '{"unacked_restore_interval": 1, "unacked_restore_throttle": 1}',
    }  # fmt: skip
    logs = {name: env.base / f"{name}.log" for name in ("d1", "d2")}
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


def test_a_full_or_read_only_artifact_store_fails_the_job_clearly(env: ServiceEnv) -> None:
    store_root = env.base / "small-store"
    why = _mount_tmpfs(store_root, "4m")
    if why is not None:
        pytest.skip(f"cannot make a small artifact store here ({why})")
    try:
        settings = {**env.settings, "queue": "disk", "artifact_root": store_root}
        worker = start_worker(settings, "disk", env.base / "disk.log")
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
