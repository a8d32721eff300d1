"""What `jobs create --wait` and the demo print while a job runs."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from dqbart_client.progress import ProgressView, describe, describe_plain
from dqbart_client.types import Event, Job

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def event(type: str, **fields: Any) -> Event:
    return Event(id=fields.pop("id", 1), created_at=NOW, type=type, **fields)


def job(status: str, step: int = 0) -> Job:
    return Job(id="job_1", status=status, created_at=NOW, progress={"step": step, "total_steps": 10})


def test_stages_and_evaluations_get_a_line_but_losses_do_not() -> None:
    evaluation = event("metrics", data={"step": 300, "metrics": {"eval/rougeLsum": 7.43}})
    loss = event("metrics", data={"step": 10, "metrics": {"loss/total": 4.2}})
    assert describe(evaluation) == "evaluation at step 300: rougeLsum=7.43"
    assert describe(loss) is None
    assert describe(event("stage", stage="distilling", message="dq")) == "stage: distilling (dq)"


def test_without_a_bar_losses_get_a_line_too() -> None:
    loss = event("metrics", data={"step": 10, "metrics": {"loss/total": 4.2}})
    assert describe_plain(loss) == "step 10: loss=4.2000"


def test_off_a_terminal_each_event_is_one_line_and_nothing_is_redrawn() -> None:
    out = io.StringIO()
    view = ProgressView("job_1", out=out)
    view(job("running", 5), [event("stage", stage="distilling"),
                             event("metrics", id=2, data={"step": 5, "metrics": {"loss/total": 1.5}})])
    view(job("succeeded", 10), [])
    view.close()
    assert out.getvalue().splitlines() == ["[job_1] stage: distilling", "[job_1] step 5: loss=1.5000",
                                           "[job_1] succeeded"]
    assert "\r" not in out.getvalue()


def test_on_a_terminal_the_bar_follows_the_job_step() -> None:
    view = ProgressView("job_1", out=io.StringIO(), live=True)
    view(job("running", 7), [])
    assert view.bar is not None and (view.bar.n, view.bar.total) == (7, 10)
    view.close()
