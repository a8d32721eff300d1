"""sweeps: the sweeps table, and on jobs their sweep, point and rung, and the student's result

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE",
                                                            name=op.f("fk_sweeps_tenant_id_tenants")),
                  nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("rung", sa.Integer(), nullable=False),
        sa.Column("teacher_metrics", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'cancelled')", name=op.f("ck_sweeps_status")),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name=op.f("uq_sweeps_tenant_id_idempotency_key")),
    )
    op.create_index(op.f("ix_sweeps_tenant_id_id"), "sweeps", ["tenant_id", "id"])
    op.create_index(op.f("ix_sweeps_status"), "sweeps", ["status"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("sweep_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("sweep_point", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sweep_rung", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_jobs_sweep_id_sweeps"), "sweeps", ["sweep_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_unique_constraint(op.f("uq_jobs_sweep_id_sweep_point_sweep_rung"),
                                       ["sweep_id", "sweep_point", "sweep_rung"])


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE sweep_id IS NOT NULL")  # the older schema cannot hold children
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("uq_jobs_sweep_id_sweep_point_sweep_rung"), type_="unique")
        batch.drop_constraint(op.f("fk_jobs_sweep_id_sweeps"), type_="foreignkey")
        for column in ("sweep_rung", "sweep_point", "sweep_id", "result"):
            batch.drop_column(column)
    op.drop_index(op.f("ix_sweeps_status"), "sweeps")
    op.drop_index(op.f("ix_sweeps_tenant_id_id"), "sweeps")
    op.drop_table("sweeps")
