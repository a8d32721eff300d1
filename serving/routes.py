"""Inference routes: summarize, translate, and what the service knows about a model (/info)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from compression.errors import ModelError
from serving.batcher import QueueFull
from serving.generation import InputTooLong
from serving.loading import ArtifactCorrupt, LoadedModel, ModelRecord
from serving.schemas import InferenceRequest, LengthBeyondModel, SummaryText, TranslationText
from serving.service import InferenceResult, InferenceService, UnknownKey
from web.auth import PresentedKey, unknown_key
from web.errors import ApiError, not_found

router = APIRouter(prefix="/v1/models", tags=["inference"])

_OUTPUT_FIELD = {"summarization": "summary_text", "translation": "translation_text"}
# Every answer from a gated model says how it fared, so a caller of a flagged model learns it
# with each output (a rejected job publishes no model to serve).
GATE_HEADER = "X-DQB-Quality-Gate"
_GATE_VALUE = {"passed": "passed", "flagged": "failed"}


def _service(request: Request) -> InferenceService:
    return request.app.state.serving


async def _api_key(request: Request, model_id: str, key: PresentedKey) -> str:
    """The bearer key, checked against the store (store.tenants) before the body is read, so a
    bad key answers 401 whatever the request holds. The lookup is cached for the route."""
    await _record(_service(request), key, model_id)
    return key


ApiKey = Annotated[str, Depends(_api_key)]


async def _record(service: InferenceService, key: str, model_id: str) -> ModelRecord | None:
    try:
        return await service.record_for(key=key, model_id=model_id)
    except UnknownKey:
        raise unknown_key() from None


async def _loaded(request: Request, key: str, model_id: str, task: str | None) -> LoadedModel:
    service = _service(request)
    record = await _record(service, key, model_id)
    if record is None:
        raise not_found("model", model_id)
    if task is not None and record.task not in (None, task):
        raise ApiError(400, "unsupported_task", f"model {model_id!r} is a {record.task} model", "id")
    try:
        return await service.model(record)
    except ArtifactCorrupt as exc:
        raise ApiError(500, "artifact_corrupt", f"model {model_id!r} cannot be served: {exc}") from None
    except ModelError as exc:  # not the caller's input: the stored artifact is unusable
        raise ApiError(500, "artifact_unreadable", f"model {model_id!r} cannot be served: {exc}") from None


@contextmanager
def _observed(service: InferenceService, request: Request) -> Iterator[None]:
    """Request duration by route template and status, however the router is hosted."""
    started, status = time.perf_counter(), 500
    try:
        yield
        status = 200
    except ApiError as exc:
        status = exc.status
        raise
    except (InputTooLong, QueueFull, LengthBeyondModel) as exc:
        status = {InputTooLong: 400, QueueFull: 429, LengthBeyondModel: 422}[type(exc)]
        raise
    finally:
        route = getattr(request.scope.get("route"), "path", request.url.path)
        service.metrics.request_duration.labels(route, str(status)).observe(time.perf_counter() - started)


def _timing_headers(result: InferenceResult, started: float) -> dict[str, str]:
    total_ms = (time.perf_counter() - started) * 1000
    queue_ms, inference_ms = result.queue_s * 1000, result.inference_s * 1000
    return {
        "X-Queue-Time-Ms": f"{queue_ms:.1f}",
        "X-Inference-Time-Ms": f"{inference_ms:.1f}",
        "X-Total-Time-Ms": f"{total_ms:.1f}",
        "X-Batch-Size": str(result.batch_size),
        "Server-Timing": (f"queue;dur={queue_ms:.1f}, inference;dur={inference_ms:.1f}, "
                          f"total;dur={total_ms:.1f}"),
    }


async def _infer(request: Request, key: str, model_id: str, body: InferenceRequest,
                 task: str) -> JSONResponse:
    started = time.perf_counter()
    service = _service(request)
    service.rate_limits.hit("inference", key)
    # The inference app's middleware marks the arrival first; a host app that only includes
    # this router gets it marked here.
    arrival = getattr(request.state, "arrival", None) or service.batcher.arriving()
    try:
        with _observed(service, request):
            loaded = await _loaded(request, key, model_id, task)
            result = await service.generate(loaded, body.texts, body.parameters, arrival)
    except InputTooLong as exc:
        raise ApiError(400, "input_too_long", str(exc), f"inputs.{exc.index}") from None
    except LengthBeyondModel as exc:
        raise ApiError(422, "validation_error", str(exc), exc.param) from None
    except QueueFull as exc:
        raise ApiError(429, "rate_limited", str(exc), None, {"Retry-After": str(exc.retry_after_s)}) from None
    finally:
        arrival.done()
    field = _OUTPUT_FIELD[task]
    content = [{field: output.text} for output in result.outputs]
    headers = _timing_headers(result, started)
    if loaded.record.quality_gate is not None:
        headers[GATE_HEADER] = _GATE_VALUE[loaded.record.quality_gate]
    return JSONResponse(content, headers=headers)


@router.post("/{model_id}/summarize", response_model=list[SummaryText])
async def summarize(model_id: str, body: InferenceRequest, request: Request, key: ApiKey) -> JSONResponse:
    """Summaries in the Hugging Face inference schema: `[{"summary_text": ...}]`, one per input."""
    return await _infer(request, key, model_id, body, "summarization")


@router.post("/{model_id}/translate", response_model=list[TranslationText])
async def translate(model_id: str, body: InferenceRequest, request: Request, key: ApiKey) -> JSONResponse:
    """Translations: `[{"translation_text": ...}]`, one per input."""
    return await _infer(request, key, model_id, body, "translation")


@router.get("/{model_id}/info")
async def info(model_id: str, request: Request, key: ApiKey) -> dict[str, Any]:
    """How the model is served: the runtime form chosen on load, limits, defaults, batching."""
    service = _service(request)
    with _observed(service, request):
        loaded = await _loaded(request, key, model_id, None)
    limits = service.batcher.limits
    return {
        "id": model_id,
        "task": loaded.record.task,
        "engine": {"name": loaded.engine.engine, "reason": loaded.engine.reason,
                   "faithfulness": loaded.engine.faithfulness} if loaded.engine else None,
        "runtime": loaded.runtime.to_dict(),
        "memory_bytes": loaded.bytes,
        "load_seconds": round(loaded.load_seconds, 3),
        "max_source_length": loaded.max_source_length,
        "generation_defaults": loaded.generation_defaults,
        "target_prefix": loaded.target_prefix,  # mBART: the target language code every output starts with
        "batching": {"max_batch_size": limits.max_batch_size, "max_wait_ms": limits.max_wait_ms,
                     "max_queue": limits.max_queue, "streams": limits.streams,
                     "queue_depth": service.batcher.depth},
        "cache": {"budget_bytes": service.cache.budget_bytes, "used_bytes": service.cache.used_bytes,
                  "models": service.cache.keys()},
    }
