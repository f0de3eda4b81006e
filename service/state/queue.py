"""Sending work to the workers: Celery task names and queues, shared by the API and the workers.

The API sends tasks by name, so it never imports the worker's code (nor torch). Training jobs go to
the ``{queue}`` queue; validations of uploads, which are short and run on the CPU, to
``{queue}.validate``, so that a long job does not hold up a teacher's validation where a separate
validation worker runs (``gacd serve`` starts one).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from service.state.settings import Settings

RUN_JOB = "gacd.run_job"
VALIDATE_TEACHER = "gacd.validate_teacher"
VALIDATE_DATASET = "gacd.validate_dataset"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Settings the API's and the workers' Celery apps share."""
    return {
        "broker_url": settings.redis_url,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": settings.queue,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # A job can run for hours, longer than any visibility timeout: when the broker hands its message out
        # again, the second worker finds the job's lease held and drops the message (worker/runner.py).
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout,
            **settings.broker_transport_options,
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def validate_queue(settings: Settings) -> str:
    return settings.queue + ".validate"


class Queue:
    """The API's side of the queue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.celery = Celery("gacd-api")
        self.celery.conf.update(celery_config(settings))

    def enqueue_job(self, job_id: str) -> None:
        """Send the job to the job queue, where a worker's :func:`worker.tasks.handle_job` takes it."""
        self.celery.send_task(RUN_JOB, args=[job_id], queue=self.settings.queue)

    def validate_teacher(self, teacher_id: str) -> None:
        self.celery.send_task(VALIDATE_TEACHER, args=[teacher_id], queue=validate_queue(self.settings))

    def validate_dataset(self, dataset_id: str) -> None:
        self.celery.send_task(VALIDATE_DATASET, args=[dataset_id], queue=validate_queue(self.settings))

    def set_consuming(self, node: str, consume: bool, timeout: float = 2.0) -> list[Any]:
        """Celery's ``add_consumer`` (``consume``) or ``cancel_consumer`` for the job queue, sent to the
        worker named ``node``; returns the replies that came within ``timeout`` seconds."""
        control = self.celery.control
        command = control.add_consumer if consume else control.cancel_consumer
        return list(command(self.settings.queue, destination=[node], reply=True, timeout=timeout) or [])
