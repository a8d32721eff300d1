"""Moving sweeps on from the worker: after each child ends, and on every reconciler pass (which
also finishes what a process that died between a child's end and its advance left undone)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from store import sweeps
from store.db import session_scope
from store.settings import Settings

Send = Callable[[str], None]  # enqueue one job id


def advance(session: Session, settings: Settings, sweep_id: str, send: Send) -> list[str]:
    """Queue what the sweep can start now; store.sweeps.advance commits before any message goes out."""
    started = sweeps.advance(session, sweep_id=sweep_id, default_cap=settings.MAX_CONCURRENT_JOBS)
    for job_id in started:
        send(job_id)
    return started


def after_job(settings: Settings, job_id: str, send: Send) -> None:
    """A job ended (or could not be claimed): move its sweep on, if it has one."""
    with session_scope(settings) as session:
        sweep_id = sweeps.sweep_of(session, job_id=job_id)
        if sweep_id is not None:
            advance(session, settings, sweep_id, send)
