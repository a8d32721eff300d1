"""Operational endpoints: liveness with a database check (no key), Prometheus metrics (with a key)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import SessionsDep, TenantDep
from api.schemas import ErrorResponse, Health
from web.errors import ApiError

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, responses={503: {"model": ErrorResponse}})
def health(sessions: SessionsDep) -> Health:
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        message = f"the database does not answer: {exc.__class__.__name__}"
        raise ApiError(503, "database_unavailable", message) from exc
    return Health(status="ok", database="ok")


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request, sessions: SessionsDep, tenant: TenantDep) -> Response:
    """Prometheus text; needs a key like every route but /health (give the scraper its own tenant)."""
    with sessions() as session:
        body = request.app.state.metrics.render(session)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
