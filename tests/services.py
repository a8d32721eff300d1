"""Access to the PostgreSQL and Redis servers that some tests need.

Tests that use them carry `@pytest.mark.services`. Where a server is unreachable they skip with
the reason, unless DQB_REQUIRE_SERVICES=1 (CI), where they fail instead.
Override the addresses with DQB_TEST_POSTGRES_URL (a database that may be used to create and
drop scratch databases) and DQB_TEST_REDIS_URL.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from store.db import get_engine, upgrade_database
from store.settings import Settings

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def postgres_url() -> str:
    return os.environ.get("DQB_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def redis_url() -> str:
    return os.environ.get("DQB_TEST_REDIS_URL", DEFAULT_REDIS_URL)


def services_required() -> bool:
    return os.environ.get("DQB_REQUIRE_SERVICES") == "1"


def require_or_skip(available: bool, reason: str) -> None:
    """Skip (or, with DQB_REQUIRE_SERVICES=1, fail) the calling test when a server is missing."""
    if available:
        return
    if services_required():
        pytest.fail(f"{reason} (DQB_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(f"{reason}; start it, or set DQB_REQUIRE_SERVICES=1 to make this a failure")


def _port_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+psycopg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> str:
    """The test server's URL, or skip/fail the calling test."""
    url = postgres_url()
    where = make_url(url).render_as_string()
    require_or_skip(_port_open(url, 5432), f"PostgreSQL is not reachable at {where}")
    return url


def require_redis() -> str:
    """The test Redis URL, or skip/fail the calling test."""
    url = redis_url()
    require_or_skip(_port_open(url, 6379), f"Redis is not reachable at {url}")
    return url


@contextmanager
def scratch_postgres_database(prefix: str = "dqb_test") -> Iterator[str]:
    """Create a fresh, uniquely named database on the test server; yield its URL; drop it."""
    admin_url = make_url(require_postgres())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def migrated_database(backend: str, data_dir: Path) -> Iterator[Settings]:
    """Settings for an upgraded database of the given backend ("sqlite" under data_dir, or
    "postgresql": a scratch database, dropped afterwards)."""
    if backend == "sqlite":
        settings = Settings(DATA_DIR=data_dir)
        upgrade_database(settings)
        yield settings
        return
    with scratch_postgres_database() as url:
        settings = Settings(DATA_DIR=data_dir, DATABASE_URL=url)
        upgrade_database(settings)
        try:
            yield settings
        finally:
            get_engine(url).dispose()  # the scratch database cannot be dropped while pooled connections live
