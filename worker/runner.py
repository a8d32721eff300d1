"""Run one claimed job: resolve its references, compress with progress written to the database,
store the result, and end the job in exactly one final state.

`run_job(job_id)` is what the Celery task calls; it is safe to call twice or concurrently for
the same job (only one claim succeeds) and after a worker died (the next attempt resumes from
the job's last checkpoint).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from compression.errors import (
    Cancelled,
    DatasetError,
    ModelError,
    RecipeError,
    TrainingDiverged,
    UserInputError,
)
from compression.recipe import Recipe
from store import catalog, jobs, sweeps
from store.blobs import LocalBlobStore
from store.db import session_scope
from store.models import Checkpoint
from store.settings import Settings, get_settings
from worker.dbretry import retry_db
from worker.heartbeat import HeartbeatMonitor
from worker.recorder import ProgressRecorder, public_text
from worker.refs import resolve_recipe
from worker.results import job_result, model_name, store_result

log = logging.getLogger("dqbart.worker")

LOST = "lost"  # another worker holds the job now: this one wrote nothing final
# The first matching type names the code: TrainingDiverged is a RecipeError, with its own code.
_USER_ERROR_CODES = {TrainingDiverged: "training_diverged", RecipeError: "invalid_recipe",
                     DatasetError: "invalid_dataset", ModelError: "invalid_model"}


@dataclass(frozen=True)
class ClaimedJob:
    """What the run needs from the job row, read once at the claim."""

    id: str
    tenant_id: str
    recipe: dict[str, Any]
    attempts: int
    cancel_requested: bool


@dataclass(frozen=True)
class JobPaths:
    work: Path  # removed when the run ends, whatever the outcome
    out: Path
    checkpoints: Path  # kept across attempts; removed when the job ends

    @classmethod
    def of(cls, settings: Settings, job: ClaimedJob) -> JobPaths:
        work = settings.work_dir / job.id
        return cls(work=work, out=work / "artifact", checkpoints=settings.checkpoint_dir / job.id)


def new_worker_id() -> str:
    """Unique per run, so that a restarted process never mistakes an old claim for its own."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_job(job_id: str, *, settings: Settings | None = None, worker_id: str | None = None) -> str | None:
    """Claim and run the job; its final status, LOST, or None when it could not be claimed."""
    settings = settings or get_settings()
    worker_id = worker_id or new_worker_id()
    job = retry_db(lambda: _claim(settings, job_id, worker_id), what=f"claiming {job_id}")
    if job is None:
        log.info("job %s not claimed: finished, or held by a live worker", job_id)
        return None
    log.info("job %s claimed by %s (attempt %d)", job_id, worker_id, job.attempts)
    return _run_claimed(settings, job, worker_id)


def _claim(settings: Settings, job_id: str, worker_id: str) -> ClaimedJob | None:
    with session_scope(settings) as session:
        row = jobs.claim_job(session, job_id=job_id, worker_id=worker_id,
                             stale_after=settings.STALE_AFTER_SECONDS)
        if row is None:
            return None
        return ClaimedJob(id=row.id, tenant_id=row.tenant_id, recipe=row.recipe, attempts=row.attempts,
                          cancel_requested=row.cancel_requested)


def _run_claimed(settings: Settings, job: ClaimedJob, worker_id: str) -> str:
    paths = JobPaths.of(settings, job)
    monitor = HeartbeatMonitor(settings, job_id=job.id, worker_id=worker_id)
    monitor.cancel_requested = job.cancel_requested
    recorder = ProgressRecorder(settings, job_id=job.id, worker_id=worker_id, monitor=monitor)
    try:
        with monitor:
            return _compress_and_store(settings, job, worker_id, paths, recorder)
    except Cancelled:
        if not monitor.owned:
            log.warning("job %s was taken over by another worker; this run stops", job.id)
            return LOST
        return _end(settings, job, worker_id, paths, status="cancelled", message="cancelled by request")
    except UserInputError as exc:
        code = next((c for t, c in _USER_ERROR_CODES.items() if isinstance(exc, t)), "invalid_input")
        return _end(settings, job, worker_id, paths, status="user_error", code=code,
                    message=public_text(settings, exc.message), param=exc.param)
    except Exception as exc:
        log.exception("job %s failed", job.id)
        return _end(settings, job, worker_id, paths, status="failed", code="internal_error",
                    message=public_text(settings, f"{type(exc).__name__}: {exc}"))
    finally:
        recorder.close()
        shutil.rmtree(paths.work, ignore_errors=True)


def _compress_and_store(settings: Settings, job: ClaimedJob, worker_id: str, paths: JobPaths,
                        recorder: ProgressRecorder) -> str:
    from compression.pipeline import compress, finetune  # the training stack loads only where jobs run

    if recorder.monitor.should_stop:
        raise Cancelled()
    blobs = LocalBlobStore(settings.artifact_dir)
    with session_scope(settings) as session:
        recipe = Recipe.from_dict(job.recipe)
        local = resolve_recipe(recipe, session=session, tenant_id=job.tenant_id, settings=settings,
                               blobs=blobs)
        resume_from = _resume_point(session, settings, job)
        name = model_name(recipe, _teacher_name(session, job, recipe))
        known_teacher = sweeps.teacher_metrics_for(session, job_id=job.id)  # a sweep scores it once
    shutil.rmtree(paths.work, ignore_errors=True)
    paths.work.mkdir(parents=True)
    if recipe.method == "finetune":
        result = finetune(local, paths.out, device=settings.DEVICE, checkpoint_dir=paths.checkpoints,
                          resume_from=resume_from, progress=recorder)
    else:
        result = compress(local, paths.out, device=settings.DEVICE, checkpoint_dir=paths.checkpoints,
                          resume_from=resume_from, progress=recorder, teacher_metrics=known_teacher)
    gate = result.report.get("quality_gate")
    if gate is not None:
        retry_db(lambda: _record_gate(settings, job.id, gate), what=f"recording the gate of {job.id}")
        if gate["verdict"] == "rejected":  # nothing is published; the report stays in the final event
            return _end(settings, job, worker_id, paths, status="rejected", code="quality_gate_failed",
                        message=gate["message"], param="gate", quality_gate=gate,
                        details={"report": result.report}, result=job_result(result.report))

    def store() -> str | None:
        with session_scope(settings) as session:
            return store_result(session, blobs=blobs, job_id=job.id, tenant_id=job.tenant_id,
                                worker_id=worker_id, artifact_dir=result.artifact_dir, report=result.report,
                                name=name, task=recipe.task, tar_path=paths.work / "model.tar")

    model_id = retry_db(store, what=f"storing the result of {job.id}")
    if model_id is None:
        return LOST
    shutil.rmtree(paths.checkpoints, ignore_errors=True)
    log.info("job %s succeeded: model %s", job.id, model_id)
    return "succeeded"


def _teacher_name(session: Session, job: ClaimedJob, recipe: Recipe) -> str:
    # resolve_recipe has refused a recipe without a teacher model id by now.
    teacher = catalog.get_model(session, tenant_id=job.tenant_id, model_id=str(recipe.teacher.model))
    return teacher.name if teacher is not None else "model"


def _record_gate(settings: Settings, job_id: str, gate: dict[str, Any]) -> None:
    with session_scope(settings) as session:
        jobs.record_event(session, job_id=job_id, type="message", message=gate["message"],
                          data={"kind": "quality_gate", "quality_gate": gate})


def _resume_point(session: Session, settings: Settings, job: ClaimedJob) -> Path | None:
    """The newest checkpoint still on disk, on a later attempt; recorded as an event either way."""
    if job.attempts <= 1:
        return None
    checkpoints = jobs.list_checkpoints(session, tenant_id=job.tenant_id, job_id=job.id) or []
    usable = [c for c in checkpoints if _checkpoint_path(settings, c).is_dir()]
    if not usable:
        jobs.record_event(session, job_id=job.id, type="message", message="restarted from the beginning",
                          data={"kind": "restarted", "attempt": job.attempts})
        return None
    last = max(usable, key=lambda c: (c.step, c.id))
    data = {"kind": "resumed", "attempt": job.attempts, "checkpoint": last.id, "step": last.step}
    jobs.record_event(session, job_id=job.id, type="message", message=f"resumed from step {last.step}",
                      data=data)
    return _checkpoint_path(settings, last)


def _checkpoint_path(settings: Settings, checkpoint: Checkpoint) -> Path:
    path = Path(checkpoint.path)
    return path if path.is_absolute() else settings.checkpoint_dir / path


def _end(settings: Settings, job: ClaimedJob, worker_id: str, paths: JobPaths, *, status: str,
         code: str | None = None, message: str = "", param: str | None = None,
         quality_gate: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
         result: dict[str, Any] | None = None) -> str:
    """Finish the job in a final state other than success and remove its partial files; `details`
    join the final event (a rejected job keeps its verdict and report there)."""

    def finish() -> bool:
        with session_scope(settings) as session:
            if not jobs.finish_job(session, job_id=job.id, worker_id=worker_id, status=status,
                                   error_code=code, error_message=message or None, error_param=param,
                                   quality_gate=quality_gate, result=result):
                return False
            jobs.record_event(session, job_id=job.id, type="message", message=message or status,
                              data={"kind": status, "code": code, "param": param, **(details or {})})
            return True

    if not retry_db(finish, what=f"ending {job.id} as {status}"):
        return LOST
    shutil.rmtree(paths.checkpoints, ignore_errors=True)
    log.info("job %s ended %s: %s", job.id, status, message)
    return status
