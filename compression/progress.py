"""Structured progress events from a compression run to whoever drives it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Stage = Literal["preparing", "finetuning_teacher", "distilling", "evaluating", "packing"]
EventKind = Literal["stage", "metrics", "message", "checkpoint"]


@dataclass
class ProgressEvent:
    """One thing that happened. `metrics` holds loss components ("loss/task", "loss/logits", ...)
    at log steps and eval metrics ("eval/rougeLsum", ...) after evaluations."""

    kind: EventKind
    stage: Stage
    step: int = 0
    total_steps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    checkpoint: str | None = None  # directory of a resumable checkpoint (kind == "checkpoint")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Returning True asks the run to stop; it then raises compression.errors.Cancelled
# at the next step boundary.
ProgressCallback = Callable[[ProgressEvent], bool | None]


def no_progress(event: ProgressEvent) -> bool:
    return False
