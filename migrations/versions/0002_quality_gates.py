"""quality gates: the `rejected` job status and the gate's verdict on jobs and models

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "user_error")
_WITH_REJECTED = (*_STATUSES, "rejected")


def _in(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


# 0001 named the check through the naming convention a second time; the name store.models gives
# it is ck_jobs_status, and this revision settles on that one.
_OLD_NAME, _NAME = "ck_jobs_ck_jobs_status", "ck_jobs_status"


def _status_check(drop: str, create: str, values: tuple[str, ...]) -> None:
    # SQLite cannot alter a constraint: batch mode copies the table with the new one.
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f(drop), type_="check")
        batch.create_check_constraint(op.f(create), _in(values))


def upgrade() -> None:
    for table in ("jobs", "models"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("quality_gate", sa.JSON(), nullable=True))
    _status_check(_OLD_NAME, _NAME, _WITH_REJECTED)


def downgrade() -> None:
    # The older schema has no `rejected`: such a job reads as failed, its error code still says why.
    op.execute("UPDATE jobs SET status = 'failed' WHERE status = 'rejected'")
    _status_check(_NAME, _OLD_NAME, _STATUSES)
    for table in ("models", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("quality_gate")
