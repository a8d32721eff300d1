"""Prometheus metrics of the API: requests, latencies, and jobs by status (read at scrape time)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.models import JOB_STATUSES, Job
from store.scratch import Swept

_Next = Callable[[Request], Awaitable[Response]]


class ApiMetrics:
    """One registry per app, so that several apps (tests) in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("dqbart_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("dqbart_http_request_seconds", "Time to answer (to the first body byte)",
                                 ["method", "route"], registry=self.registry)
        self.jobs = Gauge("dqbart_jobs", "Jobs by status, all tenants", ["status"], registry=self.registry)
        self.shed = Counter("dqbart_http_shed", "Requests shed with 503 (over MAX_IN_FLIGHT)",
                            registry=self.registry)
        self.swept_entries = Counter("dqbart_tmp_swept_entries", "Temporaries of dead processes removed",
                                     registry=self.registry)
        self.swept_bytes = Counter("dqbart_tmp_swept_bytes", "Bytes freed by removing those temporaries",
                                   registry=self.registry)
        self._others: list[CollectorRegistry] = []

    def include(self, registry: CollectorRegistry) -> None:
        """Serve another part's registry (the inference service's) on the same /metrics."""
        self._others.append(registry)

    async def middleware(self, request: Request, call_next: _Next) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # The route template, never the raw path: ids in paths would explode the label set.
        label = getattr(route, "path", "unmatched")
        self.latency.labels(request.method, label).observe(time.perf_counter() - started)
        self.requests.labels(request.method, label, str(response.status_code)).inc()
        return response

    def swept(self, swept: Swept) -> None:
        self.swept_entries.inc(swept.entries)
        self.swept_bytes.inc(swept.bytes)

    def render(self, session: Session) -> bytes:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        counts = {status: count for status, count in rows}
        for status in JOB_STATUSES:
            self.jobs.labels(status).set(counts.get(status, 0))
        return b"".join(generate_latest(r) for r in [self.registry, *self._others])
