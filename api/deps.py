"""Request dependencies: settings, a database session, the blob store, and the caller's tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ApiError
from store import tenants
from store.blobs import BlobStore
from store.models import Tenant
from store.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer dqb_...`")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_blobs(request: Request) -> BlobStore:
    return request.app.state.blobs


# The session closes when the route function returns, before a (possibly long) download streams.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]


def current_tenant(session: SessionDep,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Tenant:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(401, "invalid_api_key", "missing API key: send `Authorization: Bearer <key>`",
                       headers=challenge)
    tenant = tenants.tenant_for_key(session, key=credentials.credentials)
    if tenant is None:
        raise ApiError(401, "invalid_api_key", "unknown or revoked API key", headers=challenge)
    # End the read transaction now: an upload may stream for minutes, and its connection should
    # not sit idle in a transaction meanwhile (rows stay usable: sessions do not expire on commit).
    session.commit()
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]


def upload_rate(request: Request, tenant: TenantDep,
                credentials: Annotated[HTTPAuthorizationCredentials, Depends(_bearer)]) -> None:
    """Count an upload against the key's rate; after the key check (`tenant`), before the body."""
    request.app.state.rate_limits.hit("uploads", credentials.credentials)


UploadRateDep = Annotated[None, Depends(upload_rate)]
