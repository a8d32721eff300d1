"""A worker SIGKILLed in the middle of a sweep's child loses nothing: the child resumes on the other
worker from its checkpoint, the sweep goes on to its next point, and every point runs exactly once."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from compression.sweep import SweepSpec
from store import sweeps
from store.db import session_scope
from tests.reliability.conftest import MODES, Deployment
from tests.reliability.workers import (
    checkpoint_count,
    holder_pid,
    job_record,
    job_status,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.slow
TIMEOUT_S = 300.0
READY = " ready."
TRAINING = {"max_steps": 60, "checkpoint_every": 4, "batch_size": 4, "log_every": 4}


def sweep_status(deployment: Deployment, sweep_id: str) -> str | None:
    with session_scope(deployment.settings) as session:
        sweep = sweeps.get_sweep(session, tenant_id=None, sweep_id=sweep_id)
        return sweep.status if sweep is not None else None


# The embedded mode only: the production mode's worker death is test_worker_death.py's, and the
# sweep's PostgreSQL path (row locks, two workers advancing) runs in tests/service/test_sweeps.py.
@pytest.mark.parametrize("deployment", MODES[:1], indirect=True)
def test_a_sweep_whose_worker_is_sigkilled_finishes_every_point_once(deployment: Deployment) -> None:
    settings, installation = deployment.settings, deployment.installation
    spec = SweepSpec.from_dict({"recipe": installation.recipe(training=TRAINING),
                                "axes": {"bits": ["8-8-8"], "layers": ["1-1", "2-1"]},
                                "gate": {"max_drop": 1.0}, "budget": {"max_parallel": 1}})
    logs = [deployment.folder / f"worker-{n}.log" for n in (1, 2)]
    workers = [start_worker(settings, log) for log in logs]
    try:
        for log in logs:
            wait_for(lambda log=log: READY in log.read_text(), TIMEOUT_S, "a ready worker", log)
        with session_scope(settings) as session:
            sweep, _ = sweeps.create_sweep(session, tenant_id=installation.tenant_id, spec=spec)
            sweep_id = sweep.id
            [first] = sweeps.advance(session, sweep_id=sweep_id, default_cap=None)
        deployment.send(first)
        wait_for(lambda: checkpoint_count(settings, first) >= 1, TIMEOUT_S, "a checkpoint", logs[0])
        holder = next(w for w in workers if w.pid == holder_pid(settings, first))
        os.kill(holder.pid, signal.SIGKILL)  # solo pool: the training dies with it
        holder.wait()
        assert job_status(settings, first) == "running"
        wait_for(lambda: sweep_status(deployment, sweep_id) == "succeeded", TIMEOUT_S, "the sweep's end",
                 logs[1 - workers.index(holder)])
    finally:
        for worker in workers:
            stop_worker(worker)
    with session_scope(settings) as session:
        kids = sweeps.children(session, sweep_id=sweep_id)
        assert Counter((k.sweep_point, k.sweep_rung) for k in kids) == {(0, 0): 1, (1, 0): 1}
        assert [k.status for k in kids] == ["succeeded", "succeeded"]
    record = job_record(settings, first)
    assert record.attempts == 2 and record.event_kinds.count("resumed") == 1, record
    assert record.models == 1
