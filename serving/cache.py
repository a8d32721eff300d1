"""Loaded models kept in memory: least recently used first out, within a budget in bytes.

A model is loaded once even when many requests ask for it at the same moment: the first caller
starts the load in the loader thread and every other caller waits on the same future. A failed
load is not kept, so the next request tries again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

Value = TypeVar("Value")

log = logging.getLogger("dqbart.serving")


@dataclass(frozen=True)
class Loaded(Generic[Value]):
    value: Value
    bytes: int


class ModelCache(Generic[Value]):
    """`await get(key)` returns the loaded value; `loader(key)` runs in a worker thread."""

    def __init__(self, loader: Callable[[str], Loaded[Value]], budget_bytes: int,
                 on_load: Callable[[str, Loaded[Value]], None] | None = None,
                 on_evict: Callable[[str], None] | None = None) -> None:
        if budget_bytes <= 0:
            raise ValueError("budget_bytes must be positive")
        self._loader = loader
        self.budget_bytes = budget_bytes
        self._on_load = on_load or (lambda key, loaded: None)
        self._on_evict = on_evict or (lambda key: None)
        self._entries: OrderedDict[str, Loaded[Value]] = OrderedDict()
        self._loading: dict[str, Future[Loaded[Value]]] = {}
        self._lock = threading.Lock()
        # Made on first use, so a cache closed by one app lifespan works again in the next.
        self._executor: ThreadPoolExecutor | None = None

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(entry.bytes for entry in self._entries.values())

    def keys(self) -> list[str]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def peek(self, key: str) -> Loaded[Value] | None:
        """The cached entry without loading it or touching its recency."""
        with self._lock:
            return self._entries.get(key)

    async def get(self, key: str) -> Value:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry.value
            future = self._loading.get(key)
            if future is None:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
                future = self._executor.submit(self._load, key)
                self._loading[key] = future
        return (await asyncio.wrap_future(future)).value

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
            self._entries.clear()

    def _load(self, key: str) -> Loaded[Value]:
        try:
            loaded = self._loader(key)
        except BaseException:
            with self._lock:
                self._loading.pop(key, None)
            raise
        with self._lock:
            self._entries[key] = loaded
            self._loading.pop(key, None)
            evicted = self._evict_over_budget(keep=key)
        self._on_load(key, loaded)
        for old in evicted:
            self._on_evict(old)
        return loaded

    def _evict_over_budget(self, keep: str) -> list[str]:
        """Drop least recently used entries until the rest fit; the newest entry always stays."""
        evicted: list[str] = []
        total = sum(entry.bytes for entry in self._entries.values())
        for key in list(self._entries):
            if total <= self.budget_bytes:
                break
            if key == keep:
                continue
            total -= self._entries.pop(key).bytes
            evicted.append(key)
        if total > self.budget_bytes:
            log.warning("model %s alone (%d bytes) exceeds the cache budget of %d bytes",
                        keep, total, self.budget_bytes)
        return evicted
