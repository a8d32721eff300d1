"""Per-key request rates for the expensive routes (uploads, inference), with the `limits` library.

A moving window per API key (the key's SHA-256, never the key itself); the storage is in memory
by default (one API process) or Redis (`DQB_RATE_LIMIT_STORAGE_URL`), which several API workers
then share. Over the rate: 429 `rate_limited` with a Retry-After.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse, storage, strategies

from store.settings import Settings
from store.tenants import hash_key
from web.errors import ApiError


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        backend = storage.storage_from_string(settings.RATE_LIMIT_STORAGE_URL)
        self._limiter = strategies.MovingWindowRateLimiter(backend)
        self._items = {"uploads": settings.UPLOAD_RATE_LIMIT, "inference": settings.INFERENCE_RATE_LIMIT}
        self._parsed = {kind: parse(rate) for kind, rate in self._items.items() if rate}

    def hit(self, kind: str, key: str) -> None:
        """Count one request of `kind` for `key`; raise 429 when it is over the rate."""
        item = self._parsed.get(kind)
        if item is None:  # the rate for `kind` is switched off
            return
        identity = hash_key(key)
        if not self._limiter.hit(item, kind, identity):
            raise _too_many(item, kind, self._limiter.get_window_stats(item, kind, identity).reset_time)


def _too_many(item: RateLimitItem, kind: str, reset_time: float) -> ApiError:
    retry_after = max(1, math.ceil(reset_time - time.time()))
    message = f"this API key is over its rate for {kind} ({item}); retry after {retry_after} s"
    return ApiError(429, "rate_limited", message, None, {"Retry-After": str(retry_after)})
