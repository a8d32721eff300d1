"""Find jobs the queue has lost and send them again.

Two ways to lose a job: its worker died while running it (the heartbeat goes stale; neither
serverless transport redelivers, platform-notes §4), or its message never arrived or was
dropped (it stays queued). The claim makes a duplicate message harmless, so re-sending errs on
the side of sending.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from store import jobs, sweeps
from store.db import session_scope
from store.models import utcnow
from store.settings import Settings
from worker.sweeps import Send, advance

log = logging.getLogger("dqbart.worker")



@dataclass
class ReconcileReport:
    requeued: list[str] = field(default_factory=list)  # were running with a stale heartbeat
    resent: list[str] = field(default_factory=list)  # every job id sent again, requeued ones included
    started: list[str] = field(default_factory=list)  # sweep children queued by this pass


def reconcile(session: Session, settings: Settings, now: datetime | None = None, *,
              send: Send) -> ReconcileReport:
    """Requeue running jobs with a stale heartbeat, send every job that waits too long again, and
    move every running sweep on (a child's end may have found no free slot, or its worker died)."""
    now = now or utcnow()
    report = ReconcileReport()
    for job in jobs.stale_jobs(session, stale_after=settings.STALE_AFTER_SECONDS, now=now):
        if jobs.requeue_stale_job(session, job_id=job.id, stale_after=settings.STALE_AFTER_SECONDS, now=now):
            report.requeued.append(job.id)
    waiting = jobs.unclaimed_jobs(session, older_than=settings.REQUEUE_AFTER_SECONDS, now=now)
    for job_id in dict.fromkeys(report.requeued + [j.id for j in waiting]):
        # Mark first: the write's row lock must be gone before a worker's claim (SKIP LOCKED on
        # PostgreSQL) sees the message, or the claim skips the row and the message is used up.
        jobs.mark_enqueued(session, job_id=job_id, now=now)
        send(job_id)
        report.resent.append(job_id)
    for sweep_id in sweeps.running_sweep_ids(session):
        report.started += advance(session, settings, sweep_id, send)
    if report.resent or report.started:
        log.info("reconciler: requeued %s, sent again %s, sweep children started %s", report.requeued,
                 report.resent, report.started)
    return report


class Reconciler:
    """Runs `reconcile` at start and then every RECONCILE_SECONDS in a daemon thread."""

    def __init__(self, settings: Settings, send: Send) -> None:
        self.settings, self.send = settings, send
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dqbart-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def run_once(self) -> ReconcileReport | None:
        try:
            with session_scope(self.settings) as session:
                return reconcile(session, self.settings, send=self.send)
        except Exception:  # the database or broker may be briefly away; try again next round
            log.warning("reconciler pass failed", exc_info=True)
            return None

    def _loop(self) -> None:
        self.run_once()
        while not self._stop.wait(self.settings.RECONCILE_SECONDS):
            self.run_once()
