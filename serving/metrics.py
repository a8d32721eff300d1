"""Prometheus metrics of the inference app, registered in a registry the app factory owns.

The main API exposes them by passing its registry to `create_app` or by appending
`generate_latest(app.state.metrics_registry)` to its own /metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.request_duration = Histogram(
            "dqbart_inference_request_duration_seconds", "Time from request to response",
            ["route", "status"], buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram(
            "dqbart_inference_batch_size", "Inputs per generate call (its count = generate calls)",
            buckets=BATCH_BUCKETS, registry=registry)
        self.queue_depth = Gauge(
            "dqbart_inference_queue_depth", "Inputs waiting for a batch", registry=registry)
        self.generated_tokens = Counter(
            "dqbart_inference_generated_tokens", "Tokens generated, all models", registry=registry)
        self.model_loads = Counter(
            "dqbart_inference_model_loads", "Models loaded into the cache", registry=registry)
        self.model_evictions = Counter(
            "dqbart_inference_model_evictions", "Models evicted from the cache", registry=registry)
        self.cache_bytes = Gauge(
            "dqbart_inference_cache_bytes", "Bytes of the models held in the cache", registry=registry)
