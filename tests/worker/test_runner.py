"""The runner in-process, on a real database and the real compression pipeline with a tiny
teacher: success, cancellation, bad data at run time, and resuming after a crash."""

from __future__ import annotations

import tarfile
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from store import jobs
from store.blobs import LocalBlobStore, sha256_file
from store.db import session_scope
from store.models import Job, JobEvent, JobMetric, Model
from store.settings import Settings
from tests.worker.conftest import ON_BOTH_DATABASES, Installation
from worker import recorder
from worker.runner import run_job


def _job(settings: Settings, job_id: str) -> Job:
    with session_scope(settings) as session:
        job = jobs.get_job(session, tenant_id=None, job_id=job_id)
        assert job is not None
        return job


def _events(settings: Settings, job_id: str) -> list[JobEvent]:
    with session_scope(settings) as session:
        return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def _wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def test_job_runs_to_success_with_its_model_stored(installation: Installation) -> None:
    settings = installation.settings
    job_id = installation.submit(installation.recipe())
    assert run_job(job_id, settings=settings) == "succeeded"
    job = _job(settings, job_id)
    assert (job.status, job.attempts, job.progress_step, job.progress_total) == ("succeeded", 1, 2, 2)
    with session_scope(settings) as session:
        model = session.get(Model, job.result_model_id)
        assert model is not None and model.source == "compression" and model.job_id == job_id
        assert model.layers == {"encoder": 1, "decoder": 1} and model.parameters > 0
        key = f"{installation.tenant_id}/models/{model.id}.tar"
        tar_path = LocalBlobStore(settings.artifact_dir).path_of(key)
        assert sha256_file(tar_path) == model.sha256
        metric_names = set(session.scalars(select(JobMetric.name).where(JobMetric.job_id == job_id)))
        checkpoints = jobs.list_checkpoints(session, tenant_id=installation.tenant_id, job_id=job_id) or []
    with tarfile.open(tar_path) as tar:
        assert {"config.json", "model.safetensors", "quantization.json", "report.json"} <= set(tar.getnames())
    stages = [e.stage for e in _events(settings, job_id) if e.type == "stage"]
    assert stages == ["preparing", "distilling", "evaluating", "packing"]
    assert "loss/task" in metric_names and [c.step for c in checkpoints] == [1, 2]
    assert not (settings.checkpoint_dir / job_id).exists() and not (settings.work_dir / job_id).exists()


@ON_BOTH_DATABASES
def test_cancel_stops_a_running_job_and_removes_its_files(installation: Installation) -> None:
    settings = installation.settings
    job_id = installation.submit(installation.recipe(training={"max_steps": 100000, "checkpoint_every": 1}))
    outcome: list[str | None] = []
    runner = threading.Thread(target=lambda: outcome.append(run_job(job_id, settings=settings)))
    runner.start()
    _wait_for(lambda: _job(settings, job_id).progress_step >= 2)
    with session_scope(settings) as session:
        jobs.request_cancel(session, tenant_id=installation.tenant_id, job_id=job_id)
    asked = time.monotonic()
    runner.join(timeout=30)
    assert outcome == ["cancelled"] and time.monotonic() - asked < 5
    assert _job(settings, job_id).status == "cancelled"
    assert not (settings.checkpoint_dir / job_id).exists() and not (settings.work_dir / job_id).exists()


@ON_BOTH_DATABASES
def test_dataset_without_the_named_column_ends_as_user_error(installation: Installation) -> None:
    settings = installation.settings
    job_id = installation.submit(installation.recipe(dataset={"source_field": "no_such_column"}))
    assert run_job(job_id, settings=settings) == "user_error"
    job = _job(settings, job_id)
    assert job.error_code == "invalid_dataset" and "no_such_column" in (job.error_message or "")
    assert job.result_model_id is None


def test_claimed_job_is_not_run_by_a_second_worker(installation: Installation) -> None:
    settings = installation.settings
    job_id = installation.submit(installation.recipe())
    with session_scope(settings) as session:
        jobs.claim_job(session, job_id=job_id, worker_id="alive", stale_after=settings.STALE_AFTER_SECONDS)
    assert run_job(job_id, settings=settings) is None
    assert _job(settings, job_id).worker_id == "alive"


class _WorkerDied(BaseException):
    """Stands for the process ending abruptly: nothing in the runner may catch it."""


def test_next_attempt_resumes_from_the_last_checkpoint(installation: Installation,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    settings = installation.settings
    job_id = installation.submit(installation.recipe())  # checkpoints at steps 1 and 2
    record = recorder.ProgressRecorder._checkpoint

    def record_then_die(self: recorder.ProgressRecorder, event, path: Path) -> None:  # type: ignore[no-untyped-def]
        record(self, event, path)
        raise _WorkerDied()

    monkeypatch.setattr(recorder.ProgressRecorder, "_checkpoint", record_then_die)
    with pytest.raises(_WorkerDied):
        run_job(job_id, settings=settings)
    monkeypatch.undo()
    assert _job(settings, job_id).status == "running"
    time.sleep(settings.STALE_AFTER_SECONDS)
    assert run_job(job_id, settings=settings) == "succeeded"
    job = _job(settings, job_id)
    assert job.attempts == 2
    resumed = [e.data for e in _events(settings, job_id) if e.data.get("kind") == "resumed"]
    assert resumed and resumed[0]["step"] == 1


def test_finetune_recipe_stores_a_full_precision_teacher(installation: Installation) -> None:
    settings = installation.settings
    recipe = installation.recipe(method="finetune", teacher_training={"max_steps": 2, "batch_size": 4,
                                                                      "max_source_length": 32,
                                                                      "max_target_length": 16})
    job_id = installation.submit(recipe)
    assert run_job(job_id, settings=settings) == "succeeded"
    with session_scope(settings) as session:
        model = session.get(Model, _job(settings, job_id).result_model_id)
        assert model is not None and model.name.endswith("-finetuned") and model.parameters > 0
        key = f"{installation.tenant_id}/models/{model.id}.tar"
        tar_path = LocalBlobStore(settings.artifact_dir).path_of(key)
    with tarfile.open(tar_path) as tar:
        names = set(tar.getnames())
    assert {"config.json", "model.safetensors", "report.json"} <= names and "quantization.json" not in names
    assert model.layers == {"encoder": 2, "decoder": 2}
