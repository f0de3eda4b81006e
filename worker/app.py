"""The Celery application of the GPU workers.

Start one worker per GPU, each running one job at a time::

    GACD_WORKER_DEVICE=cuda:0 celery -A worker.app worker --pool solo --concurrency 1 -Q gacd,gacd.validate

``--pool solo`` runs the job in the worker process itself, so CUDA is initialised only where the job
runs, and a worker holds exactly one job. The worker publishes a heartbeat to the job store (what
``/readyz`` and ``/metrics`` count) from a thread, also while a job runs; it names the worker's Celery
node and the queues its consumer takes messages from now (so a ``cancel_consumer`` shows there).

Draining: ``gacd drain NODE`` marks the worker drained in the job store and sends Celery's
``cancel_consumer`` for the job queue. A solo worker reads Celery's control messages only between
jobs, so a job message may reach it before that one; a drained worker therefore checks the mark
before it starts any job and sends the job back to the queue instead. A worker clears its mark when
it starts: a drain lasts until the worker stops, like Celery's ``cancel_consumer``.

On SIGTERM (``docker compose stop``, a redeploy) Celery's warm shutdown lets the running task finish;
``STOPPING`` tells the job to finish now: it checkpoints at the next training step, releases its lease
and goes back to the queue, where another worker resumes it at once (worker/runner.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from service.state.queue import RUN_JOB, celery_config
from service.state.records import WorkerBeat
from service.state.settings import get_settings
from service.state.store import Store, connect

log = logging.getLogger("gacd.worker")

settings = get_settings()
app = Celery("gacd-worker", include=["worker.tasks"])
app.conf.update(celery_config(settings))

_stop = threading.Event()
STOPPING = threading.Event()  # set on SIGTERM/SIGINT: the running job pauses, no new job starts
_node: dict[str, Any] = {}  # the Celery consumer and its node name, once the worker is ready
# Unique per start: a restarted container keeps its host name and pid, and a job's events should tell
# the two runs apart.
WORKER_NAME = os.environ.get("GACD_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def worker_store() -> Store:
    return Store(connect(settings.redis_url), events_max=settings.events_max)


def requeue(job_id: str, queue: str | None) -> None:
    """Send ``job_id`` to ``queue`` (this worker's job queue when None)."""
    app.send_task(RUN_JOB, args=[job_id], queue=queue or settings.queue)


def consumed_queues() -> list[str] | None:
    """The queues this worker's Celery consumer takes messages from now (None before it is ready)."""
    consumer = _node.get("consumer")
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is None:
        return None
    return sorted(q.name for q in list(task_consumer.queues))


def draining(store: Store) -> bool:
    """Whether ``gacd drain`` marked this worker: it starts no job (the job goes back to the queue)."""
    node = _node.get("name")
    return node is not None and store.fleet.is_draining(node)


def _heartbeat_loop(store: Store, info: WorkerBeat) -> None:
    from worker.reaper import reap

    while not _stop.is_set():
        try:
            queues = consumed_queues()
            store.fleet.heartbeat(WORKER_NAME, info if queues is None else info.model_copy(update={"queues": queues}))
            reap(store, requeue, settings.max_attempts)
        except Exception as exc:  # Redis away: keep trying, the worker itself goes on
            log.warning("heartbeat failed: %s", exc)
        _stop.wait(settings.heartbeat_seconds)


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    _node.update(consumer=sender, name=getattr(sender, "hostname", None))
    info = WorkerBeat(device=settings.worker_device, pid=os.getpid(), host=socket.gethostname(), node=_node["name"])
    store = worker_store()
    if _node["name"]:  # a drain lasts until the worker stops, as Celery's cancel_consumer does
        with contextlib.suppress(Exception):
            store.fleet.set_draining(_node["name"], False)
    threading.Thread(target=_heartbeat_loop, args=(store, info), name="gacd-heartbeat", daemon=True).start()
    # Import the science (torch and all) now, not when the first job arrives: a job handed over by a
    # stopping worker then resumes here within seconds.
    import gacd_core.jobs  # noqa: F401

    log.info("worker %s ready (device %s)", WORKER_NAME, settings.worker_device)


@worker_shutting_down.connect
def _stopping(**_: Any) -> None:
    # Runs in Celery's signal handler, in the main thread, while the job may be mid-step: only set a flag.
    STOPPING.set()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _stop.set()
    with contextlib.suppress(Exception):  # Redis away at shutdown: the heartbeat simply goes stale
        worker_store().fleet.gone(WORKER_NAME)
