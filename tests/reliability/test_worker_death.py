"""A worker SIGKILLed in the middle of training loses nothing: another worker resumes the job from its
last checkpoint (found by the reconciler, since the killed worker's message is gone or unacked) and
finishes it once, with one model. Two live workers given the same job run it once."""

from __future__ import annotations

import os
import signal

import pytest

from tests.reliability.conftest import MODES, Deployment
from tests.reliability.workers import (
    checkpoint_count,
    finished,
    job_record,
    job_status,
    model_blobs,
    running_worker,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.slow
JOB_TIMEOUT_S = 240.0
# Long enough to kill it between its first checkpoint and its end, short enough for CI.
TRAINING = {"max_steps": 40, "checkpoint_every": 4, "batch_size": 4, "log_every": 4}


@pytest.mark.parametrize("deployment", MODES, indirect=True)
def test_job_of_a_sigkilled_worker_resumes_on_another_and_finishes_once(deployment: Deployment) -> None:
    settings, installation = deployment.settings, deployment.installation
    job_id = installation.submit(installation.recipe(training=TRAINING))
    deployment.send(job_id)
    first_log, second_log = deployment.folder / "worker-1.log", deployment.folder / "worker-2.log"
    first = start_worker(settings, first_log)
    try:
        wait_for(lambda: checkpoint_count(settings, job_id) >= 1, JOB_TIMEOUT_S, "a checkpoint", first_log)
    finally:
        os.kill(first.pid, signal.SIGKILL)  # by its own PID: solo pool, so the training dies with it
        first.wait()
    assert job_status(settings, job_id) == "running"

    with running_worker(settings, second_log):
        wait_for(finished(settings, job_id), JOB_TIMEOUT_S, "the resumed job", second_log)
    record = job_record(settings, job_id)
    assert (record.status, record.attempts) == ("succeeded", 2), record
    assert record.event_kinds.count("requeued") == 1 and record.event_kinds.count("resumed") == 1
    assert "restarted" not in record.event_kinds
    assert (record.models, record.compressed_artifacts) == (1, 1)
    assert f"{record.result_model_id}.tar" in model_blobs(settings, installation.tenant_id)
    assert len(model_blobs(settings, installation.tenant_id)) == 2  # the teacher upload and the result
    assert not (settings.checkpoint_dir / job_id).exists()


def test_two_live_workers_sent_the_same_job_run_it_once(deployment: Deployment) -> None:
    settings, installation = deployment.settings, deployment.installation
    job_id = installation.submit(installation.recipe())
    deployment.send(job_id)
    deployment.send(job_id)  # a duplicate message, as a redelivery or a reconciler re-send makes
    logs = [deployment.folder / f"worker-{n}.log" for n in (1, 2)]
    with running_worker(settings, logs[0]), running_worker(settings, logs[1]):
        wait_for(finished(settings, job_id), JOB_TIMEOUT_S, "the job", logs[0])
        record = job_record(settings, job_id)
    assert (record.status, record.attempts, record.models) == ("succeeded", 1, 1), record
    assert "resumed" not in record.event_kinds
