"""A real `celery worker` process (embedded mode: filesystem broker, SQLite) runs one job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import jobs
from store.db import session_scope
from store.settings import Settings
from tests.tiny import REPO
from tests.worker.conftest import Installation
from worker.app import TASK_RUN_JOB, make_celery

JOB_TIMEOUT_SECONDS = 240


@pytest.fixture
def celery_worker(installation: Installation, tmp_path: Path) -> Iterator[Path]:
    """Start the worker in its own session on the installation's DATA_DIR; stop it by its pid."""
    settings = installation.settings
    env = {**os.environ, "DQB_DATA_DIR": str(settings.DATA_DIR), "DQB_HEARTBEAT_SECONDS": "0.5",
           "DQB_STALE_AFTER_SECONDS": "10"}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.app:celery_app", "worker", "--concurrency=1",
             "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield log_path
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)  # the worker's own process group: it and its children
            worker.wait()


def _wait_until_finished(settings: Settings, job_id: str, log_path: Path) -> str:
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with session_scope(settings) as session:
            job = jobs.get_job(session, tenant_id=None, job_id=job_id)
            if job is not None and job.finished_at is not None:
                return job.status
        time.sleep(0.25)
    raise TimeoutError(f"job {job_id} did not finish; worker log:\n{log_path.read_text()[-4000:]}")


@pytest.mark.slow
def test_worker_process_runs_a_sent_job_to_success(installation: Installation, celery_worker: Path) -> None:
    settings = installation.settings
    job_id = installation.submit(installation.recipe())
    make_celery(settings).send_task(TASK_RUN_JOB, args=[job_id])
    assert _wait_until_finished(settings, job_id, celery_worker) == "succeeded"
    with session_scope(settings) as session:
        job = jobs.get_job(session, tenant_id=installation.tenant_id, job_id=job_id)
        assert job is not None and job.result_model_id is not None and job.attempts == 1
