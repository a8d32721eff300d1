"""Real Celery worker processes for fault tests, and reads of what a job left in the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from store import jobs
from store.db import session_scope
from store.models import Artifact, Checkpoint, JobEvent, Model
from store.settings import Settings
from tests.tiny import REPO

# Fast fault detection: a heartbeat every half second, presumed dead after 3 s without one.
FAST = {"HEARTBEAT_SECONDS": "0.5", "STALE_AFTER_SECONDS": "3", "REQUEUE_AFTER_SECONDS": "4",
        "RECONCILE_SECONDS": "0.5"}


def worker_env(settings: Settings, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQB_")}
    env.update({"DQB_DATA_DIR": str(settings.DATA_DIR), "DQB_DATABASE_URL": settings.DATABASE_URL,
                "DQB_BROKER_URL": settings.BROKER_URL, "DQB_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    env.update({f"DQB_{k}": v for k, v in {**FAST, **overrides}.items()})
    return env


def start_worker(settings: Settings, log: Path, **overrides: str) -> subprocess.Popen[bytes]:
    """`celery worker -P solo`: one process, so that killing it kills the training too."""
    command = [sys.executable, "-m", "celery", "-A", "worker.main", "worker", "-P", "solo",
               "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=REPO, env=worker_env(settings, **overrides), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown by its PID; SIGKILL if it does not go."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_worker(settings: Settings, log: Path, **overrides: str) -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker(settings, log, **overrides)
    try:
        yield process
    finally:
        stop_worker(process)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise TimeoutError(f"{what} not within {timeout} s\n{tail}")
        time.sleep(0.1)


@dataclass(frozen=True)
class JobRecord:
    """A job's final row and what it produced."""

    status: str
    attempts: int
    error: str | None
    result_model_id: str | None
    event_kinds: list[str]
    models: int  # models rows made by this job
    compressed_artifacts: int  # of the tenant


def job_record(settings: Settings, job_id: str) -> JobRecord:
    with session_scope(settings) as session:
        job = jobs.get_job(session, tenant_id=None, job_id=job_id)
        if job is None:
            raise LookupError(job_id)
        kinds = [str((e.data or {}).get("kind", e.type)) for e in session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))]
        models = session.scalar(select(func.count()).select_from(Model).where(Model.job_id == job_id))
        artifacts = session.scalar(select(func.count()).select_from(Artifact).where(
            Artifact.tenant_id == job.tenant_id, Artifact.kind == "compressed_model"))
        return JobRecord(status=job.status, attempts=job.attempts, error=job.error_message,
                         result_model_id=job.result_model_id, event_kinds=kinds, models=int(models or 0),
                         compressed_artifacts=int(artifacts or 0))


def job_status(settings: Settings, job_id: str) -> str | None:
    try:
        with session_scope(settings) as session:
            job = jobs.get_job(session, tenant_id=None, job_id=job_id)
            return job.status if job is not None else None
    except Exception:  # the database may be down in a restart test: not finished yet
        return None


def holder_pid(settings: Settings, job_id: str) -> int:
    """The PID of the worker process holding the job (worker ids are "host:pid:random")."""
    with session_scope(settings) as session:
        job = jobs.get_job(session, tenant_id=None, job_id=job_id)
        if job is None or job.worker_id is None:
            raise LookupError(f"job {job_id} is not held")
        return int(job.worker_id.split(":")[1])


def checkpoint_count(settings: Settings, job_id: str) -> int:
    with session_scope(settings) as session:
        query = select(func.count()).select_from(Checkpoint).where(Checkpoint.job_id == job_id)
        count = session.scalar(query)
        return int(count or 0)


def model_blobs(settings: Settings, tenant_id: str) -> list[str]:
    folder = settings.artifact_dir / tenant_id / "models"
    return sorted(p.name for p in folder.glob("*.tar")) if folder.exists() else []


def finished(settings: Settings, job_id: str) -> Callable[[], bool]:
    return lambda: job_status(settings, job_id) in ("succeeded", "failed", "cancelled", "user_error")

