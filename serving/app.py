"""The inference ASGI app: `uvicorn --factory serving.app:create_app` on an inference host.

Everything the app uses (model cache, batcher, metrics registry) is made here, per app, and
hangs off `app.state`; the batcher starts on the first request, because a mounted app receives
no lifespan events. A host app either mounts this app, or (as the main API does in embedded
mode) includes `serving.routes.router` and sets its own `state.serving` to this app's
`state.serving`; either way it should call `state.serving.close()` on shutdown and expose
`state.metrics_registry` on its /metrics.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from compression.runtime import Form, resolve_device
from serving import routes
from serving.batcher import BatchLimits
from serving.service import InferenceService
from store.blobs import LocalBlobStore
from store.db import session_factory
from store.settings import Settings, get_settings
from web.errors import install_error_handlers
from web.ratelimit import RateLimits


def create_app(settings: Settings | None = None, *, registry: CollectorRegistry | None = None,
               limits: BatchLimits | None = None, cache_budget_bytes: int | None = None,
               form: Form = "auto") -> FastAPI:
    settings = settings or get_settings()
    registry = registry if registry is not None else CollectorRegistry()
    service = InferenceService(
        sessions=session_factory(settings),
        blobs=LocalBlobStore(settings.artifact_dir),
        cache_root=settings.cache_dir / "serving",
        limits=limits or BatchLimits(settings.SERVING_MAX_BATCH_SIZE, settings.SERVING_MAX_WAIT_MS,
                                     settings.SERVING_MAX_QUEUE, streams=inference_streams(settings)),
        cache_budget_bytes=cache_budget_bytes or settings.SERVING_CACHE_BYTES,
        registry=registry,
        rate_limits=RateLimits(settings),
        device=settings.DEVICE,
        form=form,
        engine=settings.SERVING_ENGINE,
        faithfulness_budget=settings.SERVING_FAITHFULNESS_BUDGET,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="dqbart inference", version="0.1.0", lifespan=lifespan,
                  description="Summaries and translations from compressed models (Hugging Face schema).")
    app.state.settings = settings
    app.state.serving = service
    app.state.metrics_registry = registry
    install_error_handlers(app)
    app.middleware("http")(_mark_arrivals(service))
    app.include_router(routes.router)
    app.add_api_route("/metrics", _metrics(registry), methods=["GET"], include_in_schema=False)
    app.add_api_route("/health", _health, methods=["GET"], include_in_schema=False)
    return app


def inference_streams(settings: Settings) -> int:
    """`SERVING_STREAMS`, or by default one stream per usable core on a CPU host, one on a GPU."""
    if settings.SERVING_STREAMS > 0:
        return settings.SERVING_STREAMS
    return len(os.sched_getaffinity(0)) if resolve_device(settings.DEVICE) == "cpu" else 1


def _mark_arrivals(service: InferenceService) -> Callable[[Request, Callable[[Request], Awaitable[Response]]],
                                                    Awaitable[Response]]:
    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method != "POST":
            return await call_next(request)
        # Counted from the first byte: a batch waits briefly for requests still being read.
        with service.batcher.arriving() as arrival:
            request.state.arrival = arrival
            return await call_next(request)

    return middleware


def _metrics(registry: CollectorRegistry) -> Callable[[], Response]:
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def _health() -> dict[str, str]:
    return {"status": "ok"}
