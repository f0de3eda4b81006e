"""The deployment on a real Docker engine (``make compose-test``): build both images, start the CPU stack,
run a tiny job through the HTTP API to ``succeeded``, then run the same job again while Redis and then
the worker are restarted under it; the job still succeeds once, with the same artifacts (SHA-256) as
the uninterrupted run. Everything is torn down at the end (the images are kept: the next run reuses
their layers).

Skipped, saying why, where no Docker engine answers or no compose CLI is installed. Settings:
``GACD_COMPOSE_FILES`` (space-separated, default ``docker-compose.cpu.yml``; ``make compose-test``
adds ``docker/airgap/docker-compose.airgap.yml`` where no registry answers) and ``GACD_COMPOSE_RECORD`` (a JSON file
that receives the timings and image sizes; docs/deployment.md quotes it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fakes import make_cifar10

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parent.parent
KEY = "compose-test-key-" + uuid.uuid4().hex
SPEC = {
    "method": "at", "student": {"arch": "tiny_resnet"}, "dataset": {"name": "cifar10", "test_subset": 50},
    "hyperparameters": {"epochs": 8, "batch_size": 25, "attack": {"steps": 2}},
    "evaluation": {"attacks": ["pgd20"], "eps_sweep": [], "throughput": False}, "seed": 11,
}  # fmt: skip
COMPARED = ("student.safetensors", "student.onnx")  # report.json and train.log carry times


def _compose_cli() -> list[str] | str:
    """``docker compose`` (v2) or ``docker-compose`` (v1), or the reason there is none."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI is installed"
    info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"no Docker engine answers (docker info: {info.stderr.strip().splitlines()[-1:] or info.returncode})"
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    v1 = shutil.which("docker-compose")
    return [v1] if v1 else "neither `docker compose` nor `docker-compose` is installed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """One compose project of this test: its own name, port and key file; commands timed into ``record``."""

    def __init__(self, cli: list[str], base: Path) -> None:
        files = os.environ.get("GACD_COMPOSE_FILES", "docker-compose.cpu.yml").split()
        self.project = "gacdtest" + uuid.uuid4().hex[:8]
        self.argv = [*cli, "--project-directory", str(ROOT), "-p", self.project]
        for f in files:
            self.argv += ["-f", str(ROOT / f)]
        self.port = _free_port()
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        self.commit = commit.stdout.strip() or "unknown"
        keys = base / "api-keys.txt"
        keys.write_text(f"compose {KEY}\n", encoding="utf-8")
        keys.chmod(0o644)
        self.env = {
            **os.environ,
            "GACD_API_PORT": f"127.0.0.1:{self.port}",
            "GACD_API_KEYS_HOST_FILE": str(keys),
            "GIT_COMMIT": self.commit,
        }
        engine = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
        )
        version = subprocess.run([*cli, "version"], capture_output=True, text=True).stdout.splitlines()[:1]
        self.record: dict[str, Any] = {
            "engine": engine.stdout.strip(),
            "compose": " ".join(cli) + (f" ({version[0]})" if version else ""),
            "files": files,
            "commit": self.commit,
            "seconds": {},
        }
        self.url = f"http://127.0.0.1:{self.port}"

    def __call__(self, *args: str, timed: str | None = None, timeout: float = 1800) -> str:
        t0 = time.monotonic()
        done = subprocess.run([*self.argv, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if timed:
            self.record["seconds"][timed] = round(time.monotonic() - t0, 1)
        assert done.returncode == 0, f"compose {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def container(self, service: str) -> str:
        return self("ps", "-q", service).strip()

    def logs(self) -> str:
        try:
            return self("logs", "--no-color", "--tail", "80")[-8000:]
        except AssertionError as exc:
            return str(exc)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cli = _compose_cli()
    if isinstance(cli, str):
        pytest.skip(f"the compose end-to-end test needs a running Docker engine: {cli}")
    s = Stack(cli, tmp_path_factory.mktemp("compose"))
    try:
        yield s
    finally:
        subprocess.run([*s.argv, "down", "-v", "--remove-orphans"], env=s.env, capture_output=True, timeout=300)
        if os.environ.get("GACD_COMPOSE_RECORD"):
            Path(os.environ["GACD_COMPOSE_RECORD"]).write_text(json.dumps(s.record, indent=2) + "\n")
        print(json.dumps(s.record, indent=2))


def _wait(pred: Any, what: str, stack: Stack, timeout: float = 600) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{stack.logs()}")


def _copy_data(stack: Stack, base: Path) -> None:
    """A small CIFAR-10 into the stack's data volume, through the worker container."""
    make_cifar10(base / "data", n_train=200, n_test=50)
    archive = base / "data.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(base / "data" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with open(archive, "rb") as f:
        done = subprocess.run(
            ["docker", "cp", "-", f"{stack.container('worker')}:/data/"], stdin=f, capture_output=True, text=True
        )
    assert done.returncode == 0, done.stderr


def test_the_cpu_stack_runs_a_job_through_restarts_of_redis_and_the_worker(stack: Stack, tmp_path: Path) -> None:
    stack("build", timed="build (cached layers reused)")
    sizes = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"], capture_output=True, text=True
    ).stdout.split("\n")
    stack.record["images"] = sorted(line for line in sizes if line.startswith(("gacd-", "redis")))
    stack("up", "-d", timed="up -d")
    api = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    t0 = time.monotonic()
    _wait(lambda: api.get("/readyz").status_code == 200, "the API and a worker", stack, timeout=300)
    stack.record["seconds"]["up to /readyz 200"] = round(time.monotonic() - t0, 1)
    _copy_data(stack, tmp_path)

    def job(job_id: str) -> dict[str, Any]:
        r = api.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def events(job_id: str) -> list[dict[str, Any]]:
        return api.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]

    def finished(job_id: str) -> dict[str, Any] | None:
        j = job(job_id)
        return j if j["status"] in ("succeeded", "failed", "cancelled") else None

    # 1. straight through
    t0 = time.monotonic()
    first = api.post("/v1/jobs", json={**SPEC, "metadata": {"run": "straight"}})
    assert first.status_code == 202, first.text
    a = _wait(lambda: finished(first.json()["id"]), "the first job", stack)
    stack.record["seconds"]["job, uninterrupted"] = round(time.monotonic() - t0, 1)
    assert a["status"] == "succeeded" and a["attempts"] == 1, a
    shas = {x["name"]: x["sha256"] for x in a["artifacts"]}
    assert set(shas) == {"student.safetensors", "student.onnx", "report.json", "report.html", "train.log"}
    report = api.get(f"/v1/jobs/{a['id']}/artifacts/report.json").json()
    assert report["environment"]["git_commit"] == stack.commit  # the GIT_COMMIT build argument
    assert report["environment"]["device"] == "cpu"
    onnx = report["export"]["onnx"]
    assert onnx["opset"] == 18 and onnx["max_abs_diff"] < 1e-4 and onnx["images"] == 50, onnx

    # 2. the same job, with Redis and then the worker restarted under it
    t0 = time.monotonic()
    second = api.post("/v1/jobs", json={**SPEC, "metadata": {"run": "restarted"}}).json()
    jid = second["id"]
    _wait(lambda: any(e["type"] == "epoch" for e in events(jid)), "the second job's first epoch", stack)
    stack("restart", "redis", timed="restart redis")
    _wait(lambda: api.get("/readyz").status_code == 200, "Redis back", stack, timeout=120)
    seen = max(e["data"]["epoch"] for e in events(jid) if e["type"] == "epoch")
    assert job(jid)["status"] == "running"
    _wait(
        lambda: max(e["data"]["epoch"] for e in events(jid) if e["type"] == "epoch") > seen,
        "an epoch after the Redis restart",
        stack,
    )
    assert job(jid)["status"] == "running", "the job must still be running for the worker restart to matter"
    stack("restart", "worker", timed="restart worker (SIGTERM, checkpoint, re-queue)")
    b = _wait(lambda: finished(jid), "the second job", stack)
    stack.record["seconds"]["job, with both restarts"] = round(time.monotonic() - t0, 1)

    assert b["status"] == "succeeded", b
    evs = events(jid)
    types = [e["type"] for e in evs]
    assert types.count("succeeded") == 1, types
    starts = [e for e in evs if e["type"] == "started"]
    requeued = [e for e in evs if e["type"] == "requeued"]
    assert len(starts) == 2 and starts[1]["data"]["resume"] is True, starts
    assert starts[0]["data"]["worker"] != starts[1]["data"]["worker"]  # a restarted worker has a new id
    assert len(requeued) == 1 and requeued[0]["data"]["reason"] == "shutdown", requeued
    stack.record["worker_restart"] = {
        "paused_at": {"epoch": requeued[0]["data"]["epoch"], "step": requeued[0]["data"]["step"]},
        "workers": [s["data"]["worker"] for s in starts],
    }
    same = {x["name"]: x["sha256"] for x in b["artifacts"]}
    for name in COMPARED:
        assert same[name] == shas[name], f"{name} differs from the uninterrupted run's"
        got = api.get(f"/v1/jobs/{jid}/artifacts/{name}")
        assert hashlib.sha256(got.content).hexdigest() == shas[name]
    stack.record["sha256"] = {name: shas[name] for name in COMPARED}
    stack.record["result"] = "passed"
