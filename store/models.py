"""SQLAlchemy tables of the service (docs: /work/notes/service-contract.md).

Ids are strings: a type prefix and a ULID (store.ids), so ordering by id is ordering by
creation time. Times are timezone-aware UTC on both PostgreSQL and SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# rejected: the run finished but its student missed the recipe's quality gate (no model published)
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "user_error", "rejected")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled", "user_error", "rejected")
INT_MAX = 2**31 - 1  # the largest value of an Integer column (int4 on PostgreSQL)
# A finished job's stage, whatever its status: "succeeded" beside "packing" reads as still packing.
# Where a failed job stopped is in its events.
TERMINAL_STAGE = "done"
EVENT_TYPES = ("message", "metrics", "stage")
# succeeded: every point ran (children that failed are reported, not the sweep's failure)
SWEEP_STATUSES = ("running", "succeeded", "cancelled")
ARTIFACT_KINDS = ("model_upload", "dataset", "compressed_model", "checkpoint")
MODEL_SOURCES = ("upload", "compression")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime that always comes back timezone-aware UTC (SQLite drops the zone on storage)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer)
    storage_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the key
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, for display
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (CheckConstraint(_in("kind", ARTIFACT_KINDS), name="kind"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(500))  # key in the blob store
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint(_in("source", MODEL_SOURCES), name="source"),
        Index("ix_models_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))
    architecture: Mapped[str] = mapped_column(String(100))
    layers: Mapped[dict[str, Any]] = mapped_column()  # {"encoder": n, "decoder": n}
    parameters: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    task: Mapped[str | None] = mapped_column(String(32))  # summarization | translation
    quality_gate: Mapped[dict[str, Any] | None] = mapped_column()  # compression.gate.GateResult.to_dict
    # report.json's `engines`: each serving engine's packing-time check against the reference path
    engines: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (
        CheckConstraint(_in("format", ("jsonl", "csv")), name="format"),
        Index("ix_datasets_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(8))
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[Any]] = mapped_column()
    preview: Mapped[list[Any]] = mapped_column()  # the first rows, as objects
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sweep(Base):
    """One request over many points (compression.sweep); its children are jobs with its id."""

    __tablename__ = "sweeps"
    __table_args__ = (
        CheckConstraint(_in("status", SWEEP_STATUSES), name="status"),
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_sweeps_tenant_id_id", "tenant_id", "id"),
        Index("ix_sweeps_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="running")
    spec: Mapped[dict[str, Any]] = mapped_column()  # compression.sweep.SweepSpec.to_dict
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    rung: Mapped[int] = mapped_column(Integer, default=0)  # the rung now training (successive halving)
    teacher_metrics: Mapped[dict[str, Any] | None] = mapped_column()  # from its first finished child
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_jobs_tenant_id_id", "tenant_id", "id"),
        Index("ix_jobs_status_heartbeat_at", "status", "heartbeat_at"),
        # A sweep runs each point at each rung exactly once, however many workers advance it.
        UniqueConstraint("sweep_id", "sweep_point", "sweep_rung"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stage: Mapped[str | None] = mapped_column(String(32))
    recipe: Mapped[dict[str, Any]] = mapped_column()
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column()  # last time a task message was sent
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_param: Mapped[str | None] = mapped_column(String(200))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)  # latest value of each metric
    quality_gate: Mapped[dict[str, Any] | None] = mapped_column()  # the verdict, once a gated run ends
    # What the finished student measured (bytes on disk, ratio, scores): kept for a rejected run too
    result: Mapped[dict[str, Any] | None] = mapped_column()
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    sweep_point: Mapped[int | None] = mapped_column(Integer)
    sweep_rung: Mapped[int | None] = mapped_column(Integer)
    result_model_id: Mapped[str | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL", use_alter=True)
    )
    worker_id: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    last_checkpoint_id: Mapped[str | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL", use_alter=True)
    )


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (
        CheckConstraint(_in("type", EVENT_TYPES), name="type"),
        Index("ix_job_events_job_id_id", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class JobMetric(Base):
    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_job_id_name_step", "job_id", "name", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_job_id_step", "job_id", "step"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(500))  # directory, relative to Settings.checkpoint_dir
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
