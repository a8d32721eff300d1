from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.cache import Loaded, ModelCache


class CountingLoader:
    """Loads "models" of a given size slowly and counts the loads per key."""

    def __init__(self, sizes: dict[str, int], delay_s: float = 0.0) -> None:
        self.sizes = sizes
        self.delay_s = delay_s
        self.loads: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, key: str) -> Loaded[str]:
        with self.lock:
            self.loads[key] = self.loads.get(key, 0) + 1
        time.sleep(self.delay_s)
        if key == "broken":
            raise OSError("unreadable artifact")
        return Loaded(f"model {key}", self.sizes[key])


def test_concurrent_first_requests_load_once() -> None:
    loader = CountingLoader({"a": 10}, delay_s=0.2)
    cache = ModelCache(loader, budget_bytes=100)

    async def scenario() -> list[str]:
        return await asyncio.gather(*(cache.get("a") for _ in range(10)))

    assert asyncio.run(scenario()) == ["model a"] * 10
    assert loader.loads == {"a": 1}
    cache.close()


def test_the_least_recently_used_model_is_evicted_over_budget() -> None:
    loader = CountingLoader({"a": 40, "b": 40, "c": 40})
    evicted: list[str] = []
    cache = ModelCache(loader, budget_bytes=100, on_evict=evicted.append)

    async def scenario() -> None:
        await cache.get("a")
        await cache.get("b")
        await cache.get("a")  # a is now the most recently used
        await cache.get("c")

    asyncio.run(scenario())
    assert evicted == ["b"] and cache.keys() == ["a", "c"] and cache.used_bytes == 80
    cache.close()


def test_an_evicted_model_is_loaded_again_on_demand() -> None:
    loader = CountingLoader({"a": 60, "b": 60})
    cache = ModelCache(loader, budget_bytes=100)

    async def scenario() -> None:
        for key in ("a", "b", "a"):
            await cache.get(key)

    asyncio.run(scenario())
    assert loader.loads == {"a": 2, "b": 1} and cache.keys() == ["a"]
    cache.close()


def test_a_model_larger_than_the_budget_is_still_served_alone() -> None:
    cache = ModelCache(CountingLoader({"a": 10, "big": 500}), budget_bytes=100)

    async def scenario() -> str:
        await cache.get("a")
        return await cache.get("big")

    assert asyncio.run(scenario()) == "model big" and cache.keys() == ["big"]
    cache.close()


def test_a_failed_load_is_not_kept() -> None:
    loader = CountingLoader({})
    cache = ModelCache(loader, budget_bytes=100)
    for _ in range(2):
        with pytest.raises(OSError):
            asyncio.run(cache.get("broken"))
    assert loader.loads == {"broken": 2} and cache.keys() == []
    cache.close()
