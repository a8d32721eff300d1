"""A background thread that keeps a claimed job's heartbeat fresh and learns when to stop."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from store import jobs
from store.db import session_scope
from store.settings import Settings

log = logging.getLogger("dqbart.worker")


class HeartbeatMonitor:
    """Every HEARTBEAT_SECONDS: refresh the heartbeat and read the cancel flag.

    `should_stop` turns true when the user asked to cancel or another worker took the job over;
    the progress callback returns it, so compression stops within a training step.
    """

    def __init__(self, settings: Settings, *, job_id: str, worker_id: str) -> None:
        self.settings, self.job_id, self.worker_id = settings, job_id, worker_id
        self.owned, self.cancel_requested = True, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id}", daemon=True)

    @property
    def should_stop(self) -> bool:
        return self.cancel_requested or not self.owned

    def beat(self) -> None:
        try:
            with session_scope(self.settings) as session:
                lease = jobs.heartbeat(session, job_id=self.job_id, worker_id=self.worker_id)
        except Exception:  # a database blip must not kill the run; the next beat tries again
            log.warning("heartbeat of %s failed", self.job_id, exc_info=True)
            return
        self.owned, self.cancel_requested = lease.owned, lease.cancel_requested

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.HEARTBEAT_SECONDS):
            self.beat()

    def __enter__(self) -> HeartbeatMonitor:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
