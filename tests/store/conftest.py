from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from store.db import session_scope
from store.models import Tenant
from store.settings import Settings
from store.tenants import create_tenant
from tests.services import migrated_database


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db_settings(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One migrated database per backend per test module; tests keep apart by their own tenants."""
    with migrated_database(request.param, tmp_path_factory.mktemp("data")) as settings:
        yield settings


@pytest.fixture
def session(db_settings: Settings) -> Iterator[Session]:
    with session_scope(db_settings) as session:
        yield session


@pytest.fixture
def tenant(session: Session, request: pytest.FixtureRequest) -> Tenant:
    return create_tenant(session, name=f"{request.node.name}-{id(request)}")
