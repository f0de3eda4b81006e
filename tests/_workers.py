"""Processes for the service tests: a real Celery worker on settings given as a dict, stopping a child
process, and waiting for a condition."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from service.launch.commands import worker_command
from service.state.store import Store, connect


def start_worker(settings: dict[str, Any], name: str, log: Path, timeout: float = 60) -> subprocess.Popen[bytes]:
    """A worker on ``settings['queue']`` and its validation queue, on the CPU; returns once its heartbeat
    is in the store (or raises with the end of its log)."""
    env = {
        **os.environ,
        **{f"GACD_{k.upper()}": str(v) for k, v in settings.items()},
        "GACD_WORKER_DEVICE": "cpu",
        "GACD_WORKER_NAME": name,
        "OMP_NUM_THREADS": "1",
    }
    queue = settings["queue"]
    argv = [sys.executable, "-m", *worker_command(f"{queue},{queue}.validate", f"{name}@%h")]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    store = Store(connect(settings["redis_url"]))
    deadline = time.monotonic() + timeout
    while name not in store.workers(float(settings.get("worker_stale_seconds", 5))):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"worker {name} did not start: " + log.read_text()[-3000:])
        time.sleep(0.1)
    return proc


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(pred: Any, what: str, timeout: float = 240, log: Path | None = None) -> Any:
    """``pred()``'s first truthy value, polled every 0.2 s; fails after ``timeout`` with the end of ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")
