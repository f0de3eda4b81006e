"""Celery's own tools against the service's broker: ``gacd celery …`` and ``gacd drain``.

``gacd serve`` starts Redis on a random port. Celery's CLI (``celery -A worker.app …``) reads the
broker from ``GACD_REDIS_URL``, like the workers; without it, it would ask a Redis on the default
port, find no worker there and say "No nodes replied". So ``gacd serve`` writes the URL to
``var/gacd.env`` (``GACD_REDIS_URL=…``, for ``set -a; . var/gacd.env`` or ``docker --env-file``), and
``gacd celery ARGS`` runs ``celery -A worker.app ARGS`` with the broker taken from the environment or,
when unset there, from ``var/serve.json``.

``gacd drain NODE`` stops a worker from taking jobs, with nothing more taken after it returns: it
marks the worker drained in the job store (the worker checks the mark before it starts any job, see
worker/app.py) and sends Celery's ``cancel_consumer`` for the job queue. ``--undo`` reverses both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ENV_FILE = "gacd.env"


def write_env_file(var: Path, redis_url: str) -> Path:
    """``var/gacd.env``: the settings Celery's CLI needs to reach this service's broker."""
    path = var / ENV_FILE
    path.write_text(f"# written by gacd serve; removed when it stops\nGACD_REDIS_URL={redis_url}\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def broker_env(var: Path) -> dict[str, str]:
    """The process environment with ``GACD_REDIS_URL`` filled in from ``var/serve.json`` when it is unset."""
    env = dict(os.environ)
    if not env.get("GACD_REDIS_URL"):
        serve = var / "serve.json"
        if serve.is_file():
            env["GACD_REDIS_URL"] = json.loads(serve.read_text(encoding="utf-8"))["redis_url"]
    return env


def _celery(args: argparse.Namespace) -> int:
    argv = [sys.executable, "-m", "celery", "-A", "worker.app", *args.celery_args]
    return subprocess.run(argv, env=broker_env(args.var)).returncode


def _drain(args: argparse.Namespace) -> int:
    from service.state.queue import Queue
    from service.state.settings import Settings
    from service.state.store import Store, connect

    url = broker_env(args.var).get("GACD_REDIS_URL")
    settings = Settings(redis_url=url) if url else Settings()
    Store(connect(settings.redis_url)).fleet.set_draining(args.node, not args.undo)  # first: it holds at once
    replies = Queue(settings).set_consuming(args.node, args.undo, args.timeout)
    verb = "takes jobs again" if args.undo else "is drained: it starts no new job"
    print(f"{args.node} {verb} (queue {settings.queue})")
    if not replies:
        print(f"{args.node} did not answer within {args.timeout:g} s (busy with a job, or not running): it reads")
        print("Celery's message when its job ends, and the job store's mark holds meanwhile")
    return 0


def register(sub: Any) -> None:
    """Add ``gacd celery`` and ``gacd drain`` to ``gacd``'s subcommands."""
    p = sub.add_parser(
        "celery",
        help="run Celery's CLI (celery -A worker.app ...) against this service's broker",
        description="Runs `celery -A worker.app ARGS` with GACD_REDIS_URL from the environment or, when "
        "unset, from var/serve.json. Example: gacd celery inspect ping",
    )
    p.add_argument("--var", type=Path, default=Path("var"), help="gacd serve's state directory (default ./var)")
    p.add_argument("celery_args", nargs=argparse.REMAINDER, help="arguments for celery, e.g. inspect ping")
    p.set_defaults(run=_celery)
    d = sub.add_parser(
        "drain",
        help="stop a worker from taking jobs (its running job finishes)",
        description="Marks the worker drained in the job store and sends Celery's cancel_consumer for "
        "the job queue: the worker takes no job after this returns. NODE is the worker's Celery node "
        "name, as `gacd celery inspect ping` lists it (e.g. jobs@host).",
    )
    d.add_argument("node", help="the worker's Celery node name, e.g. jobs@host")
    d.add_argument("--undo", action="store_true", help="let the worker take jobs again")
    d.add_argument("--var", type=Path, default=Path("var"), help="gacd serve's state directory (default ./var)")
    d.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the worker's answer")
    d.set_defaults(run=_drain)
