"""Database retries: transient errors are retried with a growing delay, others are not, and the
error stands once the budget is spent."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from worker.dbretry import retry_db


def _flaky(failures: int, error: Exception) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def work() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"

    return calls, work


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def test_transient_errors_are_retried_with_doubling_delays(sleeps: list[float]) -> None:
    calls, work = _flaky(5, OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert retry_db(work, what="testing") == "done"
    assert len(calls) == 6 and sleeps == [0.5, 1.0, 2.0, 4.0, 5.0]


def test_other_errors_are_not_retried(sleeps: list[float]) -> None:
    calls, work = _flaky(1, IntegrityError("INSERT", {}, Exception("duplicate key")))
    with pytest.raises(IntegrityError):
        retry_db(work, what="testing")
    assert len(calls) == 1 and sleeps == []


def test_the_error_stands_once_the_next_try_would_start_past_the_budget(sleeps: list[float]) -> None:
    calls, work = _flaky(100, OperationalError("SELECT 1", {}, Exception("connection refused")))
    with pytest.raises(OperationalError):
        retry_db(work, what="testing", budget_s=0.1)
    assert len(calls) == 1
