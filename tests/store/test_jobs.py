"""store.jobs on SQLite and PostgreSQL: idempotent creation, tenant scoping, the atomic claim,
heartbeats and the records a running job leaves."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from store import jobs
from store.db import session_scope
from store.models import TERMINAL_STAGE, Job, Tenant, utcnow
from store.settings import Settings
from store.tenants import create_tenant

RECIPE = {"teacher": {"model": "mdl_x"}, "dataset": {"dataset": "ds_x"}}
STALE = 60.0


def _job(session: Session, tenant: Tenant, key: str | None = None) -> Job:
    return jobs.create_job(session, tenant_id=tenant.id, recipe=RECIPE, idempotency_key=key)[0]


def _running(session: Session, tenant: Tenant, worker: str = "w1") -> Job:
    job = _job(session, tenant)
    claimed = jobs.claim_job(session, job_id=job.id, worker_id=worker, stale_after=STALE)
    assert claimed is not None
    return claimed


def test_created_job_is_queued_with_no_attempts(session: Session, tenant: Tenant) -> None:
    job, created = jobs.create_job(session, tenant_id=tenant.id, recipe=RECIPE)
    assert created and job.status == "queued" and job.attempts == 0 and job.id.startswith("job_")


def test_replayed_idempotency_key_returns_the_first_job(session: Session, tenant: Tenant) -> None:
    first, _ = jobs.create_job(session, tenant_id=tenant.id, recipe=RECIPE, idempotency_key="k1")
    again, created = jobs.create_job(session, tenant_id=tenant.id, recipe={"other": 1}, idempotency_key="k1")
    assert again.id == first.id and not created


def test_idempotency_keys_are_per_tenant(session: Session, tenant: Tenant) -> None:
    other = create_tenant(session, name=f"{tenant.name}-other")
    first = _job(session, tenant, key="shared")
    second = _job(session, other, key="shared")
    assert first.id != second.id


def test_another_tenants_job_is_not_found(session: Session, tenant: Tenant) -> None:
    other = create_tenant(session, name=f"{tenant.name}-other")
    job = _job(session, tenant)
    assert jobs.get_job(session, tenant_id=other.id, job_id=job.id) is None
    assert jobs.request_cancel(session, tenant_id=other.id, job_id=job.id) is None
    assert jobs.list_events(session, tenant_id=other.id, job_id=job.id) is None


def test_list_pages_newest_first(session: Session, tenant: Tenant) -> None:
    made = [_job(session, tenant).id for _ in range(5)]
    page, more = jobs.list_jobs(session, tenant_id=tenant.id, limit=3)
    rest, more_after = jobs.list_jobs(session, tenant_id=tenant.id, after=page[-1].id, limit=3)
    assert [j.id for j in page + rest] == made[::-1]
    assert more and not more_after


def test_claim_runs_a_queued_job_and_counts_the_attempt(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant, worker="w1")
    assert (job.status, job.worker_id, job.attempts) == ("running", "w1", 1)
    assert job.started_at is not None and job.heartbeat_at is not None


def test_claim_fails_while_the_heartbeat_is_fresh(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant, worker="w1")
    assert jobs.claim_job(session, job_id=job.id, worker_id="w2", stale_after=STALE) is None


def test_claim_takes_over_a_job_with_a_stale_heartbeat(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant, worker="w1")
    later = utcnow() + timedelta(seconds=STALE + 1)
    taken = jobs.claim_job(session, job_id=job.id, worker_id="w2", stale_after=STALE, now=later)
    assert taken is not None and taken.worker_id == "w2" and taken.attempts == 2


def test_claim_fails_on_a_finished_job(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant)
    jobs.finish_job(session, job_id=job.id, worker_id="w1", status="succeeded")
    later = utcnow() + timedelta(seconds=STALE + 1)
    assert jobs.claim_job(session, job_id=job.id, worker_id="w2", stale_after=STALE, now=later) is None


def test_concurrent_claims_have_exactly_one_winner(db_settings: Settings, session: Session,
                                                   tenant: Tenant) -> None:
    job = _job(session, tenant)
    winners: list[str] = []
    barrier = threading.Barrier(4)

    def claim(worker: str) -> None:
        with session_scope(db_settings) as own:
            barrier.wait()
            if jobs.claim_job(own, job_id=job.id, worker_id=worker, stale_after=STALE) is not None:
                winners.append(worker)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert jobs.get_job(session, tenant_id=None, job_id=job.id).attempts == 1  # type: ignore[union-attr]


def test_heartbeat_says_stop_when_cancel_is_requested(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant)
    assert not jobs.heartbeat(session, job_id=job.id, worker_id="w1").should_stop
    jobs.request_cancel(session, tenant_id=tenant.id, job_id=job.id)
    lease = jobs.heartbeat(session, job_id=job.id, worker_id="w1")
    assert lease.owned and lease.cancel_requested and lease.should_stop


def test_heartbeat_of_a_worker_that_lost_the_job_is_not_owned(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant, worker="w1")
    jobs.claim_job(session, job_id=job.id, worker_id="w2", stale_after=STALE,
                   now=utcnow() + timedelta(seconds=STALE + 1))
    assert not jobs.heartbeat(session, job_id=job.id, worker_id="w1").owned


def test_finish_by_a_worker_that_lost_the_job_writes_nothing(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant, worker="w1")
    assert not jobs.finish_job(session, job_id=job.id, worker_id="w9", status="failed")
    assert jobs.get_job(session, tenant_id=tenant.id, job_id=job.id).status == "running"  # type: ignore[union-attr]


def test_cancel_of_a_queued_job_cancels_it_at_once(session: Session, tenant: Tenant) -> None:
    job = _job(session, tenant)
    cancelled = jobs.request_cancel(session, tenant_id=tenant.id, job_id=job.id)
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.finished_at is not None


def test_a_finished_job_reads_the_terminal_stage(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant, worker="w1")
    jobs.record_event(session, job_id=job.id, type="stage", stage="packing", message="packing")
    assert jobs.finish_job(session, job_id=job.id, worker_id="w1", status="succeeded")
    assert jobs.get_job(session, tenant_id=tenant.id, job_id=job.id).stage == TERMINAL_STAGE  # type: ignore[union-attr]


def test_a_queued_job_cancelled_reads_the_terminal_stage(session: Session, tenant: Tenant) -> None:
    job = _job(session, tenant)
    assert jobs.request_cancel(session, tenant_id=tenant.id, job_id=job.id).stage == TERMINAL_STAGE  # type: ignore[union-attr]


def test_cancel_of_a_running_job_only_flags_it(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant)
    flagged = jobs.request_cancel(session, tenant_id=tenant.id, job_id=job.id)
    assert flagged is not None and flagged.status == "running" and flagged.cancel_requested


def test_metrics_keep_the_series_and_the_latest_values(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant)
    jobs.record_metrics(session, job_id=job.id, step=1, metrics={"loss/task": 3.0, "loss/logits": 1.0})
    jobs.record_metrics(session, job_id=job.id, step=2, metrics={"loss/task": 2.5})
    series = jobs.list_metrics(session, tenant_id=tenant.id, job_id=job.id, name="loss/task")
    assert [(m.step, m.value) for m in series or []] == [(1, 3.0), (2, 2.5)]
    latest = jobs.get_job(session, tenant_id=tenant.id, job_id=job.id).metrics  # type: ignore[union-attr]
    assert latest == {"loss/task": 2.5, "loss/logits": 1.0}


def test_stage_event_sets_the_job_stage(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant)
    jobs.record_event(session, job_id=job.id, type="stage", stage="distilling", message="distilling")
    events, _ = jobs.list_events(session, tenant_id=tenant.id, job_id=job.id) or ([], False)
    assert [e.stage for e in events] == ["distilling"]
    assert jobs.get_job(session, tenant_id=tenant.id, job_id=job.id).stage == "distilling"  # type: ignore[union-attr]


def test_checkpoint_becomes_the_jobs_last_checkpoint(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant)
    jobs.record_checkpoint(session, job_id=job.id, step=2, path=f"{job.id}/step-2", bytes=10)
    last = jobs.record_checkpoint(session, job_id=job.id, step=4, path=f"{job.id}/step-4", bytes=10)
    assert jobs.get_job(session, tenant_id=None, job_id=job.id).last_checkpoint_id == last.id  # type: ignore[union-attr]
    listed = jobs.list_checkpoints(session, tenant_id=tenant.id, job_id=job.id) or []
    assert [c.step for c in listed] == [2, 4]


def test_stale_running_job_is_found_and_requeued(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant)
    later = utcnow() + timedelta(seconds=STALE + 1)
    assert job.id in [j.id for j in jobs.stale_jobs(session, stale_after=STALE, now=later)]
    assert jobs.requeue_stale_job(session, job_id=job.id, stale_after=STALE, now=later)
    requeued = jobs.get_job(session, tenant_id=None, job_id=job.id)
    assert requeued is not None and requeued.status == "queued" and requeued.worker_id is None


def test_fresh_running_job_is_not_requeued(session: Session, tenant: Tenant) -> None:
    job = _running(session, tenant)
    assert job.id not in [j.id for j in jobs.stale_jobs(session, stale_after=STALE)]
    assert not jobs.requeue_stale_job(session, job_id=job.id, stale_after=STALE)


def test_queued_job_counts_as_unclaimed_once_its_message_is_old(session: Session, tenant: Tenant) -> None:
    job = _job(session, tenant)
    jobs.mark_enqueued(session, job_id=job.id)
    assert job.id not in [j.id for j in jobs.unclaimed_jobs(session, older_than=30)]
    later = utcnow() + timedelta(seconds=31)
    assert job.id in [j.id for j in jobs.unclaimed_jobs(session, older_than=30, now=later)]


def test_cancel_of_a_finished_job_raises_not_cancellable_and_changes_nothing(session: Session,
                                                                             tenant: Tenant) -> None:
    job = _running(session, tenant)
    jobs.finish_job(session, job_id=job.id, worker_id="w1", status="succeeded")
    with pytest.raises(jobs.NotCancellable) as raised:
        jobs.request_cancel(session, tenant_id=tenant.id, job_id=job.id)
    assert raised.value.status == "succeeded"
    assert not jobs.get_job(session, tenant_id=tenant.id, job_id=job.id).cancel_requested  # type: ignore[union-attr]
