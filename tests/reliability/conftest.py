"""Installations for fault tests: embedded (SQLite + filesystem broker) or production (our own
PostgreSQL + our own Redis, which the tests may kill and restart)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from store.db import get_engine, upgrade_database
from store.settings import Settings
from tests.reliability.servers import OwnPostgres, OwnRedis, own_postgres, own_redis
from tests.worker.conftest import Installation, make_installation
from worker.app import make_celery
from worker.names import TASK_RUN_JOB

MODES = ["embedded", pytest.param("production", marks=pytest.mark.services)]


@dataclass
class Deployment:
    installation: Installation
    postgres: OwnPostgres | None
    redis: OwnRedis | None
    folder: Path

    @property
    def settings(self) -> Settings:
        return self.installation.settings

    def send(self, job_id: str) -> None:
        app = make_celery(self.settings)
        try:
            app.send_task(TASK_RUN_JOB, args=[job_id])
        finally:
            app.close()


@pytest.fixture
def deployment(request: pytest.FixtureRequest, tmp_path: Path, tiny_teacher_dir: Path,
               sample_records: list[dict[str, str]]) -> Iterator[Deployment]:
    mode = getattr(request, "param", "embedded")
    if mode == "embedded":
        settings = Settings(DATA_DIR=tmp_path / "data")
        upgrade_database(settings)
        yield Deployment(make_installation(settings, tiny_teacher_dir, sample_records, tmp_path), None, None,
                         tmp_path)
        return
    with own_postgres() as postgres, own_redis() as redis:
        settings = Settings(DATA_DIR=tmp_path / "data", DATABASE_URL=postgres.url, BROKER_URL=redis.url)
        upgrade_database(settings)
        try:
            yield Deployment(make_installation(settings, tiny_teacher_dir, sample_records, tmp_path),
                             postgres, redis, tmp_path)
        finally:
            get_engine(settings.DATABASE_URL).dispose()
