"""Sweeps: one base recipe over bit widths, layer plans and methods, fanned out as child jobs;
list, read (points, Pareto front, recommendation) and cancel."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from sqlalchemy.orm import Session

from api.deps import SessionsDep, SettingsDep, TenantDep
from api.recipes import check_job_recipe
from api.schemas import ERROR_RESPONSES, Page, SweepObject, cursor, sweep_object
from api.submissions import IdempotencyKey, RecipeRoute, check_active_limit, check_idempotency_key
from compression.errors import RecipeError
from compression.sweep import SweepSpec
from store import catalog, jobs, sweeps
from store.models import Sweep
from store.settings import Settings
from web.errors import ApiError, not_found

log = logging.getLogger("dqbart.api")

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], responses=ERROR_RESPONSES, route_class=RecipeRoute)

SWEEP_EXAMPLE = {
    "recipe": {
        "teacher": {"model": "mdl_..."},
        "dataset": {"dataset": "ds_...", "source_field": "document", "target_field": "summary"},
        "training": {"max_steps": 2000, "batch_size": 16, "lr": 3.0e-4},
    },
    "axes": {"bits": ["8-8-8", "4-4-8", "2-2-8"], "layers": ["6-6", "6-3", "3-1"]},
    "gate": {"max_drop": 0.02},
    "objective": "smallest_passing",
    "strategy": "successive_halving",
    "budget": {"max_parallel": 4},
}


def _check_layers(session: Session, tenant_id: str, spec: SweepSpec) -> None:
    """Every layer plan of the axes must fit the teacher (check_job_recipe checked the base)."""
    teacher = catalog.get_model(session, tenant_id=tenant_id, model_id=str(spec.recipe.teacher.model))
    assert teacher is not None  # check_job_recipe has refused a missing teacher
    depth = (teacher.layers["encoder"], teacher.layers["decoder"])
    for plan in spec.axes.layers:
        encoder, decoder = (int(n) for n in plan.split("-"))
        if encoder > depth[0] or decoder > depth[1]:
            raise RecipeError("axes.layers", f"{plan} does not fit a teacher of {depth[0]}-{depth[1]} layers")


def _send(request: Request, job_ids: list[str]) -> None:
    for job_id in job_ids:
        try:
            request.app.state.queue.send(job_id)
        except Exception:  # the rows are the truth: the workers' reconciler re-sends unclaimed jobs
            log.exception("could not enqueue %s; it stays queued until it is sent again", job_id)


def _object(session: Session, sweep: Sweep) -> SweepObject:
    return sweep_object(sweep, sweeps.children(session, sweep_id=sweep.id))


def _start(session: Session, settings: Settings, sweep: Sweep) -> list[str]:
    return sweeps.advance(session, sweep_id=sweep.id, default_cap=settings.MAX_CONCURRENT_JOBS)


@router.post("", status_code=201, response_model=SweepObject,
             responses={409: ERROR_RESPONSES[400], 429: ERROR_RESPONSES[400]})
def create_sweep(body: Annotated[SweepSpec, Body(examples=[SWEEP_EXAMPLE])], request: Request,
                 response: Response, tenant: TenantDep, sessions: SessionsDep, settings: SettingsDep,
                 idempotency_key: IdempotencyKey = None) -> SweepObject:
    """One child job per point (a normal job, with its own events and artifact), at most
    `budget.max_parallel` at once and within the tenant's cap on active jobs; 201 (a replayed
    Idempotency-Key answers 200 with the first sweep)."""
    check_idempotency_key(idempotency_key)
    with sessions() as session:
        check_job_recipe(session, tenant_id=tenant.id, recipe=body.recipe)
        _check_layers(session, tenant.id, body)
        replay = idempotency_key is not None and sweeps.get_sweep_by_idempotency_key(
            session, tenant_id=tenant.id, idempotency_key=idempotency_key) is not None
        check_active_limit(session, settings, tenant, replay=replay)
        sweep, created = sweeps.create_sweep(session, tenant_id=tenant.id, spec=body,
                                             idempotency_key=idempotency_key)
        if not created:
            if sweep.spec != body.to_dict():
                message = "this Idempotency-Key was already used for a different sweep"
                raise ApiError(409, "idempotency_key_reused", message, "Idempotency-Key")
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
            return _object(session, sweep)
        started = _start(session, settings, sweep)
        _send(request, started)
        return _object(session, sweep)


@router.get("", response_model=Page[SweepObject])
def list_sweeps(tenant: TenantDep, sessions: SessionsDep, after: Annotated[str | None, cursor("swp")] = None,
                limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Page[SweepObject]:
    with sessions() as session:
        rows, has_more = sweeps.list_sweeps(session, tenant_id=tenant.id, after=after, limit=limit)
        return Page[SweepObject](data=[_object(session, s) for s in rows], has_more=has_more)


@router.get("/{sweep_id}", response_model=SweepObject)
def get_sweep(sweep_id: str, tenant: TenantDep, sessions: SessionsDep) -> SweepObject:
    with sessions() as session:
        sweep = sweeps.get_sweep(session, tenant_id=tenant.id, sweep_id=sweep_id)
        if sweep is None:
            raise not_found("sweep", sweep_id)
        return _object(session, sweep)


@router.post("/{sweep_id}/cancel", response_model=SweepObject, responses={409: ERROR_RESPONSES[400]})
def cancel_sweep(sweep_id: str, tenant: TenantDep, sessions: SessionsDep) -> SweepObject:
    """Cancels the sweep and its children still queued or running; points not started never start.
    A finished sweep answers 409 `sweep_not_cancellable`."""
    with sessions() as session:
        try:
            sweep = sweeps.cancel_sweep(session, tenant_id=tenant.id, sweep_id=sweep_id)
        except jobs.NotCancellable as exc:
            raise ApiError(409, "sweep_not_cancellable", f"sweep {sweep_id} has already finished: its "
                                                         f"status is {exc.status!r}", "id") from None
        if sweep is None:
            raise not_found("sweep", sweep_id)
        return _object(session, sweep)
