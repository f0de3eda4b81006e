"""Operating the workers with Celery's own tools: ``gacd celery …`` reaches the service's broker,
``/readyz`` counts only workers that take jobs from the job queue, and a drained worker takes no job
after ``gacd drain`` returns, even when it was busy when drained (a solo worker reads Celery's control
messages only between jobs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _fakes import make_cifar10
from _workers import ServiceEnv, wait_until
from fastapi.testclient import TestClient

pytestmark = [pytest.mark.api, pytest.mark.worker, pytest.mark.e2e]

KEY = "drain-key-" + "d" * 24
WORKER = "dw"
QUEUE = "drainq"


@pytest.fixture(scope="module")
def env(start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory) -> ServiceEnv:
    data = tmp_path_factory.mktemp("data")
    make_cifar10(data, n_train=64, n_test=20)
    return start_service("drain", workers=[WORKER], data_root=data, api_keys=f"{KEY}=t", queue=QUEUE)


@pytest.fixture(scope="module")
def api(env: ServiceEnv) -> TestClient:
    return env.app()


def H() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def gacd(env: ServiceEnv, var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``gacd ARGS`` with the broker found only through ``var/serve.json`` (as after ``gacd serve``)."""
    (var / "serve.json").write_text(json.dumps({"redis_url": env.server.url}), encoding="utf-8")
    run_env = {k: v for k, v in os.environ.items() if k != "GACD_REDIS_URL"}
    run_env["GACD_QUEUE"] = QUEUE
    argv = [sys.executable, "-m", "gacd_core.cli", *args]
    return subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=90)


def node(env: ServiceEnv) -> str:
    return str(env.store.fleet.workers(5)[WORKER].node)


def ready(api: TestClient) -> tuple[int, Any]:
    r = api.get("/readyz")
    return r.status_code, r.json()["checks"]["workers"]


def long_job() -> dict[str, Any]:
    return {
        "method": "natural",
        "student": {"arch": "tiny_wrn"},
        "dataset": {"name": "cifar10"},
        "hyperparameters": {"epochs": 1000, "batch_size": 32},
        "evaluation": {"eps_sweep": [0], "throughput": False},
    }


def status(api: TestClient, jid: str) -> dict[str, Any]:
    return dict(api.get(f"/v1/jobs/{jid}", headers=H()).json())


def test_celery_cli_reaches_the_workers_and_readyz_counts_only_job_consumers(
    api: TestClient, env: ServiceEnv, tmp_path: Path
) -> None:
    name = node(env)

    def ping() -> bool:
        out = gacd(env, tmp_path, "celery", "--var", str(tmp_path), "inspect", "ping", "--timeout", "2")
        assert out.returncode in (0, 69), out.stderr  # 69: no node replied yet
        return out.returncode == 0 and f"{name}: OK" in out.stdout

    # The worker listens for Celery's control messages once its start (importing torch) is over,
    # a few seconds after its first heartbeat; from then on it answers.
    wait_until(ping, "the worker to answer celery inspect ping", timeout=60)
    assert ready(api) == (200, 1)
    # Celery's own cancel_consumer for the job queue: the worker no longer counts
    args = ("celery", "--var", str(tmp_path), "control", "cancel_consumer", QUEUE, "-d", name)
    out = gacd(env, tmp_path, *args)
    assert out.returncode == 0 and "no longer consuming" in out.stdout, out.stdout + out.stderr
    wait_until(lambda: ready(api) == (503, 0), "readyz to drop the worker", timeout=10)
    out = gacd(env, tmp_path, "celery", "--var", str(tmp_path), "control", "add_consumer", QUEUE, "-d", name)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_until(lambda: ready(api) == (200, 1), "readyz to count the worker again", timeout=10)


def test_a_worker_drained_while_busy_takes_no_job_after_the_drain(
    api: TestClient, env: ServiceEnv, tmp_path: Path
) -> None:
    name = node(env)
    busy = api.post("/v1/jobs", headers=H(), json=long_job()).json()["id"]
    wait_until(lambda: status(api, busy)["status"] == "running", "the first job to run", timeout=120)
    out = gacd(env, tmp_path, "drain", name, "--var", str(tmp_path), "--timeout", "1")
    assert out.returncode == 0 and "is drained" in out.stdout, out.stdout + out.stderr
    assert ready(api) == (503, 0)  # at once: the job store's mark, whatever Celery has read
    waiting = api.post("/v1/jobs", headers=H(), json=long_job()).json()["id"]
    # the running job ends (here by a cancel): the worker is free, and a message waits for it
    assert api.post(f"/v1/jobs/{busy}/cancel", headers=H()).status_code == 200
    wait_until(lambda: status(api, busy)["status"] == "cancelled", "the first job to end", timeout=30)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        rec = status(api, waiting)
        assert rec["status"] == "queued" and rec["started_at"] is None and rec["attempts"] == 0, rec
        time.sleep(0.5)
    # undone, the same worker takes it: the drain was what held it back
    out = gacd(env, tmp_path, "drain", name, "--undo", "--var", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    wait_until(lambda: status(api, waiting)["status"] == "running", "the waiting job to start", timeout=60)
    events = api.get(f"/v1/jobs/{waiting}/events", headers=H()).json()["data"]
    assert [e["data"]["worker"] for e in events if e["type"] == "started"] == [WORKER]
    # readiness follows the worker's next heartbeat, which carries the queues it consumes again
    wait_until(lambda: ready(api) == (200, 1), "readyz to count the undrained worker", timeout=30)
    api.post(f"/v1/jobs/{waiting}/cancel", headers=H())
    wait_until(lambda: status(api, waiting)["status"] == "cancelled", "the second job to end", timeout=30)
