"""What creating a job and creating a sweep share: the typed-recipe route's 400s, the
Idempotency-Key header, and the tenant's cap on active jobs (a sweep's children count against it)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from api.recipes import recipe_error
from store import jobs
from store.models import Tenant
from store.settings import Settings
from web.errors import ApiError, invalid

IdempotencyKey = Annotated[str | None, Header(max_length=200, description="a replay returns the first one")]


class RecipeRoute(APIRoute):
    """The body is typed (so /docs shows every field, default and bound); an error inside it answers
    400 naming the field, as the checks against the catalog do."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise recipe_error(exc) or exc from None

        return route


def check_idempotency_key(key: str | None) -> None:
    if key is not None and not key.strip():
        # An empty key would be one key shared by every request that sends it empty.
        raise invalid("Idempotency-Key", "the Idempotency-Key header is empty; send a key or leave the "
                                         "header out")


def check_active_limit(session: Session, settings: Settings, tenant: Tenant, *, replay: bool) -> None:
    """The tenant's cap on queued + running jobs: a new job or sweep needs a free slot (a replayed
    Idempotency-Key makes nothing new)."""
    limit = tenant.max_concurrent_jobs
    if limit is None:
        limit = settings.MAX_CONCURRENT_JOBS
    if limit is None or replay:
        return
    if jobs.count_active_jobs(session, tenant_id=tenant.id) >= limit:
        raise ApiError(429, "too_many_active_jobs",
                       f"{limit} jobs are already queued or running; wait for one to finish or cancel one")
