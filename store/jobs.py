"""Jobs and what they record while running: events, metrics, checkpoints.

Functions take a Session and keyword-only arguments, and commit their own writes (a claim or a
heartbeat must be visible to other processes at once). Reads scoped to a tenant return None for
another tenant's job; `tenant_id=None` is for the worker and the reconciler, which act for all.

The claim is the one guard against running a job twice: a single atomic statement moves a job
from queued (or running with a stale heartbeat, i.e. a dead worker) to running under a new
worker id and counts the attempt. Every later write of the worker is fenced by that worker id,
so a worker that lost its job to another stops instead of writing over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Update, and_, func, or_, select, update
from sqlalchemy.orm import Session

from store.db import add_once
from store.ids import new_id
from store.models import FINISHED_STATUSES, TERMINAL_STAGE, Checkpoint, Job, JobEvent, JobMetric, utcnow


@dataclass(frozen=True)
class Lease:
    """What a heartbeat learns: whether this worker still holds the job, and whether to stop."""

    owned: bool
    cancel_requested: bool

    @property
    def should_stop(self) -> bool:
        return self.cancel_requested or not self.owned


def _changed(session: Session, statement: Update) -> int:
    """Rows an UPDATE changed (it runs on a cursor, whose result counts them)."""
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return result.rowcount


def create_job(session: Session, *, tenant_id: str, recipe: dict[str, Any],
               idempotency_key: str | None = None) -> tuple[Job, bool]:
    """(job, created). A replayed idempotency key returns the tenant's first job with created=False."""
    job = Job(id=new_id("job"), tenant_id=tenant_id, status="queued", recipe=recipe,
              idempotency_key=idempotency_key, metrics={})
    return add_once(session, job, lambda: None if idempotency_key is None else _by_idempotency_key(
        session, tenant_id=tenant_id, idempotency_key=idempotency_key))


def get_job_by_idempotency_key(session: Session, *, tenant_id: str, idempotency_key: str) -> Job | None:
    """The tenant's job created with this key, if any (the API tells replays from new jobs)."""
    return _by_idempotency_key(session, tenant_id=tenant_id, idempotency_key=idempotency_key)


def _by_idempotency_key(session: Session, *, tenant_id: str, idempotency_key: str) -> Job | None:
    query = select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == idempotency_key)
    return session.scalar(query)


def get_job(session: Session, *, tenant_id: str | None, job_id: str) -> Job | None:
    query = select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    if tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    return session.scalar(query)


def list_jobs(session: Session, *, tenant_id: str, after: str | None = None,
              limit: int = 20) -> tuple[list[Job], bool]:
    """(jobs, has_more), newest first; `after` is the last id of the previous page."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if after:
        query = query.where(Job.id < after)
    rows = list(session.scalars(query.order_by(Job.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def count_active_jobs(session: Session, *, tenant_id: str) -> int:
    """Queued and running jobs of a tenant (the per-tenant concurrency limit counts these)."""
    active = select(func.count()).select_from(Job).where(
        Job.tenant_id == tenant_id, Job.status.in_(("queued", "running"))
    )
    return int(session.scalar(active) or 0)


class NotCancellable(Exception):
    """The job had already finished (`status`) when its cancel was asked."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the job has already finished ({status})")
        self.status = status


def request_cancel(session: Session, *, tenant_id: str, job_id: str) -> Job | None:
    """A queued job is cancelled at once; a running one is flagged and its worker stops within a
    heartbeat. A finished job raises NotCancellable and stays as it was."""
    now = utcnow()
    cancelled_now = _changed(session,
        update(Job).where(Job.id == job_id, Job.tenant_id == tenant_id, Job.status == "queued")
        .values(status="cancelled", cancel_requested=True, finished_at=now, stage=TERMINAL_STAGE)
    )
    flagged = cancelled_now or _changed(session,
        update(Job).where(Job.id == job_id, Job.tenant_id == tenant_id, Job.status == "running")
        .values(cancel_requested=True)
    )
    session.commit()
    job = get_job(session, tenant_id=tenant_id, job_id=job_id)
    if job is not None and not flagged:
        raise NotCancellable(job.status)
    if job is not None and cancelled_now:
        record_event(session, job_id=job_id, type="message", message="cancelled before it started",
                     data={"kind": "cancelled"})
    return job


def _running_and_stale(now: datetime, stale_after: float) -> ColumnElement[bool]:
    cutoff = now - timedelta(seconds=stale_after)
    return and_(Job.status == "running", or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))


def _claimable(now: datetime, stale_after: float) -> ColumnElement[bool]:
    return or_(Job.status == "queued", _running_and_stale(now, stale_after))


def claim_job(session: Session, *, job_id: str, worker_id: str, stale_after: float,
              now: datetime | None = None) -> Job | None:
    """Take the job for this worker, or None if it is finished or held by a live worker."""
    now = now or utcnow()
    claimable = _claimable(now, stale_after)
    if session.get_bind().dialect.name == "postgresql":
        # Lock the row, skipping it if another worker is claiming it right now.
        locked = session.scalar(
            select(Job.id).where(Job.id == job_id, claimable).with_for_update(skip_locked=True)
        )
        if locked is None:
            session.rollback()
            return None
    claimed = _changed(session,
        update(Job).where(Job.id == job_id, claimable).values(
            status="running", worker_id=worker_id, attempts=Job.attempts + 1, heartbeat_at=now,
            started_at=func.coalesce(Job.started_at, now), finished_at=None,
        )
    )
    session.commit()
    return get_job(session, tenant_id=None, job_id=job_id) if claimed == 1 else None


def heartbeat(session: Session, *, job_id: str, worker_id: str, now: datetime | None = None) -> Lease:
    """Refresh the heartbeat of a job this worker holds, and read its cancel flag."""
    held = and_(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running")
    owned = _changed(session, update(Job).where(held).values(heartbeat_at=now or utcnow())) == 1
    session.commit()
    cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    session.commit()
    return Lease(owned=owned, cancel_requested=cancel)


def set_progress(session: Session, *, job_id: str, worker_id: str, step: int, total: int,
                 stage: str | None = None) -> None:
    values: dict[str, Any] = {"progress_step": step, "progress_total": total}
    if stage is not None:
        values["stage"] = stage
    session.execute(update(Job).where(Job.id == job_id, Job.worker_id == worker_id).values(**values))
    session.commit()


def record_event(session: Session, *, job_id: str, type: str, message: str = "", stage: str | None = None,
                 data: dict[str, Any] | None = None) -> JobEvent:
    """Append an event (message | metrics | stage); a stage event also sets the job's stage."""
    event = JobEvent(job_id=job_id, type=type, message=message, stage=stage, data=data or {})
    session.add(event)
    if type == "stage" and stage is not None:
        session.execute(update(Job).where(Job.id == job_id).values(stage=stage))
    session.commit()
    return event


def record_metrics(session: Session, *, job_id: str, step: int, metrics: dict[str, float]) -> None:
    """Append each value to the time series and keep the latest values on the job."""
    now = utcnow()
    session.add_all(JobMetric(job_id=job_id, step=step, name=name, value=float(value), created_at=now)
                    for name, value in metrics.items())
    job = session.get(Job, job_id)
    if job is not None:
        job.metrics = {**(job.metrics or {}), **{k: float(v) for k, v in metrics.items()}}
    session.commit()


def record_checkpoint(session: Session, *, job_id: str, step: int, path: str, bytes: int) -> Checkpoint:
    """A resumable checkpoint, which becomes the one a later attempt resumes from."""
    checkpoint = Checkpoint(id=new_id("ckpt"), job_id=job_id, step=step, path=path, bytes=bytes)
    session.add(checkpoint)
    session.flush()
    session.execute(update(Job).where(Job.id == job_id).values(last_checkpoint_id=checkpoint.id))
    session.commit()
    return checkpoint


def get_checkpoint(session: Session, *, checkpoint_id: str) -> Checkpoint | None:
    return session.get(Checkpoint, checkpoint_id)


def list_checkpoints(session: Session, *, tenant_id: str, job_id: str) -> list[Checkpoint] | None:
    """A job's checkpoints, oldest first; None when the job is not the tenant's."""
    if get_job(session, tenant_id=tenant_id, job_id=job_id) is None:
        return None
    query = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step, Checkpoint.id)
    return list(session.scalars(query))


def list_events(session: Session, *, tenant_id: str, job_id: str, after: int | None = None,
                limit: int = 100) -> tuple[list[JobEvent], bool] | None:
    """(events, has_more) in the order they happened, after the event id `after`; None when the job
    is not the tenant's."""
    if get_job(session, tenant_id=tenant_id, job_id=job_id) is None:
        return None
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if after is not None:
        query = query.where(JobEvent.id > after)
    rows = list(session.scalars(query.order_by(JobEvent.id).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def list_metrics(session: Session, *, tenant_id: str, job_id: str,
                 name: str | None = None) -> list[JobMetric] | None:
    """A job's metric time series, by name then step; None when the job is not the tenant's."""
    if get_job(session, tenant_id=tenant_id, job_id=job_id) is None:
        return None
    query = select(JobMetric).where(JobMetric.job_id == job_id)
    if name is not None:
        query = query.where(JobMetric.name == name)
    return list(session.scalars(query.order_by(JobMetric.name, JobMetric.step, JobMetric.id)))


def finish_job(session: Session, *, job_id: str, worker_id: str, status: str, error_code: str | None = None,
               error_message: str | None = None, error_param: str | None = None,
               result_model_id: str | None = None, quality_gate: dict[str, Any] | None = None,
               result: dict[str, Any] | None = None, commit: bool = True) -> bool:
    """End a job this worker holds; False (and nothing written) if it no longer holds it. `result`:
    what the student measured, where a student was made (succeeded or rejected)."""
    if status not in FINISHED_STATUSES:
        raise ValueError(f"status must be one of {FINISHED_STATUSES}, got {status!r}")
    finished = _changed(session,
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running").values(
            status=status, stage=TERMINAL_STAGE, finished_at=utcnow(), error_code=error_code,
            error_message=error_message,
            error_param=error_param, result_model_id=result_model_id, quality_gate=quality_gate,
            result=result,
        )
    ) == 1
    if commit:
        session.commit()
    return finished


def stale_jobs(session: Session, *, stale_after: float, now: datetime | None = None) -> list[Job]:
    """Running jobs whose worker has not sent a heartbeat for `stale_after` seconds."""
    query = select(Job).where(_running_and_stale(now or utcnow(), stale_after))
    return list(session.scalars(query.order_by(Job.id)))


def unclaimed_jobs(session: Session, *, older_than: float, now: datetime | None = None) -> list[Job]:
    """Queued jobs whose last task message went out more than `older_than` seconds ago (or never):
    the broker may have lost it."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than)
    sent = func.coalesce(Job.enqueued_at, Job.created_at)
    return list(session.scalars(select(Job).where(Job.status == "queued", sent < cutoff).order_by(Job.id)))


def requeue_stale_job(session: Session, *, job_id: str, stale_after: float,
                      now: datetime | None = None) -> bool:
    """Put a running job with a stale heartbeat back in the queue (its worker is presumed dead)."""
    stale = and_(Job.id == job_id, _running_and_stale(now or utcnow(), stale_after))
    requeued = _changed(session, update(Job).where(stale).values(status="queued", worker_id=None)) == 1
    session.commit()
    if requeued:
        record_event(session, job_id=job_id, type="message", message="worker lost; job queued again",
                     data={"kind": "requeued"})
    return requeued


def mark_enqueued(session: Session, *, job_id: str, now: datetime | None = None) -> None:
    """Note that a task message for the job was just sent."""
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=now or utcnow()))
    session.commit()
