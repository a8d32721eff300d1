"""Sending jobs to the workers: by task name, job id only (the API imports no task code)."""

from __future__ import annotations

from store.settings import Settings
from worker.app import make_celery
from worker.names import TASK_RUN_JOB


class JobQueue:
    def __init__(self, settings: Settings) -> None:
        self._celery = make_celery(settings)

    def send(self, job_id: str) -> None:
        self._celery.send_task(TASK_RUN_JOB, args=[job_id])
