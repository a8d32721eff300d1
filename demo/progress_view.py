"""A live progress bar for one job, fed by GET /v1/jobs/{id} and its events."""

from __future__ import annotations

import time
from typing import Any

from tqdm import tqdm

from demo.client import TERMINAL, DqbartClient

POLL_SECONDS = 1.0


def _describe(event: dict[str, Any]) -> str | None:
    """One line for the events worth showing above the bar (stages, messages, evaluations)."""
    kind = event.get("type")
    if kind == "stage":
        return f"stage: {event.get('stage')}" + (f" ({event['message']})" if event.get("message") else "")
    if kind == "message" and event.get("message"):
        return str(event["message"])
    data = event.get("data") or {}
    values = data.get("metrics", data)  # metrics events carry {"step": N, "metrics": {...}}
    evals = {k: v for k, v in values.items() if isinstance(k, str) and k.startswith("eval/")}
    if kind == "metrics" and evals:
        scores = "  ".join(f"{k.removeprefix('eval/')}={float(v):.2f}" for k, v in sorted(evals.items()))
        return f"evaluation at step {data.get('step', '?')}: {scores}"
    return None


def _postfix(job: dict[str, Any]) -> str:
    metrics = job.get("metrics") or {}
    loss = metrics.get("loss") or metrics.get("loss/total")
    eta = (job.get("progress") or {}).get("eta_seconds")
    parts = [f"loss={float(loss):.3f}" if isinstance(loss, int | float) else "",
             f"eta={int(eta)}s" if isinstance(eta, int | float) else ""]
    return " ".join(p for p in parts if p)


def follow_job(client: DqbartClient, job_id: str, title: str) -> dict[str, Any]:
    """Show the job's progress until it ends; return the final job object."""
    last_event: int | None = None
    bar = tqdm(total=1, desc=title, unit="step", dynamic_ncols=True, leave=True)
    try:
        while True:
            job = client.job(job_id)
            for event in client.events(job_id, after=last_event):
                last_event = event["id"]
                line = _describe(event)
                if line:
                    bar.write(f"  [{title}] {line}")
            progress = job.get("progress") or {}
            total = int(progress.get("total_steps") or 0)
            if total and bar.total != total:
                bar.reset(total=total)
            bar.n = min(int(progress.get("step") or 0), bar.total)
            bar.set_description(f"{title} [{job.get('stage') or job['status']}]")
            bar.set_postfix_str(_postfix(job), refresh=False)
            bar.refresh()
            if job["status"] in TERMINAL:
                return job
            time.sleep(POLL_SECONDS)
    finally:
        bar.close()
