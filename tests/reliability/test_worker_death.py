"""A worker SIGKILLed in the middle of training loses nothing: another worker resumes the job from its
last checkpoint (found by the reconciler, since the killed worker's message is gone or unacked) and
finishes it once, with one model; while the first worker was alive, the second refused the job."""

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
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.slow
TIMEOUT_S = 240.0
# Long enough to kill it between its first checkpoint and its end, short enough for CI.
NOT_CLAIMED = "not claimed: finished, or held by a live worker"  # worker/runner.py's log line
TRAINING = {"max_steps": 40, "checkpoint_every": 4, "batch_size": 4, "log_every": 4}


@pytest.mark.parametrize("deployment", MODES, indirect=True)
def test_job_of_a_sigkilled_worker_resumes_on_another_and_finishes_once(deployment: Deployment) -> None:
    settings, installation = deployment.settings, deployment.installation
    job_id = installation.submit(installation.recipe(training=TRAINING))
    deployment.send(job_id)
    first_log, second_log = deployment.folder / "worker-1.log", deployment.folder / "worker-2.log"
    first = start_worker(settings, first_log)
    try:
        wait_for(lambda: job_status(settings, job_id) == "running", TIMEOUT_S, "the claim", first_log)
        with running_worker(settings, second_log):
            # A duplicate message reaches the second worker while the first trains: its claim must fail.
            deployment.send(job_id)
            wait_for(lambda: NOT_CLAIMED in second_log.read_text(), TIMEOUT_S, "a refused claim", second_log)
            wait_for(lambda: checkpoint_count(settings, job_id) >= 1, TIMEOUT_S, "a checkpoint", first_log)
            os.kill(first.pid, signal.SIGKILL)  # by its own PID: solo pool, so the training dies with it
            first.wait()
            assert job_status(settings, job_id) == "running"
            wait_for(finished(settings, job_id), TIMEOUT_S, "the resumed job", second_log)
    finally:
        stop_worker(first)
    record = job_record(settings, job_id)
    assert (record.status, record.attempts) == ("succeeded", 2), record
    assert record.event_kinds.count("requeued") == 1 and record.event_kinds.count("resumed") == 1
    assert "restarted" not in record.event_kinds
    assert (record.models, record.compressed_artifacts) == (1, 1)
    assert f"{record.result_model_id}.tar" in model_blobs(settings, installation.tenant_id)
    assert len(model_blobs(settings, installation.tenant_id)) == 2  # the teacher upload and the result
    assert not (settings.checkpoint_dir / job_id).exists()

