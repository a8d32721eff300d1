"""Request dependencies: settings, database sessions, the blob store, and the caller's tenant.

A route takes its database connection only inside the worker thread that uses it: it opens a
session with `with sessions() as session:` and the block gives the connection back before the
thread is released. A session held by the request instead (a yield dependency) kept its connection
until the answer was serialized, which needs a thread of its own: a burst of 300 requests then
wedged the API, requests holding every pooled connection waiting for threads while every thread
waited for a connection."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from store import tenants
from store.blobs import BlobStore
from store.models import Tenant
from store.settings import Settings
from web.auth import PresentedKey, unknown_key


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def get_blobs(request: Request) -> BlobStore:
    return request.app.state.blobs


SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]


def current_tenant(sessions: SessionsDep, key: PresentedKey) -> Tenant:
    with sessions() as session:
        tenant = tenants.tenant_for_key(session, key=key)
    if tenant is None:
        raise unknown_key()
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]


def upload_rate(request: Request, tenant: TenantDep, key: PresentedKey) -> None:
    """Count an upload against the key's rate; after the key check (`tenant`), before the body."""
    request.app.state.rate_limits.hit("uploads", key)


UploadRateDep = Annotated[None, Depends(upload_rate)]
