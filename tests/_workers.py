"""Processes for the service tests: Redis with the service's settings on it and its worker processes
(:class:`ServiceEnv`, which conftest.py's ``start_service`` fixture hands out), a real Celery worker on
settings given as a dict, stopping a child process, and waiting for a condition."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.api.app import create_app
from service.launch.commands import worker_command
from service.launch.embedded import RedisServer
from service.state.settings import Settings
from service.state.store import Store, connect

# Fast heartbeats and short leases, so that tests see workers come, go and lose jobs within seconds.
QUICK = {"heartbeat_seconds": 0.5, "lease_seconds": 10, "worker_stale_seconds": 5}


class ServiceEnv:
    """A Redis server under ``base``, the service's settings on it, and the workers started on it.

    Args:
        base: a directory of its own: Redis's data, the artifact store, the workers' logs.
        settings: the settings of the API and the workers (``GACD_*`` without the prefix), on top of
            :data:`QUICK`; ``redis_url`` and ``artifact_root`` are filled in.
    """

    def __init__(self, base: Path, *, appendonly: bool = False, **settings: Any) -> None:
        self.base = base
        self.server = RedisServer(base / "redis", appendonly=appendonly).start()
        self.settings: dict[str, Any] = {
            "redis_url": self.server.url,
            "artifact_root": base / "artifacts",
            **QUICK,
            **settings,
        }
        self.redis = connect(self.server.url)  # for tests that read or write keys beneath the store
        self.store = Store(self.redis)
        self.workers: list[subprocess.Popen[bytes]] = []

    @classmethod
    @contextlib.contextmanager
    def running(cls, base: Path, *, workers: Sequence[str] = (), **settings: Any) -> Iterator[ServiceEnv]:
        """The environment with ``workers`` started (named so), everything stopped on leaving."""
        env = cls(base, **settings)
        try:
            for name in workers:
                env.start_worker(name)
            yield env
        finally:
            env.stop()

    def log(self, worker: str) -> Path:
        """The log file of the worker named ``worker``."""
        return self.base / f"{worker}.log"

    def start_worker(self, name: str, preload: str | None = None, **over: Any) -> subprocess.Popen[bytes]:
        """A worker on these settings (with ``over``), started and reporting in; stopped with the rest.
        ``preload``: as :func:`start_worker`'s."""
        self.workers.append(start_worker({**self.settings, **over}, name, self.log(name), preload=preload))
        return self.workers[-1]

    def app(self, **over: Any) -> TestClient:
        """A client of the API on these settings (with ``over``)."""
        return TestClient(create_app(Settings(**{**self.settings, **over})))

    def stop(self) -> None:
        for proc in self.workers:
            stop_process(proc)
        self.server.stop()


def start_worker(
    settings: dict[str, Any], name: str, log: Path, timeout: float = 60, preload: str | None = None
) -> subprocess.Popen[bytes]:
    """A worker on ``settings['queue']`` and its validation queue, on the CPU; returns once its heartbeat
    is in the store (or raises with the end of its log). ``preload``: a module of tests/ the worker
    imports before anything else (a toy method, say)."""
    env = {
        **os.environ,
        **{f"GACD_{k.upper()}": str(v) for k, v in settings.items()},
        "GACD_WORKER_DEVICE": "cpu",
        "GACD_WORKER_NAME": name,
        "OMP_NUM_THREADS": "1",
    }
    queue = settings["queue"]
    command = worker_command(f"{queue},{queue}.validate", f"{name}@%h")
    argv = [sys.executable, "-m", *command]
    if preload:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
        code = f"import sys, {preload}; from celery.__main__ import main; sys.exit(main())"
        argv = [sys.executable, "-c", code, *command[1:]]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    store = Store(connect(settings["redis_url"]))
    deadline = time.monotonic() + timeout
    while name not in store.fleet.workers(float(settings.get("worker_stale_seconds", 5))):
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
