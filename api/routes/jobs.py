"""Compression jobs: submit a recipe, list, read, cancel, follow events, metrics and checkpoints."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from sqlalchemy.orm import Session

from api.deps import SessionsDep, SettingsDep, TenantDep
from api.recipes import check_job_recipe
from api.schemas import (
    ERROR_RESPONSES,
    CheckpointObject,
    EventObject,
    JobObject,
    MetricPoint,
    Page,
    checkpoint_object,
    cursor,
    event_object,
    job_object,
    metric_point,
)
from api.submissions import IdempotencyKey, RecipeRoute, check_active_limit, check_idempotency_key
from compression.recipe import Recipe
from store import jobs
from store.models import INT_MAX, Job, utcnow
from web.errors import ApiError, not_found

log = logging.getLogger("dqbart.api")

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES, route_class=RecipeRoute)

RECIPE_EXAMPLE = {
    "task": "summarization",
    "teacher": {"model": "mdl_..."},
    "dataset": {"dataset": "ds_...", "source_field": "document", "target_field": "summary"},
    "student": {"encoder_layers": 6, "decoder_layers": 3},
    "quantization": {"weight_bits": 2, "embedding_bits": 2, "activation_bits": 8},
    "training": {"epochs": 3, "batch_size": 16, "lr": 3.0e-5},
}


def _replay(job: Job, recipe: dict[str, Any], response: Response) -> JobObject:
    if job.recipe != recipe:
        message = "this Idempotency-Key was already used for a different recipe"
        raise ApiError(409, "idempotency_key_reused", message, "Idempotency-Key")
    response.status_code = 200
    response.headers["Idempotent-Replayed"] = "true"
    return job_object(job, utcnow())


def _enqueue(request: Request, session: Session, job_id: str) -> None:
    # Mark first and commit, then send: a write on the row after the send could hold its lock
    # just when the worker claims it (FOR UPDATE SKIP LOCKED on PostgreSQL), and the claim
    # would skip the job.
    jobs.mark_enqueued(session, job_id=job_id)
    try:
        request.app.state.queue.send(job_id)
    except Exception:  # the row is the truth: the workers' reconciler re-sends unclaimed jobs
        log.exception("could not enqueue %s; it stays queued until it is sent again", job_id)


@router.post("", status_code=201, response_model=JobObject,
             responses={409: ERROR_RESPONSES[400], 429: ERROR_RESPONSES[400]})
def create_job(body: Annotated[Recipe, Body(examples=[RECIPE_EXAMPLE])], request: Request,
               response: Response, tenant: TenantDep, sessions: SessionsDep, settings: SettingsDep,
               idempotency_key: IdempotencyKey = None) -> JobObject:
    """The recipe (DESIGN.md §3) with `teacher: {"model": ID}` and `dataset: {"dataset": ID,
    "validation": ID}` from your uploads: checked against them, stored, then queued (201; a
    replayed Idempotency-Key answers 200 with the first job)."""
    check_idempotency_key(idempotency_key)
    with sessions() as session:
        recipe = check_job_recipe(session, tenant_id=tenant.id, recipe=body).to_dict()
        replay = idempotency_key is not None and jobs.get_job_by_idempotency_key(
            session, tenant_id=tenant.id, idempotency_key=idempotency_key) is not None
        check_active_limit(session, settings, tenant, replay=replay)
        job, created = jobs.create_job(session, tenant_id=tenant.id, recipe=recipe,
                                       idempotency_key=idempotency_key)
        if not created:
            return _replay(job, recipe, response)
        _enqueue(request, session, job.id)
    return job_object(job, utcnow())


@router.get("", response_model=Page[JobObject])
def list_jobs(tenant: TenantDep, sessions: SessionsDep, after: Annotated[str | None, cursor("job")] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Page[JobObject]:
    with sessions() as session:
        rows, has_more = jobs.list_jobs(session, tenant_id=tenant.id, after=after, limit=limit)
    now = utcnow()
    return Page[JobObject](data=[job_object(j, now) for j in rows], has_more=has_more)


@router.get("/{job_id}", response_model=JobObject)
def get_job(job_id: str, tenant: TenantDep, sessions: SessionsDep) -> JobObject:
    with sessions() as session:
        job = jobs.get_job(session, tenant_id=tenant.id, job_id=job_id)
    if job is None:
        raise not_found("job", job_id)
    return job_object(job, utcnow())


@router.post("/{job_id}/cancel", response_model=JobObject, responses={409: ERROR_RESPONSES[400]})
def cancel_job(job_id: str, tenant: TenantDep, sessions: SessionsDep) -> JobObject:
    """A queued job is cancelled at once; a running one stops within a few seconds; a finished one
    (cancelled included) answers 409 `job_not_cancellable` with its status."""
    try:
        with sessions() as session:
            job = jobs.request_cancel(session, tenant_id=tenant.id, job_id=job_id)
    except jobs.NotCancellable as exc:
        raise ApiError(409, "job_not_cancellable", f"job {job_id} has already finished: its status is "
                                                   f"{exc.status!r}", "id") from None
    if job is None:
        raise not_found("job", job_id)
    return job_object(job, utcnow())


@router.get("/{job_id}/events", response_model=Page[EventObject])
def list_events(job_id: str, tenant: TenantDep, sessions: SessionsDep,
                after: Annotated[int | None, Query(ge=0, le=INT_MAX)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Page[EventObject]:
    """Oldest first; pass the last event id as `after` to read on."""
    with sessions() as session:
        page = jobs.list_events(session, tenant_id=tenant.id, job_id=job_id, after=after, limit=limit)
    if page is None:
        raise not_found("job", job_id)
    rows, has_more = page
    return Page[EventObject](data=[event_object(e) for e in rows], has_more=has_more)


@router.get("/{job_id}/metrics", response_model=Page[MetricPoint])
def list_metrics(job_id: str, tenant: TenantDep, sessions: SessionsDep,
                 name: str | None = None) -> Page[MetricPoint]:
    """Every logged value (loss components, eval metrics) by name, then step."""
    with sessions() as session:
        rows = jobs.list_metrics(session, tenant_id=tenant.id, job_id=job_id, name=name)
    if rows is None:
        raise not_found("job", job_id)
    return Page[MetricPoint](data=[metric_point(m) for m in rows], has_more=False)


@router.get("/{job_id}/checkpoints", response_model=Page[CheckpointObject])
def list_checkpoints(job_id: str, tenant: TenantDep, sessions: SessionsDep) -> Page[CheckpointObject]:
    with sessions() as session:
        rows = jobs.list_checkpoints(session, tenant_id=tenant.id, job_id=job_id)
    if rows is None:
        raise not_found("job", job_id)
    return Page[CheckpointObject](data=[checkpoint_object(c) for c in rows], has_more=False)
