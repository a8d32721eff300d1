"""A burst far wider than the worker threads and the connection pool completes: no request waits for
a thread while holding a connection that the threads are waiting for (once, 300 requests wedged the
API for minutes). Run with anyio's default thread limit, which the API no longer raises."""

from __future__ import annotations

import asyncio
import time

import httpx
from anyio import to_thread

from api.main import create_app
from store.settings import Settings
from tests.api.conftest import Headers

BURST = 300


async def _burst(settings: Settings, auth: Headers) -> list[int]:
    app = create_app(settings.model_copy(update={"MAX_IN_FLIGHT": 2 * BURST}))  # admit every request
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=120) as client:
        assert to_thread.current_default_thread_limiter().total_tokens < BURST
        responses = await asyncio.gather(*(client.get("/v1/jobs", headers=auth) for _ in range(BURST)))
    return [r.status_code for r in responses]


def test_a_burst_of_300_requests_is_answered_without_waiting_on_the_pool(api_settings: Settings,
                                                                         auth: Headers) -> None:
    started = time.monotonic()
    statuses = asyncio.run(_burst(api_settings, auth))
    assert statuses == [200] * BURST
    # A wedge ends only when the pool's 30 s checkout timeout fails requests with 500.
    assert time.monotonic() - started < 30
