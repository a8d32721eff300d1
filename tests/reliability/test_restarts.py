"""Our own Redis and PostgreSQL, restarted under a live worker: no job is lost, none runs twice.

Redis runs without persistence, so a restart loses every message in it (the worst case); the
database is the truth and the worker's reconciler sends queued jobs again. PostgreSQL is stopped
(as a crash) while a job trains and started again only once the worker is waiting to store the
result; the worker's writes retry, and the job finishes on its first attempt.
"""

from __future__ import annotations

import pytest

from tests.reliability.conftest import Deployment
from tests.reliability.workers import (
    checkpoint_count,
    finished,
    job_record,
    job_status,
    model_blobs,
    running_worker,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.services]
TIMEOUT_S = 240.0
PRODUCTION = pytest.mark.parametrize("deployment", ["production"], indirect=True)
STORE_RETRY = "database unavailable while storing the result"  # worker/dbretry.py's log line


def _assert_succeeded_once(deployment: Deployment, job_ids: list[str]) -> None:
    for job_id in job_ids:
        record = job_record(deployment.settings, job_id)
        assert (record.status, record.attempts, record.models) == ("succeeded", 1, 1), (job_id, record)
    results = model_blobs(deployment.settings, deployment.installation.tenant_id)
    assert len(results) == 1 + len(job_ids)  # the teacher and one model per job


@PRODUCTION
def test_redis_restart_loses_no_queued_job(deployment: Deployment) -> None:
    settings, installation, redis = deployment.settings, deployment.installation, deployment.redis
    assert redis is not None
    log = deployment.folder / "worker.log"
    first = installation.submit(installation.recipe(training={"max_steps": 16, "checkpoint_every": 8}))
    deployment.send(first)
    with running_worker(settings, log):
        wait_for(lambda: job_status(settings, first) == "running", TIMEOUT_S, "the first job", log)
        waiting = [installation.submit(installation.recipe()) for _ in range(2)]
        for job_id in waiting:
            deployment.send(job_id)  # queued in Redis behind the running job
        redis.restart()  # SIGKILL: the queued messages (and the running job's unacked one) are gone
        for job_id in [first, *waiting]:
            wait_for(finished(settings, job_id), TIMEOUT_S, f"job {job_id}", log)
    _assert_succeeded_once(deployment, [first, *waiting])


@PRODUCTION
def test_postgres_restart_during_a_run_is_retried_and_the_job_finishes(deployment: Deployment) -> None:
    settings, installation, postgres = deployment.settings, deployment.installation, deployment.postgres
    assert postgres is not None
    log = deployment.folder / "worker.log"
    # Long enough after the first checkpoint that the database is down before training ends.
    job_id = installation.submit(installation.recipe(training={"max_steps": 40, "checkpoint_every": 2}))
    deployment.send(job_id)
    # Heartbeats fail while the database is down; the job must not be presumed dead meanwhile.
    with running_worker(settings, log, STALE_AFTER_SECONDS="120"):
        wait_for(lambda: checkpoint_count(settings, job_id) >= 1, TIMEOUT_S, "a checkpoint", log)
        postgres.stop("immediate")
        try:
            wait_for(lambda: STORE_RETRY in log.read_text(), TIMEOUT_S, "a retried write", log)
        finally:
            postgres.start()
        wait_for(finished(settings, job_id), TIMEOUT_S, "the job", log)
    _assert_succeeded_once(deployment, [job_id])
