"""The reconciler: jobs whose worker died, and queued jobs whose message was lost, are sent again."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy.orm import Session

from store import jobs
from store.db import session_scope
from store.models import Job, utcnow
from store.settings import Settings
from store.tenants import create_tenant
from worker.reconcile import Reconciler, reconcile

RECIPE = {"teacher": {"model": "mdl_x"}, "dataset": {"dataset": "ds_x"}}


def _new_job(session: Session) -> Job:
    tenant = create_tenant(session, name=f"t-{utcnow().timestamp()}")
    return jobs.create_job(session, tenant_id=tenant.id, recipe=RECIPE)[0]


def test_running_job_with_a_stale_heartbeat_is_requeued_and_sent(fast_settings: Settings) -> None:
    sent: list[str] = []
    with session_scope(fast_settings) as session:
        job = _new_job(session)
        jobs.claim_job(session, job_id=job.id, worker_id="dead", stale_after=60)
        later = utcnow() + timedelta(seconds=fast_settings.STALE_AFTER_SECONDS + 1)
        report = reconcile(session, fast_settings, later, send=sent.append)
        requeued = jobs.get_job(session, tenant_id=None, job_id=job.id)
    assert report.requeued == [job.id] and sent == [job.id]
    assert requeued is not None and requeued.status == "queued" and requeued.worker_id is None


def test_running_job_with_a_fresh_heartbeat_is_left_alone(fast_settings: Settings) -> None:
    sent: list[str] = []
    with session_scope(fast_settings) as session:
        job = _new_job(session)
        jobs.claim_job(session, job_id=job.id, worker_id="alive", stale_after=60)
        reconcile(session, fast_settings, send=sent.append)
        assert jobs.get_job(session, tenant_id=None, job_id=job.id).status == "running"  # type: ignore[union-attr]
    assert sent == []


def test_queued_job_waiting_too_long_is_sent_again_once_per_period(fast_settings: Settings) -> None:
    sent: list[str] = []
    with session_scope(fast_settings) as session:
        job = _new_job(session)
        jobs.mark_enqueued(session, job_id=job.id)
        reconcile(session, fast_settings, send=sent.append)
        assert sent == []
        later = utcnow() + timedelta(seconds=fast_settings.REQUEUE_AFTER_SECONDS + 1)
        reconcile(session, fast_settings, later, send=sent.append)
        reconcile(session, fast_settings, later, send=sent.append)
    assert sent == [job.id]


def test_reconciler_thread_passes_at_start(fast_settings: Settings) -> None:
    settings = fast_settings.model_copy(update={"REQUEUE_AFTER_SECONDS": 0.0})
    sent: list[str] = []
    with session_scope(settings) as session:
        job = _new_job(session)
    reconciler = Reconciler(settings, sent.append)
    reconciler.start()
    try:
        deadline = utcnow() + timedelta(seconds=10)
        while job.id not in sent and utcnow() < deadline:
            time.sleep(0.01)
    finally:
        reconciler.stop()
    assert job.id in sent
