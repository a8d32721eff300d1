"""Retry a unit of database work while the database is briefly away (a restart, a failover).

Used for the worker's writes that decide a job's fate (the claim, the stored result, the final
status): losing one of them would fail or strand a job whose training went fine. Each unit opens
its own session, so a retry starts on a fresh connection (the pool pre-pings it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_before_delay, wait_exponential

log = logging.getLogger("dqbart.worker")

T = TypeVar("T")
RETRY_SECONDS = 120.0  # longer than a database restart or failover; then the error stands
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
TRANSIENT = (OperationalError, InterfaceError)  # connection refused or lost, server shutting down


def retry_db(work: Callable[[], T], *, what: str, budget_s: float = RETRY_SECONDS) -> T:
    """`work()`, run again with exponential backoff (0.5 s doubling up to 5 s) while it fails with
    a transient database error; the error stands once the next try would start past `budget_s`."""

    def warn(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        cause = getattr(exc, "orig", None) or exc
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("database unavailable while %s (%s); retrying in %.1f s", what, type(cause).__name__,
                    delay)

    retrying = Retrying(retry=retry_if_exception_type(TRANSIENT), reraise=True, before_sleep=warn,
                        wait=wait_exponential(multiplier=FIRST_DELAY_S, max=MAX_DELAY_S),
                        stop=stop_before_delay(budget_s))
    return retrying(work)
