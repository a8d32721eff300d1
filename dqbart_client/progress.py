"""What `jobs.wait` shows while a job runs: a live bar on a terminal, one line per event elsewhere.

A redrawn bar in a log file is megabytes of carriage returns; a log gets plain lines instead.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

from dqbart_client.types import Event, Job


def describe(event: Event) -> str | None:
    """One line for the events worth reading (stages, messages, evaluations); None for the rest."""
    if event.type == "stage":
        return f"stage: {event.stage}" + (f" ({event.message})" if event.message else "")
    if event.type == "message" and event.message:
        return event.message
    values = _values(event)
    evals = {k: v for k, v in values.items() if k.startswith("eval/")}
    if event.type == "metrics" and evals:
        scores = "  ".join(f"{k.removeprefix('eval/')}={float(v):.2f}" for k, v in sorted(evals.items()))
        return f"evaluation at step {event.data.get('step', '?')}: {scores}"
    return None


def describe_plain(event: Event) -> str | None:
    """As `describe`, and the training losses too: a log has no bar to show them."""
    line = describe(event)
    loss = _loss(_values(event))
    if line is None and event.type == "metrics" and loss is not None:
        return f"step {event.data.get('step', '?')}: loss={loss:.4f}"
    return line


def _values(event: Event) -> dict[str, Any]:
    return dict(event.data.get("metrics", {})) if event.type == "metrics" else {}


def _loss(metrics: dict[str, Any]) -> float | None:
    value = metrics.get("loss", metrics.get("loss/total"))
    return float(value) if isinstance(value, int | float) else None


def postfix(job: Job) -> str:
    loss, eta = _loss(job.metrics), job.progress.eta_seconds
    parts = [f"loss={loss:.3f}" if loss is not None else "", f"eta={int(eta)}s" if eta is not None else ""]
    return " ".join(p for p in parts if p)


class ProgressView:
    """An `on_progress` callback for `client.jobs.wait`; close() when the wait is over."""

    def __init__(self, title: str, out: TextIO | None = None, live: bool | None = None) -> None:
        self.title, self.out = title, out or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self.bar: tqdm[Any] | None = None
        if self.live:
            self.bar = tqdm(total=1, desc=title, unit="step", dynamic_ncols=True, leave=True, file=self.out)

    def __call__(self, job: Job, events: list[Event]) -> None:
        if self.bar is None:
            self._lines(job, events)
        else:
            self._redraw(self.bar, job, events)

    def _lines(self, job: Job, events: list[Event]) -> None:
        lines = [line for line in map(describe_plain, events) if line]
        lines += [job.status] if job.done else []
        for line in lines:
            self.out.write(f"[{self.title}] {line}\n")
        self.out.flush()

    def _redraw(self, bar: tqdm[Any], job: Job, events: list[Event]) -> None:
        for event in events:
            line = describe(event)
            if line:
                bar.write(f"  [{self.title}] {line}", file=self.out)
        total = job.progress.total_steps
        if total and bar.total != total:
            bar.reset(total=total)
        bar.n = job.progress.step if bar.total is None else min(job.progress.step, bar.total)
        bar.set_description(f"{self.title} [{job.stage or job.status}]")
        bar.set_postfix_str(postfix(job), refresh=False)
        bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
