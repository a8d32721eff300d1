"""Retry a unit of database work while the database is briefly away (a restart, a failover).

Used for the worker's writes that decide a job's fate (the claim, the stored result, the final
status): losing one of them would fail or strand a job whose training went fine. Each unit opens
its own session, so a retry starts on a fresh connection (the pool pre-pings it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger("dqbart.worker")

T = TypeVar("T")
RETRY_SECONDS = 120.0  # longer than a database restart or failover; then the error stands
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
TRANSIENT = (OperationalError, InterfaceError)  # connection refused or lost, server shutting down


def retry_db(work: Callable[[], T], *, what: str, budget_s: float = RETRY_SECONDS) -> T:
    """`work()`, run again with exponential backoff while it fails with a transient database error."""
    deadline = time.monotonic() + budget_s
    delay = FIRST_DELAY_S
    while True:
        try:
            return work()
        except TRANSIENT as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable while %s (%s); retrying in %.1f s", what,
                        type(exc.orig or exc).__name__, delay)
            time.sleep(delay)
            delay = min(2 * delay, MAX_DELAY_S)
