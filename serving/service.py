"""The inference service one app instance owns: model cache, batcher, metrics, store access."""

from __future__ import annotations

import asyncio
import functools
import gc
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import torch
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from compression.runtime import Form, resolve_device
from serving.batcher import Arrival, Batcher, BatchLimits, Timing
from serving.cache import Loaded, ModelCache
from serving.engines import DEFAULT_BUDGET, Engine
from serving.generation import Generated, GenerationItem, batch_key, encode, run_batch
from serving.loading import EngineSettings, LoadedModel, ModelRecord, find_model, load_model
from serving.metrics import ServingMetrics
from serving.schemas import GenerateParams, GenerationParameters, check_lengths, resolve_params
from store import tenants
from store.blobs import BlobStore
from store.tenants import hash_key
from web.ratelimit import RateLimits

# Auth and model lookups are remembered this long: a burst of requests then reaches the batcher
# together instead of queueing on the database one by one.
LOOKUP_TTL_S = 2.0


class UnknownKey(Exception):
    """No tenant owns this API key (missing, wrong or revoked)."""


@dataclass(frozen=True)
class InferenceResult:
    outputs: list[Generated]
    queue_s: float
    inference_s: float
    batch_size: int


def stream_threads(cores: int, streams: int) -> int:
    """Torch threads for each stream's batches: its share of the cores, whatever the others do.

    A batch running alone once took every core. In the server that was slower, not faster: each
    inference thread that runs wider than one thread gets an OpenMP team of its own, and with more
    team threads than cores libgomp stops spinning between parallel regions, so each of a decoding
    step's thousands of small ops waits for its helper thread to wake (AVX-512 host, bart-base
    shape, one input: 0.36-0.44 s on two threads in an inference thread, 0.25 s on one).
    """
    return max(1, cores // streams)


class InferenceService:
    def __init__(self, *, sessions: sessionmaker[Session], blobs: BlobStore, cache_root: Path,
                 limits: BatchLimits, cache_budget_bytes: int, registry: CollectorRegistry,
                 rate_limits: RateLimits, device: str = "auto", form: Form = "auto",
                 engine: Engine = "auto", faithfulness_budget: float = DEFAULT_BUDGET) -> None:
        self.sessions = sessions
        self.rate_limits = rate_limits  # per-key inference rates, wherever the routes are hosted
        self.blobs = blobs
        self.cache_root = cache_root
        self.device = device
        self.form: Form = form
        self.metrics = ServingMetrics(registry)
        self.cache: ModelCache[LoadedModel] = ModelCache(
            self._load, cache_budget_bytes, on_load=self._loaded, on_evict=self._evicted)
        self.batcher: Batcher[GenerationItem, Generated] = Batcher(
            self._run_batch, limits, on_depth=self.metrics.queue_depth.set,
            on_batch=self.metrics.batch_size.observe)
        # The torch threads this process was given (OMP_NUM_THREADS, else every core), shared by
        # the streams.
        self._cpu_cores = torch.get_num_threads() if resolve_device(device) == "cpu" else 0
        self.engines = EngineSettings(engine, faithfulness_budget, streams=limits.streams,
                                      cores=self._cpu_cores)
        self._records: dict[str, ModelRecord] = {}
        self._lookups: dict[tuple[str, str], tuple[float, ModelRecord]] = {}
        self._lookups_in_flight: dict[tuple[str, str], asyncio.Future[ModelRecord | None]] = {}

    def _run_batch(self, key: Hashable, items: list[GenerationItem]) -> list[Generated]:
        """`run_batch` on its stream's share of the cores, where several streams share a CPU host
        (the setting is the calling inference thread's own)."""
        streams = self.batcher.limits.streams
        if streams > 1 and self._cpu_cores:
            torch.set_num_threads(stream_threads(self._cpu_cores, streams))
        return run_batch(key, items)

    async def record_for(self, *, key: str, model_id: str) -> ModelRecord | None:
        """The model if the API key's tenant owns it; raises UnknownKey for a missing or revoked key.

        Hits are remembered for LOOKUP_TTL_S (no database work on the hot path), so a revoked key
        stops working within that time. Concurrent misses for one key and model share one lookup:
        a burst that found the entry expired once queued 16 lookups on the database, and the
        batcher split it (4 requests, then 12 read 300 ms later).
        """
        slot = (hash_key(key), model_id)
        found = self._lookups.get(slot)
        if found is not None and found[0] >= time.monotonic():
            return found[1]
        pending = self._lookups_in_flight.get(slot)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(run_in_threadpool(self._lookup, key, model_id))
            self._lookups_in_flight[slot] = pending
            pending.add_done_callback(functools.partial(self._landed, slot))
        return await asyncio.shield(pending)  # a caller going away does not cancel the others' lookup

    def _landed(self, slot: tuple[str, str], done: asyncio.Future[ModelRecord | None]) -> None:
        if self._lookups_in_flight.get(slot) is done:
            del self._lookups_in_flight[slot]

    def _lookup(self, key: str, model_id: str) -> ModelRecord | None:
        with self.sessions() as session:
            tenant = tenants.tenant_for_key(session, key=key)
            if tenant is None:
                raise UnknownKey()
            record = find_model(session, tenant_id=tenant.id, model_id=model_id)
        if record is not None:
            self._lookups[(hash_key(key), model_id)] = (time.monotonic() + LOOKUP_TTL_S, record)
        return record

    async def model(self, record: ModelRecord) -> LoadedModel:
        self._records[record.id] = record
        return await self.cache.get(record.id)

    def resolve(self, loaded: LoadedModel, parameters: GenerationParameters) -> GenerateParams:
        params = resolve_params(parameters, loaded.generation_defaults)
        check_lengths(params, loaded.max_positions)  # loaded.model is None under CTranslate2
        return params

    async def generate(self, loaded: LoadedModel, texts: list[str], parameters: GenerationParameters,
                       arrival: Arrival | None = None) -> InferenceResult:
        params = self.resolve(loaded, parameters)
        ids = encode(loaded, texts, parameters.truncates)
        items = [GenerationItem(loaded, params, seq) for seq in ids]
        results: list[tuple[Generated, Timing]] = await self.batcher.submit(
            batch_key(loaded, params), items, arrival)
        outputs = [generated for generated, _ in results]
        self.metrics.generated_tokens.inc(sum(g.tokens for g in outputs))
        timings = [timing for _, timing in results]
        return InferenceResult(
            outputs=outputs,
            queue_s=max(t.queue_s for t in timings),
            inference_s=max(t.inference_s for t in timings),
            batch_size=max(t.batch_size for t in timings),
        )

    def close(self) -> None:
        self.batcher.close()
        self.cache.close()

    def _load(self, model_id: str) -> Loaded[LoadedModel]:
        loaded = load_model(self._records[model_id], self.blobs, self.cache_root, device=self.device,
                            form=self.form, engines=self.engines)
        return Loaded(loaded, loaded.bytes)

    def _loaded(self, key: str, loaded: Loaded[LoadedModel]) -> None:
        self.metrics.model_loads.inc()
        self.metrics.cache_bytes.set(self.cache.used_bytes)
        settle_heap()

    def _evicted(self, key: str) -> None:
        self.metrics.model_evictions.inc()
        self.metrics.cache_bytes.set(self.cache.used_bytes)


def settle_heap() -> None:
    """Collect garbage now and exempt what lives on (loaded models, libraries) from later full
    collections. A full collection scans every tracked object while holding the GIL; with a
    bart-base-shaped model loaded one took 243 ms during a burst of requests, stalling the event
    loop so that the batcher split the burst (3, 8 and 5 in place of 8 and 8) for the rest of a
    closed-loop load. Called after each load (rare, and slow anyway): models evicted by it have
    left the cache by then, so their reference cycles are collected here, not kept frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()

