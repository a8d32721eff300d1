"""Request and response shapes of the REST API (DESIGN.md §5), and their mapping from rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from store.models import Checkpoint, Dataset, Job, JobEvent, JobMetric, Model, Sweep
from store.sweeps import PointState, describe

T = TypeVar("T")


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 415, 422, 429, 503)
}


def multipart_body(description: str) -> dict[str, Any]:
    """OpenAPI for an upload body parsed by api/uploads.py: `file` plus an optional `name`."""
    schema = {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": description},
        "name": {"type": "string", "description": "a display name (default: the file name)"},
    }}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def cursor(prefix: str) -> Any:
    """The `after` query parameter of a list: the last id of the previous page, of the listed kind."""
    return Query(pattern=rf"^{prefix}_[0-9A-HJKMNP-TV-Z]{{26}}$",
                 description=f"the last id of the previous page ({prefix}_...)")


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first; pass the last id as `after` to get the next."""

    data: list[T]
    has_more: bool


class Health(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]


class Layers(BaseModel):
    encoder: int
    decoder: int


class QualityGate(BaseModel):
    """The verdict of the recipe's `gate` on the student (compression/gate.py): both scores on the
    same validation split with the same generation settings, and the drop between them."""

    verdict: Literal["passed", "flagged", "rejected"]
    passed: bool
    metric: str
    teacher: float
    student: float
    drop: float = Field(description="teacher minus student, in metric points (negative: the student "
                                    "scores higher)")
    relative_drop: float = Field(description="the drop as a fraction of the teacher's score")
    max_drop: float
    drop_kind: Literal["relative", "absolute"] = Field(description="which drop max_drop bounds")
    on_fail: Literal["flag", "reject"]
    message: str


class LossInterval(BaseModel):
    """A paired bootstrap of metric_loss over the checked records (compression/bootstrap.py)."""

    estimate: float
    standard_error: float
    low: float
    high: float
    confidence: float = Field(description="two-sided; each end is a one-sided bound of (1 + confidence) / 2")
    samples: int


class EngineCheck(BaseModel):
    """A serving engine's form of the model scored against the reference path when the job packed it
    (compression/ct2.py `faithfulness`): greedy decoding of the first validation records on both."""

    available: bool = Field(description="false: the engine cannot hold this model exactly (see reason)")
    reason: str | None = None
    compute_type: str | None = None
    records: int | None = None
    identical_percent: float | None = Field(None, description="outputs identical to the reference path's")
    metric: str | None = Field(None, description="rougeLsum (summarization) or bleu (translation)")
    reference: float | None = None
    ctranslate2: float | None = Field(None, description="the CTranslate2 form's score")
    metric_loss: float | None = Field(None, description="reference minus engine, in metric points")
    loss_interval: LossInterval | None = Field(None, description="how sure metric_loss is")
    budget: float | None = Field(None, description="the loss allowed when the job packed the model")
    within_budget: bool | None = Field(None, description="false: the loss is surely over the budget (the "
                                                         "interval's low end is above it), and the service "
                                                         "serves our own int8 form instead (the serving "
                                                         "budget may differ; /info says which engine "
                                                         "serves it)")


class ModelObject(BaseModel):
    id: str
    name: str
    source: Literal["upload", "compression"]
    architecture: str
    layers: Layers
    parameters: int
    bytes: int
    sha256: str
    task: str | None = None
    job_id: str | None = None
    quality_gate: QualityGate | None = Field(
        None, description="a gated job's verdict; `flagged`: inference answers with "
                          "`X-DQB-Quality-Gate: failed`")
    engines: dict[str, EngineCheck] | None = Field(
        None, description="a compressed model's engine checks at packing, by engine (`ctranslate2`)")
    created_at: datetime


class UploadedModelObject(ModelObject):
    """The stored model, and what of the archive it left out."""

    dropped_files: list[str] = Field(
        default_factory=list,
        description="archive members left out unopened: weights in other formats (pytorch_model.bin, "
                    "tf_model.h5, flax_model.msgpack, rust_model.ot) and anything that is not safetensors, "
                    "JSON, merges.txt or sentencepiece.bpe.model")


class DatasetObject(BaseModel):
    id: str
    name: str
    format: Literal["jsonl", "csv"]
    rows: int
    columns: list[str]
    preview: list[dict[str, Any]]
    bytes: int
    sha256: str
    created_at: datetime


class Progress(BaseModel):
    step: int
    total_steps: int
    fraction: float = Field(ge=0.0, le=1.0)
    eta_seconds: float | None = None


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class JobObject(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "user_error", "rejected"]
    stage: str | None
    progress: Progress
    recipe: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    error: JobError | None
    metrics: dict[str, Any]
    result_model: str | None
    quality_gate: QualityGate | None = Field(None, description="the verdict of the recipe's gate, once "
                                                               "a gated job has ended")
    result: dict[str, Any] | None = Field(None, description="what the student measured, once made "
                                                           "(bytes on disk, compression_ratio, metrics, "
                                                           "teacher_metrics and where they came from)")
    sweep: str | None = Field(None, description="the sweep this job is a child of")


class EventObject(BaseModel):
    id: int
    created_at: datetime
    type: Literal["message", "metrics", "stage"]
    stage: str | None
    message: str
    data: dict[str, Any]


class MetricPoint(BaseModel):
    name: str
    step: int
    value: float
    created_at: datetime


class CheckpointObject(BaseModel):
    id: str
    step: int
    bytes: int
    created_at: datetime


def model_object(row: Model) -> ModelObject:
    return ModelObject.model_validate(row, from_attributes=True)


def dataset_object(row: Dataset) -> DatasetObject:
    return DatasetObject.model_validate(row, from_attributes=True)


def event_object(row: JobEvent) -> EventObject:
    return EventObject.model_validate(row, from_attributes=True)


def metric_point(row: JobMetric) -> MetricPoint:
    return MetricPoint.model_validate(row, from_attributes=True)


def checkpoint_object(row: Checkpoint) -> CheckpointObject:
    return CheckpointObject.model_validate(row, from_attributes=True)


def _progress(job: Job, now: datetime) -> Progress:
    step, total = job.progress_step, job.progress_total
    fraction = 1.0 if job.status == "succeeded" else (min(step / total, 1.0) if total else 0.0)
    eta = None
    if job.status == "running" and job.started_at and 0 < step < total:
        # Steps done in this attempt's wall time; a resumed attempt started from a checkpoint.
        eta = (now - job.started_at).total_seconds() / step * (total - step)
    elif job.status == "succeeded":
        eta = 0.0
    return Progress(step=step, total_steps=total, fraction=fraction, eta_seconds=eta)


def job_object(job: Job, now: datetime) -> JobObject:
    error = None
    if job.error_code:
        error = JobError(code=job.error_code, message=job.error_message or "", param=job.error_param)
    return JobObject.model_validate({
        "id": job.id, "status": job.status, "stage": job.stage, "progress": _progress(job, now),
        "recipe": job.recipe, "created_at": job.created_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "attempts": job.attempts, "error": error,
        "metrics": job.metrics or {}, "result_model": job.result_model_id, "quality_gate": job.quality_gate,
        "result": job.result, "sweep": job.sweep_id,
    })


class SweepPoint(BaseModel):
    """One point of the sweep, as its latest child measured it."""

    index: int
    method: str
    bits: str = Field(description="weight-embedding-activation bits, e.g. 2-2-8")
    layers: str = Field(description="student encoder-decoder layers, e.g. 6-3")
    status: PointState = Field(description="pending: not started (or waiting for its next rung); "
                                           "stopped: dropped by successive halving; else its latest "
                                           "child's status")
    rung: int | None
    steps: int | None = Field(description="training steps of its latest child")
    job_id: str | None
    model_id: str | None
    bytes: int | None = Field(description="the student's weights on disk")
    compression_ratio: float | None
    metric: float | None = Field(description="the student's score on the gate's metric")
    gate: Literal["passed", "flagged", "rejected"] | None
    on_front: bool = Field(description="no measured point is both smaller and better")
    error_code: str | None


class SweepRung(BaseModel):
    rung: int
    steps: int
    points: int


class SweepSteps(BaseModel):
    planned: int = Field(description="the most steps the plan trains (what max_total_steps bounds)")
    used: int = Field(description="the step budgets of the children finished so far")
    grid: int = Field(description="what a grid over the same points trains")
    saved: int | None = Field(description="grid - used, once the sweep has succeeded")


class SweepRecommendation(BaseModel):
    index: int
    model_id: str
    bytes: int
    metric: float


class SweepObject(BaseModel):
    id: str
    status: Literal["running", "succeeded", "cancelled"]
    objective: Literal["smallest_passing", "pareto"]
    strategy: Literal["grid", "successive_halving"]
    metric: str = Field(description="the gate's metric, which the points and the front are scored on")
    created_at: datetime
    finished_at: datetime | None
    spec: dict[str, Any] = Field(description="the request, with its defaults filled in")
    rung: int = Field(description="the rung now training (always 0 for a grid)")
    rungs: list[SweepRung]
    progress: dict[str, int] = Field(description="points by status")
    teacher_metrics: dict[str, float] | None = Field(description="scored once, by the first child")
    points: list[SweepPoint]
    front: list[int] = Field(description="indices of the Pareto front's points, smallest first")
    recommended: SweepRecommendation | None = Field(description="the smallest point that passed the gate")
    reason: str | None = Field(description="why nothing is recommended")
    steps: SweepSteps


def sweep_object(sweep: Sweep, kids: list[Job]) -> SweepObject:
    spec = sweep.spec
    return SweepObject.model_validate({
        "id": sweep.id, "status": sweep.status, "objective": spec["objective"], "strategy": spec["strategy"],
        "metric": spec["gate"]["metric"], "created_at": sweep.created_at, "finished_at": sweep.finished_at,
        "spec": spec, "teacher_metrics": sweep.teacher_metrics, **describe(sweep, kids),
    })
