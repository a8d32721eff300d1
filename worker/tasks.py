"""The Celery task (thin: the runner holds the logic) and the worker's process hooks.

The task is shared (bound to whichever app the worker builds), so importing this module builds
nothing; the reconciler starts with the worker, not at import.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import current_app, shared_task
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from store.db import forget_engines
from store.settings import get_settings
from worker import sweeps
from worker.names import TASK_RUN_JOB
from worker.reconcile import Reconciler
from worker.runner import run_job


@shared_task(name=TASK_RUN_JOB, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job_task(job_id: str) -> str | None:
    """Claim and run one job, then move its sweep on; the runner writes every status, so the result
    is only for logs."""
    settings = get_settings()
    status = run_job(job_id, settings=settings)
    if status is not None:
        sweeps.after_job(settings, job_id, _send)
    return status


def _send(job_id: str) -> None:
    current_app.send_task(TASK_RUN_JOB, args=[job_id])


@functools.cache
def reconciler() -> Reconciler:
    """The process's reconciler, made on first use (the worker's ready signal)."""
    return Reconciler(get_settings(), _send)


@worker_process_init.connect
def _child_started(**_: Any) -> None:
    forget_engines(close=False)  # connections inherited from the parent are not ours to use


@worker_ready.connect
def _worker_ready(**_: Any) -> None:
    reconciler().start()


@worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    reconciler().stop()
