"""Sweeps and their children: create, read, cancel, and `advance`, the one step that moves a sweep on.

`advance` reads the sweep's children and decides from its plan (compression.sweep) which points
start next (within the sweep's max_parallel and the tenant's cap on active jobs), when a rung is
over and which points go on to the next, and when the sweep is done. It is idempotent and safe
from many processes at once: the sweep's row lock (PostgreSQL) serializes it, and the unique
(sweep, point, rung) on jobs refuses a second child for one point at one rung (SQLite, whose
writers are serialized by the database, meets that instead of a lock). Workers call it when a
child ends and on every reconciler pass; the API when the sweep is made. The caller sends the ids
it returns once it has committed.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal, get_args

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from compression.sweep import (
    Outcome,
    Point,
    SweepSpec,
    child_recipe,
    front,
    grid_steps,
    planned_steps,
    point_steps,
    points,
    rung_sizes,
    rung_steps,
    survivors,
)
from store import jobs
from store.db import add_once
from store.ids import new_id
from store.models import FINISHED_STATUSES, Job, Sweep, Tenant, utcnow

ACTIVE = ("queued", "running")
SCORED = ("succeeded", "rejected")  # the children whose student was measured


def create_sweep(session: Session, *, tenant_id: str, spec: SweepSpec,
                 idempotency_key: str | None = None) -> tuple[Sweep, bool]:
    """(sweep, created); a replayed idempotency key returns the tenant's first sweep."""
    sweep = Sweep(id=new_id("swp"), tenant_id=tenant_id, status="running", spec=spec.to_dict(),
                  idempotency_key=idempotency_key, rung=0)
    return add_once(session, sweep, lambda: None if idempotency_key is None else get_sweep_by_idempotency_key(
        session, tenant_id=tenant_id, idempotency_key=idempotency_key))


def get_sweep_by_idempotency_key(session: Session, *, tenant_id: str, idempotency_key: str) -> Sweep | None:
    query = select(Sweep).where(Sweep.tenant_id == tenant_id, Sweep.idempotency_key == idempotency_key)
    return session.scalar(query)


def get_sweep(session: Session, *, tenant_id: str | None, sweep_id: str) -> Sweep | None:
    query = select(Sweep).where(Sweep.id == sweep_id).execution_options(populate_existing=True)
    if tenant_id is not None:
        query = query.where(Sweep.tenant_id == tenant_id)
    return session.scalar(query)


def list_sweeps(session: Session, *, tenant_id: str, after: str | None = None,
                limit: int = 20) -> tuple[list[Sweep], bool]:
    """(sweeps, has_more), newest first; `after` is the last id of the previous page."""
    query = select(Sweep).where(Sweep.tenant_id == tenant_id)
    if after:
        query = query.where(Sweep.id < after)
    rows = list(session.scalars(query.order_by(Sweep.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def children(session: Session, *, sweep_id: str) -> list[Job]:
    """The sweep's child jobs, oldest first."""
    query = select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def running_sweep_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Sweep.id).where(Sweep.status == "running").order_by(Sweep.id)))


def teacher_metrics_for(session: Session, *, job_id: str) -> dict[str, float] | None:
    """The teacher's scores a sweep child can reuse: its sweep's, once one child has measured them."""
    sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == job_id))
    if sweep_id is None:
        return None
    return session.scalar(select(Sweep.teacher_metrics).where(Sweep.id == sweep_id))


def sweep_of(session: Session, *, job_id: str) -> str | None:
    return session.scalar(select(Job.sweep_id).where(Job.id == job_id))


def cancel_sweep(session: Session, *, tenant_id: str, sweep_id: str) -> Sweep | None:
    """Cancel a running sweep and every child not yet finished; a finished sweep raises
    jobs.NotCancellable. Points not started never will be."""
    sweep = _locked(session, sweep_id, tenant_id)
    if sweep is None:
        return None
    if sweep.status != "running":
        session.commit()
        raise jobs.NotCancellable(sweep.status)
    sweep.status, sweep.finished_at = "cancelled", utcnow()
    session.commit()
    for child in children(session, sweep_id=sweep_id):
        if child.status in ACTIVE:
            with contextlib.suppress(jobs.NotCancellable):  # it finished on its own meanwhile
                jobs.request_cancel(session, tenant_id=tenant_id, job_id=child.id)
    return get_sweep(session, tenant_id=tenant_id, sweep_id=sweep_id)


def _locked(session: Session, sweep_id: str, tenant_id: str | None = None) -> Sweep | None:
    query = select(Sweep).where(Sweep.id == sweep_id).execution_options(populate_existing=True)
    if tenant_id is not None:
        query = query.where(Sweep.tenant_id == tenant_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalar(query)


def advance(session: Session, *, sweep_id: str, default_cap: int | None) -> list[str]:
    """Move the sweep on as far as its children allow; the ids of the children it queued."""
    sweep = _locked(session, sweep_id)
    if sweep is None or sweep.status != "running":
        session.commit()
        return []
    spec = SweepSpec.from_dict(sweep.spec)
    kids = children(session, sweep_id=sweep_id)
    if sweep.teacher_metrics is None:
        sweep.teacher_metrics = next((k.result["teacher_metrics"] for k in kids if k.result), None)
    queued: list[Job] = []
    while not queued:
        at_rung = {k.sweep_point: k for k in kids if k.sweep_rung == sweep.rung}
        missing = [p for p in live_points(spec, kids, sweep.rung) if p not in at_rung]
        if missing:
            slots = _free_slots(session, sweep, spec, kids, default_cap)
            queued = _start(session, sweep, spec, missing, slots)
            break
        if any(k.status not in FINISHED_STATUSES for k in at_rung.values()):
            break
        if sweep.rung + 1 < len(rung_steps(spec)):
            sweep.rung += 1
        else:
            sweep.status, sweep.finished_at = "succeeded", utcnow()
            break
    try:
        session.commit()
    except IntegrityError:  # another process started these points first: its children stand
        session.rollback()
        return []
    return [job.id for job in queued]


def live_points(spec: SweepSpec, kids: list[Job], rung: int) -> list[int]:
    """The points that train at `rung`: all at the first; then the previous rung's survivors."""
    if rung == 0:
        return [p.index for p in points(spec)]
    previous = [k for k in kids if k.sweep_rung == rung - 1]
    return survivors(outcomes(spec, previous), rung_sizes(spec)[rung])


def outcomes(spec: SweepSpec, kids: list[Job]) -> list[Outcome]:
    """Bytes and gate metric of each measured child (the latest rung's, where a point has several)."""
    metric = str(spec.gate.metric)
    latest: dict[int, Job] = {}
    for kid in sorted(kids, key=lambda k: k.sweep_rung or 0):
        if kid.status in SCORED and kid.result and kid.sweep_point is not None:
            latest[kid.sweep_point] = kid
    return [Outcome(point, int(k.result["bytes"]), float(k.result["metrics"][metric]))
            for point, k in latest.items() if k.result]


def _free_slots(session: Session, sweep: Sweep, spec: SweepSpec, kids: list[Job],
                default_cap: int | None) -> int:
    """Children that may start now: within the sweep's max_parallel and the tenant's active-job cap."""
    free = spec.budget.max_parallel - sum(k.status in ACTIVE for k in kids)
    cap = session.scalar(select(Tenant.max_concurrent_jobs).where(Tenant.id == sweep.tenant_id))
    cap = default_cap if cap is None else cap
    if cap is not None:
        active = session.scalar(select(func.count()).select_from(Job).where(
            Job.tenant_id == sweep.tenant_id, Job.status.in_(ACTIVE)))
        free = min(free, cap - int(active or 0))
    return max(0, free)


def _start(session: Session, sweep: Sweep, spec: SweepSpec, missing: list[int], slots: int) -> list[Job]:
    """Queue the first `slots` missing points at the sweep's rung (sent by the caller)."""
    steps = rung_steps(spec)[sweep.rung]
    by_index = {p.index: p for p in points(spec)}
    now = utcnow()
    started = [Job(id=new_id("job"), tenant_id=sweep.tenant_id, status="queued", metrics={},
                   recipe=child_recipe(spec, by_index[index], steps).to_dict(), sweep_id=sweep.id,
                   sweep_point=index, sweep_rung=sweep.rung, enqueued_at=now)
               for index in missing[:slots]]
    session.add_all(started)
    return started


def describe(sweep: Sweep, kids: list[Job]) -> dict[str, Any]:
    """The sweep as users read it: progress, every point with its latest child, the Pareto front of
    the measured points, the recommendation (or why there is none), and the steps spent."""
    spec = SweepSpec.from_dict(sweep.spec)
    measured = {o.point: o for o in outcomes(spec, kids)}
    on_front = {o.point for o in front(list(measured.values()))}
    live = set(live_points(spec, kids, sweep.rung)) if sweep.status == "running" else set()
    rows = [_point_row(p, kids, measured, on_front, live, sweep.rung) for p in points(spec)]
    by_index = {p.index: p for p in points(spec)}
    used = sum(point_steps(by_index[k.sweep_point], int(k.recipe["training"]["max_steps"])) for k in kids
               if k.sweep_point is not None and k.status in FINISHED_STATUSES)
    progress = {state: sum(r["status"] == state for r in rows) for state in POINT_STATES}
    return {
        "rung": sweep.rung, "rungs": [{"rung": i, "steps": steps, "points": size} for i, (steps, size)
                                      in enumerate(zip(rung_steps(spec), rung_sizes(spec), strict=True))],
        "progress": progress, "points": rows,
        "front": sorted(on_front, key=lambda i: (measured[i].bytes, i)),
        "steps": {"planned": planned_steps(spec), "used": used, "grid": grid_steps(spec),
                  "saved": grid_steps(spec) - used if sweep.status == "succeeded" else None},
        **_recommendation(rows, sweep.status),
    }


# pending: not started; stopped: dropped by successive halving; the rest are its latest child's status
PointState = Literal["pending", "queued", "running", "succeeded", "rejected", "failed", "user_error",
                     "cancelled", "stopped"]
POINT_STATES: tuple[str, ...] = get_args(PointState)


def _point_row(point: Point, kids: list[Job], measured: dict[int, Outcome], on_front: set[int],
               live: set[int], rung: int) -> dict[str, Any]:
    mine = sorted((k for k in kids if k.sweep_point == point.index), key=lambda k: k.sweep_rung or 0)
    last = mine[-1] if mine else None
    status = _point_status(point, last, kids, live, rung)
    result = (last.result or {}) if last else {}
    outcome = measured.get(point.index)
    return {**point.to_dict(), "status": status, "rung": last.sweep_rung if last else None,
            "steps": int(last.recipe["training"]["max_steps"]) if last else None,
            "job_id": last.id if last else None, "model_id": last.result_model_id if last else None,
            "bytes": outcome.bytes if outcome else None, "compression_ratio": result.get("compression_ratio"),
            "metric": outcome.metric if outcome else None,
            "gate": (last.quality_gate or {}).get("verdict") if last else None,
            "on_front": point.index in on_front, "error_code": last.error_code if last else None}


def _point_status(point: Point, last: Job | None, kids: list[Job], live: set[int], rung: int) -> str:
    if last is None or (point.index in live and (last.sweep_rung or 0) < rung):
        return "pending"  # not started, or waiting for a slot at the next rung
    if last.status in SCORED and any((k.sweep_rung or 0) > (last.sweep_rung or 0) for k in kids):
        return "stopped"  # a later rung started without it
    return last.status


def _recommendation(rows: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """The smallest point whose student passed the gate and was published; else the reason."""
    passing = [r for r in rows if r["gate"] == "passed" and r["model_id"] and r["bytes"] is not None]
    if passing:
        best = min(passing, key=lambda r: (r["bytes"], r["index"]))
        return {"recommended": {key: best[key] for key in ("index", "model_id", "bytes", "metric")},
                "reason": None}
    measured = [r for r in rows if r["metric"] is not None]
    if status == "running":
        reason = "no point has passed the gate yet"
    elif not measured:
        reason = "no point was measured: every child failed or was cancelled"
    else:
        best = max(measured, key=lambda r: r["metric"])
        reason = (f"no point passed the gate; the best, point {best['index']} ({best['method']} "
                  f"{best['bits']} {best['layers']}), scored {best['metric']:.2f}")
    return {"recommended": None, "reason": reason}
