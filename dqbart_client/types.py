"""The objects the service returns (DESIGN.md §5), as pydantic models.

Unknown fields are kept, so a newer service never breaks an older client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled", "user_error", "rejected")


class _Object(BaseModel):
    model_config = ConfigDict(extra="allow")


class Model(_Object):
    id: str
    name: str
    source: str
    architecture: str
    layers: dict[str, int]
    parameters: int
    bytes: int
    sha256: str
    task: str | None = None
    job_id: str | None = None
    quality_gate: dict[str, Any] | None = None  # a gated job's verdict, scores and drop
    created_at: datetime


class Dataset(_Object):
    id: str
    name: str
    format: str
    rows: int
    columns: list[str]
    preview: list[dict[str, Any]] = []
    bytes: int
    sha256: str
    created_at: datetime


class Progress(_Object):
    step: int = 0
    total_steps: int = 0
    fraction: float = 0.0
    eta_seconds: float | None = None


class JobError(_Object):
    code: str
    message: str
    param: str | None = None


class Job(_Object):
    id: str
    status: str
    stage: str | None = None
    progress: Progress = Progress()
    recipe: dict[str, Any] = {}
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    error: JobError | None = None
    metrics: dict[str, Any] = {}
    result_model: str | None = None
    quality_gate: dict[str, Any] | None = None
    result: dict[str, Any] | None = None  # what the student measured: bytes, compression_ratio, metrics...
    sweep: str | None = None  # the sweep this job is a child of

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class SweepPoint(_Object):
    index: int
    method: str
    bits: str
    layers: str
    status: str
    job_id: str | None = None
    model_id: str | None = None
    bytes: int | None = None
    compression_ratio: float | None = None
    metric: float | None = None
    gate: str | None = None
    on_front: bool = False


class Sweep(_Object):
    id: str
    status: str
    objective: str
    strategy: str
    metric: str
    created_at: datetime
    finished_at: datetime | None = None
    progress: dict[str, int] = {}
    points: list[SweepPoint] = []
    front: list[int] = []
    recommended: dict[str, Any] | None = None  # {index, model_id, bytes, metric}
    reason: str | None = None
    steps: dict[str, int | None] = {}

    @property
    def done(self) -> bool:
        return self.status != "running"


class Event(_Object):
    id: int
    created_at: datetime
    type: str
    stage: str | None = None
    message: str = ""
    data: dict[str, Any] = {}


class MetricPoint(_Object):
    name: str
    step: int
    value: float
    created_at: datetime


class Checkpoint(_Object):
    id: str
    step: int
    bytes: int
    created_at: datetime


@dataclass(frozen=True)
class Download:
    path: Path
    sha256: str
    bytes: int
    resumed_from: int  # bytes already on disk from an earlier, cut-off try
