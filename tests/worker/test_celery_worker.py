"""A real `celery worker` process (embedded mode: filesystem broker, SQLite) runs jobs, and its
reconciler finds a job whose message never reached the broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from store import jobs
from store.db import session_scope
from tests.services import migrated_database
from tests.tiny import REPO
from tests.worker.conftest import Installation, make_installation
from worker.app import make_celery
from worker.names import TASK_RUN_JOB

JOB_TIMEOUT_SECONDS = 240
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Service:
    installation: Installation
    log_path: Path


def _start_worker(installation: Installation, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DQB_DATA_DIR": str(installation.settings.DATA_DIR), "DQB_HEARTBEAT_SECONDS": "0.5",
           "DQB_STALE_AFTER_SECONDS": "10", "DQB_REQUEUE_AFTER_SECONDS": "2", "DQB_RECONCILE_SECONDS": "0.5",
           "OMP_NUM_THREADS": "1"}  # a d_model-32 model gains nothing from more threads on shared cores
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.main", "worker", "--concurrency=1",
             "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tiny_teacher_dir: Path,
            sample_records: list[dict[str, str]]) -> Iterator[Service]:
    """One worker for the module, in its own session; stopped by its pid (its group as a last resort)."""
    tmp = tmp_path_factory.mktemp("celery")
    with migrated_database("sqlite", tmp / "data") as settings:
        installation = make_installation(settings, tiny_teacher_dir, sample_records, tmp)
        worker = _start_worker(installation, tmp / "worker.log")
        try:
            yield Service(installation, tmp / "worker.log")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def _wait_until_finished(service: Service, job_id: str) -> str:
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with session_scope(service.installation.settings) as session:
            job = jobs.get_job(session, tenant_id=None, job_id=job_id)
            if job is not None and job.finished_at is not None:
                return job.status
        time.sleep(0.25)
    raise TimeoutError(f"job {job_id} did not finish; worker log:\n{service.log_path.read_text()[-4000:]}")


def test_worker_process_runs_a_sent_job_to_success(service: Service) -> None:
    installation = service.installation
    job_id = installation.submit(installation.recipe())
    make_celery(installation.settings).send_task(TASK_RUN_JOB, args=[job_id])
    assert _wait_until_finished(service, job_id) == "succeeded"
    with session_scope(installation.settings) as session:
        job = jobs.get_job(session, tenant_id=installation.tenant_id, job_id=job_id)
        assert job is not None and job.result_model_id is not None and job.attempts == 1


def test_worker_reconciler_runs_a_job_whose_message_was_lost(service: Service) -> None:
    installation = service.installation
    job_id = installation.submit(installation.recipe(teacher={"model": "mdl_gone"}))  # never sent
    assert _wait_until_finished(service, job_id) == "user_error"
    with session_scope(installation.settings) as session:
        job = jobs.get_job(session, tenant_id=installation.tenant_id, job_id=job_id)
        assert job is not None and job.error_param == "teacher.model" and job.attempts == 1
