"""The progress callback of a running job: compression's events become rows in store/."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from compression.progress import ProgressEvent
from store import jobs
from store.db import session_factory
from store.settings import Settings
from worker.heartbeat import HeartbeatMonitor

log = logging.getLogger("dqbart.worker")
PROGRESS_WRITE_SECONDS = 1.0  # compression reports every step; the row needs far fewer writes


def public_text(settings: Settings, text: str) -> str:
    """`text` without the server's folders: users never see where a worker keeps its files
    ("writing the artifact to /srv/dqbart/work/job_1/artifact" -> "... to …/job_1/artifact")."""
    roots = {settings.work_dir, settings.checkpoint_dir, settings.artifact_dir, settings.cache_dir,
             settings.DATA_DIR}
    spellings = {str(r) for r in roots} | {str(r.resolve()) for r in roots}  # DATA_DIR may be relative
    for root in sorted(spellings, key=len, reverse=True):
        text = text.replace(root, "…")
    return text


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class ProgressRecorder:
    """Called by compression on every event; returns True when the run must stop."""

    def __init__(self, settings: Settings, *, job_id: str, worker_id: str, monitor: HeartbeatMonitor) -> None:
        self.settings, self.job_id, self.worker_id, self.monitor = settings, job_id, worker_id, monitor
        self.session = session_factory(settings)()
        self._last_progress_write = 0.0

    def __call__(self, event: ProgressEvent) -> bool:
        try:
            self._record(event)
        except SQLAlchemyError:  # losing one record is better than losing the run
            log.warning("could not record a %s event of %s", event.kind, self.job_id, exc_info=True)
            self.session.rollback()
        return self.monitor.should_stop

    def close(self) -> None:
        self.session.close()

    def _record(self, event: ProgressEvent) -> None:
        if event.kind == "stage":
            # record_event sets the job's stage; step counts belong to the training stages only
            jobs.record_event(self.session, job_id=self.job_id, type="stage", stage=event.stage,
                              message=public_text(self.settings, event.message or event.stage))
        elif event.kind == "metrics":
            if event.metrics:
                jobs.record_metrics(self.session, job_id=self.job_id, step=event.step, metrics=event.metrics)
                jobs.record_event(self.session, job_id=self.job_id, type="metrics", stage=event.stage,
                                  data={"step": event.step, "metrics": event.metrics})
            self._progress(event, force=bool(event.metrics) or event.step == event.total_steps)
        elif event.kind == "checkpoint" and event.checkpoint:
            self._checkpoint(event, Path(event.checkpoint))
        else:
            jobs.record_event(self.session, job_id=self.job_id, type="message", stage=event.stage,
                              message=public_text(self.settings, event.message), data={"step": event.step})

    def _progress(self, event: ProgressEvent, *, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._last_progress_write >= PROGRESS_WRITE_SECONDS:
            jobs.set_progress(self.session, job_id=self.job_id, worker_id=self.worker_id, step=event.step,
                              total=event.total_steps, stage=event.stage)
            self._last_progress_write = now

    def _checkpoint(self, event: ProgressEvent, path: Path) -> None:
        root = self.settings.checkpoint_dir
        key = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        checkpoint = jobs.record_checkpoint(self.session, job_id=self.job_id, step=event.step, path=key,
                                            bytes=directory_bytes(path))
        jobs.record_event(self.session, job_id=self.job_id, type="message", stage=event.stage,
                          message=f"checkpoint at step {event.step}",
                          data={"kind": "checkpoint", "checkpoint": checkpoint.id, "step": event.step})
