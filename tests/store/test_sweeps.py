"""store.sweeps: how `advance` moves a sweep on from its children's states, and what it reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from compression.sweep import SweepSpec
from store import catalog, sweeps
from store.blobs import StoredBlob
from store.ids import new_id
from store.models import Job, Sweep, Tenant
from store.tenants import create_tenant

BASE = {"teacher": {"model": "mdl_x"}, "dataset": {"dataset": "ds_x"}, "training": {"max_steps": 8}}
TEACHER = {"rougeLsum": 30.0}


def make_sweep(session: Session, tenant: Tenant, **changes: Any) -> Sweep:
    axes = {"bits": ["8-8-8", "2-2-8"], "layers": ["2-2", "1-1"]}
    spec = SweepSpec.from_dict({"recipe": BASE, "axes": axes, "gate": {"max_drop": 0.1},
                                "budget": {"max_parallel": 2}, **changes})
    sweep, created = sweeps.create_sweep(session, tenant_id=tenant.id, spec=spec)
    assert created
    return sweep


def advance(session: Session, sweep: Sweep, cap: int | None = None) -> list[Job]:
    started = sweeps.advance(session, sweep_id=sweep.id, default_cap=cap)
    return [session.get_one(Job, job_id) for job_id in started]


def finish(session: Session, job: Job, *, size: int, score: float, status: str = "succeeded") -> None:
    """What the worker writes when a child ends (a published model where it succeeded)."""
    verdict = "passed" if score >= 27 else "flagged"
    job.status, job.quality_gate = status, {"verdict": verdict}
    job.result = {"bytes": size, "compression_ratio": 1000 / size, "metrics": {"rougeLsum": score},
                  "teacher_metrics": TEACHER}
    if status == "succeeded":
        blob = StoredBlob(key=f"{job.id}.tar", bytes=size, sha256="0" * 64)
        model = catalog.create_model(session, model_id=new_id("mdl"), tenant_id=job.tenant_id, name="m",
                                     source="compression", architecture="BartForConditionalGeneration",
                                     layers={"encoder": 1, "decoder": 1}, parameters=1, blob=blob,
                                     commit=False)
        job.result_model_id = model.id
    session.commit()


def fail(session: Session, job: Job) -> None:
    job.status, job.error_code = "failed", "internal_error"
    session.commit()


def view(session: Session, sweep: Sweep) -> dict[str, Any]:
    return sweeps.describe(sweep, sweeps.children(session, sweep_id=sweep.id))


def test_a_new_sweep_starts_as_many_children_as_max_parallel(session: Session, tenant: Tenant) -> None:
    sweep = make_sweep(session, tenant)
    first = advance(session, sweep)
    assert [(j.sweep_point, j.sweep_rung, j.status) for j in first] == [(0, 0, "queued"), (1, 0, "queued")]
    assert advance(session, sweep) == []  # no free slot until one ends


def test_a_child_is_the_points_recipe(session: Session, tenant: Tenant) -> None:
    sweep = make_sweep(session, tenant)
    child = advance(session, sweep)[1]
    assert child.recipe["quantization"]["weight_bits"] == 8
    assert child.recipe["student"] == {"encoder_layers": 1, "decoder_layers": 1}
    assert child.recipe["gate"]["max_drop"] == 0.1


def test_the_tenants_cap_on_active_jobs_holds_children_back(session: Session) -> None:
    tenant = create_tenant(session, name=new_id("capped"), max_concurrent_jobs=1)
    assert len(advance(session, make_sweep(session, tenant))) == 1


def test_a_finished_child_frees_its_slot_and_the_last_one_ends_the_sweep(session: Session,
                                                                          tenant: Tenant) -> None:
    sweep = make_sweep(session, tenant)
    a, b = advance(session, sweep)
    finish(session, a, size=400, score=29.0)
    fail(session, b)  # a failed child does not fail the sweep
    c, d = advance(session, sweep)
    finish(session, c, size=100, score=28.0)
    finish(session, d, size=50, score=20.0)
    assert advance(session, sweep) == []
    session.refresh(sweep)
    assert sweep.status == "succeeded" and sweep.finished_at is not None
    report = view(session, sweep)
    assert report["progress"]["succeeded"] == 3 and report["progress"]["failed"] == 1
    assert report["front"] == [3, 2, 0]
    assert report["recommended"]["index"] == 2  # the smallest that passed: point 3 was flagged
    assert report["steps"] == {"planned": 32, "used": 32, "grid": 32, "saved": 0}


def test_the_first_measured_child_gives_the_sweep_its_teacher_scores(session: Session,
                                                                      tenant: Tenant) -> None:
    sweep = make_sweep(session, tenant)
    a, b = advance(session, sweep)
    assert sweeps.teacher_metrics_for(session, job_id=b.id) is None
    finish(session, a, size=400, score=29.0)
    advance(session, sweep)
    assert sweeps.teacher_metrics_for(session, job_id=b.id) == TEACHER


def test_successive_halving_continues_the_best_and_stops_the_dominated(session: Session,
                                                                        tenant: Tenant) -> None:
    sweep = make_sweep(session, tenant, strategy="successive_halving", budget={"max_parallel": 4})
    rung0 = advance(session, sweep)
    assert [j.recipe["training"]["max_steps"] for j in rung0] == [2, 2, 2, 2]
    # point 1 is larger and worse than point 2: dominated, it stops although it outscores point 3
    for job, (size, score) in zip(rung0, [(400, 29.0), (300, 21.0), (100, 28.0), (50, 20.0)], strict=True):
        finish(session, job, size=size, score=score)
    rung1 = advance(session, sweep)
    assert [(j.sweep_point, j.sweep_rung, j.recipe["training"]["max_steps"]) for j in rung1] == [(0, 1, 4),
                                                                                               (2, 1, 4)]
    states = {p["index"]: p["status"] for p in view(session, sweep)["points"]}
    assert states == {0: "queued", 1: "stopped", 2: "queued", 3: "stopped"}


def test_cancelling_a_sweep_cancels_its_queued_children_and_starts_no_more(session: Session,
                                                                           tenant: Tenant) -> None:
    sweep = make_sweep(session, tenant)
    advance(session, sweep)
    sweeps.cancel_sweep(session, tenant_id=tenant.id, sweep_id=sweep.id)
    assert {k.status for k in sweeps.children(session, sweep_id=sweep.id)} == {"cancelled"}
    assert advance(session, sweep) == []
    assert view(session, sweep)["progress"]["pending"] == 2
