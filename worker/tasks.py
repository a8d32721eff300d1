"""The Celery task (thin: the runner holds the logic) and the worker's process hooks."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from store.db import forget_engines
from store.settings import get_settings
from worker.app import TASK_RUN_JOB, celery_app
from worker.reconcile import Reconciler
from worker.runner import run_job


@celery_app.task(name=TASK_RUN_JOB, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job_task(job_id: str) -> str | None:
    """Claim and run one job; the runner writes every status, so the result is only for logs."""
    return run_job(job_id, settings=get_settings())


def _send(job_id: str) -> None:
    celery_app.send_task(TASK_RUN_JOB, args=[job_id])


_reconciler = Reconciler(get_settings(), _send)


@worker_process_init.connect
def _child_started(**_: Any) -> None:
    forget_engines(close=False)  # connections inherited from the parent are not ours to use


@worker_ready.connect
def _worker_ready(**_: Any) -> None:
    _reconciler.start()


@worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    _reconciler.stop()
