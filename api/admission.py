"""Admission control: past a bound on requests being answered at once, shed the excess at once
with 503 in the error shape and a Retry-After, so that the accepted requests stay fast.

Without it, a burst over the sustainable rate queued every request on the threads and the
database pool: at twice that rate every request became slow (p99 5 s) and many failed, some with
uvicorn's plain-text 503. A request holds its slot until its answer starts; a download then
streams without one. The inference routes are exempt (their batcher sheds its own queue with
429), and so is /health (an orchestrator must not restart a process for being busy).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.errors import error_response

RETRY_AFTER_S = 1


def exempt_path(path: str) -> bool:
    return path == "/health" or path.endswith(("/summarize", "/translate"))


class AdmissionControl:
    """Pure ASGI middleware; one event loop per process, so a plain counter is exact."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int, on_shed: Callable[[], None]) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.on_shed = on_shed
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or exempt_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.on_shed()
            message = (f"the service is answering {self.max_in_flight} requests already; "
                       f"retry after {RETRY_AFTER_S} s")
            response = error_response(503, "overloaded", message, None, {"Retry-After": str(RETRY_AFTER_S)})
            await response(scope, receive, send)
            return
        self.in_flight += 1
        held = True

        async def send_and_release(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and held:
                held = False
                self.in_flight -= 1
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            if held:
                self.in_flight -= 1
