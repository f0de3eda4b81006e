"""Celery tasks: thin wrappers that hand a record id to the job lifecycle or to a validator.

A task that finds the job store away waits for it (``patiently``) instead of failing: Celery would
acknowledge a failed task's message, and the job or upload would then wait for a worker forever.
"""

from __future__ import annotations

from service.state.queue import RUN_JOB, VALIDATE_DATASET, VALIDATE_TEACHER
from worker.app import STOPPING, WORKER_NAME, app, draining, requeue, settings, worker_store


@app.task(name=RUN_JOB)  # the task's name stays gacd.run_job: messages already queued still run
def handle_job(job_id: str) -> None:
    """A job message: run the job here, or leave it (finished, held by another worker, sent back)."""
    from worker.runner import JobRunner

    store = worker_store()
    runner = JobRunner(
        store, settings, WORKER_NAME, stopping=STOPPING, requeue=requeue, draining=lambda: draining(store)
    )
    runner.run(job_id)


@app.task(name=VALIDATE_TEACHER)
def validate_teacher(teacher_id: str) -> None:
    from worker.lease import patiently
    from worker.validate import validate_teacher as run

    patiently(f"teacher {teacher_id}", run, worker_store(), settings, teacher_id)


@app.task(name=VALIDATE_DATASET)
def validate_dataset(dataset_id: str) -> None:
    from worker.lease import patiently
    from worker.validate import validate_dataset as run

    patiently(f"dataset {dataset_id}", run, worker_store(), settings, dataset_id)
