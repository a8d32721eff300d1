"""A worker SIGKILLed in the middle of training loses nothing: another worker resumes the job from its
last checkpoint (found by the reconciler, since the killed worker's message is gone or unacked) and
finishes it once, with one model. Both workers are up before the job is sent; whichever claims it is
killed, and the other, which refused a duplicate message while the job was held, resumes it."""

from __future__ import annotations

import os
import signal

import pytest

from tests.reliability.conftest import MODES, Deployment
from tests.reliability.workers import (
    checkpoint_count,
    finished,
    holder_pid,
    job_record,
    job_status,
    model_blobs,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.slow
TIMEOUT_S = 240.0
READY = " ready."  # celery's log line once it consumes
NOT_CLAIMED = "not claimed: finished, or held by a live worker"  # worker/runner.py's log line
# Long enough to kill it between its first checkpoint and its end, short enough for CI.
TRAINING = {"max_steps": 60, "checkpoint_every": 4, "batch_size": 4, "log_every": 4}


@pytest.mark.parametrize("deployment", MODES, indirect=True)
def test_job_of_a_sigkilled_worker_resumes_on_another_and_finishes_once(deployment: Deployment) -> None:
    settings, installation = deployment.settings, deployment.installation
    job_id = installation.submit(installation.recipe(training=TRAINING))
    logs = [deployment.folder / f"worker-{n}.log" for n in (1, 2)]
    workers = [start_worker(settings, log) for log in logs]
    try:
        for log in logs:
            wait_for(lambda log=log: READY in log.read_text(), TIMEOUT_S, "a ready worker", log)
        deployment.send(job_id)
        wait_for(lambda: job_status(settings, job_id) == "running", TIMEOUT_S, "the claim", logs[0])
        held = [w.pid for w in workers].index(holder_pid(settings, job_id))
        holder, other, other_log = workers[held], workers[1 - held], logs[1 - held]
        # A duplicate message reaches the idle worker while the holder trains: its claim must fail.
        deployment.send(job_id)
        wait_for(lambda: NOT_CLAIMED in other_log.read_text(), TIMEOUT_S, "a refused claim", other_log)
        wait_for(lambda: checkpoint_count(settings, job_id) >= 1, TIMEOUT_S, "a checkpoint", logs[held])
        os.kill(holder.pid, signal.SIGKILL)  # by its own PID: solo pool, so the training dies with it
        holder.wait()
        assert job_status(settings, job_id) == "running"
        wait_for(finished(settings, job_id), TIMEOUT_S, "the resumed job", other_log)
        assert other.poll() is None
    finally:
        for worker in workers:
            stop_worker(worker)
    record = job_record(settings, job_id)
    assert (record.status, record.attempts) == ("succeeded", 2), record
    assert record.event_kinds.count("requeued") == 1 and record.event_kinds.count("resumed") == 1
    assert "restarted" not in record.event_kinds
    assert (record.models, record.compressed_artifacts) == (1, 1)
    assert f"{record.result_model_id}.tar" in model_blobs(settings, installation.tenant_id)
    assert len(model_blobs(settings, installation.tenant_id)) == 2  # the teacher upload and the result
    assert not (settings.checkpoint_dir / job_id).exists()
