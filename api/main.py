"""The FastAPI application: routers, error handlers and middleware, assembled from settings.

Run with `dqbart api` (or `uvicorn --factory api.main:create_app`); OpenAPI lives at /docs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from api.admission import AdmissionControl
from api.metrics import ApiMetrics
from api.queue import JobQueue
from api.routes import datasets, health, jobs, models, reports, sweeps
from api.ui import install_ui
from serving import routes as serving_routes
from serving.app import create_app as create_serving_app
from store.blobs import LocalBlobStore
from store.db import session_factory
from store.scratch import sweep
from store.settings import Settings, get_settings
from web.errors import install_error_handlers
from web.ratelimit import RateLimits

DESCRIPTION = """Compress BART/mBART teachers by joint distillation and quantization (DQ-BART).

Upload a teacher (`POST /v1/models`) and a dataset (`POST /v1/datasets`), submit a recipe
(`POST /v1/jobs`), follow the job, then download the compressed model. Every request except
`/health` needs `Authorization: Bearer <key>` (`dqbart keys create --tenant NAME`).
The web dashboard is at `/ui`.
"""


log = logging.getLogger("dqbart.api")


async def _sweep_tmp(app: FastAPI) -> None:
    """Remove the temporaries that dead processes left (a kill -9 mid-upload), and count them."""
    try:
        swept = await to_thread.run_sync(sweep, app.state.settings.tmp_dir)
    except OSError:  # a full or read-only disk must not stop the API; the next sweep tries again
        log.exception("could not sweep %s", app.state.settings.tmp_dir)
        return
    app.state.metrics.swept(swept)
    if swept.entries:
        log.info("removed %d stale temporaries (%d bytes)", swept.entries, swept.bytes)


async def _sweep_periodically(app: FastAPI) -> None:
    while True:
        await asyncio.sleep(app.state.settings.TMP_SWEEP_SECONDS)
        await _sweep_tmp(app)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await _sweep_tmp(app)  # before the first request: a restart after a crash starts clean
    sweeper = asyncio.create_task(_sweep_periodically(app))
    yield
    sweeper.cancel()
    app.state.serving.close()


def _include_serving(app: FastAPI, settings: Settings) -> None:
    """Summaries and translations on the same /v1/models paths: the inference app's routes, with
    its service (model cache, batcher) and metrics hung on this app."""
    inference = create_serving_app(settings)
    app.state.serving = inference.state.serving
    app.state.metrics.include(inference.state.metrics_registry)
    app.include_router(serving_routes.router)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="dqbart", version="0.1.0", description=DESCRIPTION, lifespan=_lifespan)
    app.state.settings = settings
    app.state.sessions = session_factory(settings)
    app.state.blobs = LocalBlobStore(settings.artifact_dir)
    app.state.queue = JobQueue(settings)
    app.state.metrics = ApiMetrics()
    app.state.rate_limits = RateLimits(settings)
    install_error_handlers(app)
    app.middleware("http")(app.state.metrics.middleware)
    # Added last, so it runs first: a shed request costs no other middleware's work.
    app.add_middleware(AdmissionControl, max_in_flight=settings.max_in_flight,
                       on_shed=app.state.metrics.shed.inc)
    for module in (health, models, reports, datasets, jobs, sweeps):
        app.include_router(module.router)
    _include_serving(app, settings)
    install_ui(app)
    return app
