"""One Alembic history for SQLite and PostgreSQL: it round-trips and agrees with store.models."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from store.db import alembic_config, upgrade_database
from store.models import Base
from store.settings import Settings
from tests.services import scratch_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(DATA_DIR=tmp_path)
        return
    with scratch_postgres_database("dqb_migrations") as url:
        yield Settings(DATA_DIR=tmp_path, DATABASE_URL=url)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trips(settings: Settings) -> None:
    upgrade_database(settings)
    assert _tables(settings.DATABASE_URL) == set(Base.metadata.tables)
    command.downgrade(alembic_config(settings), "base")
    assert _tables(settings.DATABASE_URL) == set()
    upgrade_database(settings)
    assert _tables(settings.DATABASE_URL) == set(Base.metadata.tables)


def test_autogenerate_finds_no_difference_between_models_and_migrations(settings: Settings) -> None:
    upgrade_database(settings)
    engine = create_engine(settings.DATABASE_URL)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def _insert_job(conn: Connection, status: str) -> None:
    conn.execute(text("INSERT INTO tenants (id, name, created_at) VALUES ('ten_1', 't', :now)"),
                 {"now": datetime.now(UTC)})
    conn.execute(text("INSERT INTO jobs (id, tenant_id, status, recipe, progress_step, progress_total, "
                      "created_at, attempts, metrics, cancel_requested) VALUES ('job_1', 'ten_1', :status, "
                      "'{}', 0, 0, :now, 1, '{}', false)"), {"status": status, "now": datetime.now(UTC)})


def test_the_status_check_takes_rejected_jobs_and_nothing_unknown(settings: Settings) -> None:
    upgrade_database(settings)
    engine = create_engine(settings.DATABASE_URL)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _insert_job(conn, "exploded")
        with engine.begin() as conn:
            _insert_job(conn, "rejected")
        command.downgrade(alembic_config(settings), "0001")
        with engine.connect() as conn:  # the older schema has no `rejected`: it reads as failed
            assert conn.execute(text("SELECT status FROM jobs")).scalar_one() == "failed"
        upgrade_database(settings)
    finally:
        engine.dispose()
