"""The inference app over HTTP (in-process ASGI, no lifespan: as when mounted in the main API)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serving import routes as serving_routes
from serving.app import create_app, inference_streams
from serving.batcher import BatchLimits
from serving.generation import GenerationItem, encode, run_batch
from serving.schemas import GenerationParameters
from serving.service import stream_threads
from store.blobs import LocalBlobStore
from store.db import session_scope
from store.models import Artifact, Model
from store.settings import Settings
from tests.serving.conftest import StoredModel, store_artifact

SHORT = {"max_new_tokens": 6, "min_new_tokens": 6, "num_beams": 1}
TEXTS = ["A library for parsing JSON documents in C.", "Python bindings for the GTK toolkit.",
         "Fonts for the Tamil script.", "Command line tool to resize images.",
         "Documentation of the Rust standard library.", "Daemon that watches disk health."]


def call(app: FastAPI, scenario: Callable[[httpx.AsyncClient], Coroutine[Any, Any, Any]]) -> Any:
    async def run() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
            return await scenario(client)

    return asyncio.run(run())


def post(client: httpx.AsyncClient, model: StoredModel, inputs: object, route: str = "summarize",
         **parameters: object) -> Coroutine[Any, Any, httpx.Response]:
    return client.post(f"/v1/models/{model.id}/{route}", headers=model.headers,
                       json={"inputs": inputs, "parameters": {**SHORT, **parameters}})


def metric(app: FastAPI, name: str) -> float:
    return app.state.metrics_registry.get_sample_value(name) or 0.0


@pytest.fixture
def app(serving_settings: Settings) -> FastAPI:
    return create_app(serving_settings)


def test_summarize_answers_one_summary_per_input_with_timing_headers(app: FastAPI, stored_model: Any) -> None:
    model = stored_model()
    response = call(app, lambda c: post(c, model, ["first text", "second text"]))
    assert response.status_code == 200, response.text
    assert [list(item) for item in response.json()] == [["summary_text"], ["summary_text"]]
    for header in ("X-Queue-Time-Ms", "X-Inference-Time-Ms", "X-Total-Time-Ms", "Server-Timing"):
        assert header in response.headers


def test_translate_answers_translation_text(app: FastAPI, stored_model: Any) -> None:
    model = stored_model(task="translation")
    response = call(app, lambda c: post(c, model, "Hello world", route="translate"))
    assert response.status_code == 200 and list(response.json()[0]) == ["translation_text"]


def test_an_uploaded_teacher_is_served_in_full_precision(app: FastAPI, serving_settings: Any,
                                                        tiny_teacher_dir: Any) -> None:
    model = store_artifact(serving_settings, tiny_teacher_dir, task=None, source="upload")
    response = call(app, lambda c: post(c, model, ["first text", "second text"]))
    assert response.status_code == 200, response.text
    info = call(app, lambda c: c.get(f"/v1/models/{model.id}/info", headers=model.headers))
    assert info.json()["runtime"]["form"] == "ctranslate2_float32"


def test_a_model_of_another_task_is_refused(app: FastAPI, stored_model: Any) -> None:
    model = stored_model(task="summarization")
    response = call(app, lambda c: post(c, model, "Hello", route="translate"))
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_task"


@pytest.mark.parametrize(("verdict", "header"), [("flagged", "failed"), ("passed", "passed"), (None, None)])
def test_a_gated_model_answers_with_its_gate_verdict(app: FastAPI, serving_settings: Settings,
                                                     stored_model: Any, verdict: str | None,
                                                     header: str | None) -> None:
    model = stored_model()
    with session_scope(serving_settings) as session:
        row = session.get(Model, model.id)
        assert row is not None
        row.quality_gate = None if verdict is None else {"verdict": verdict}
        session.commit()
    response = call(app, lambda c: post(c, model, "text"))
    assert response.status_code == 200, response.text
    assert response.headers.get(serving_routes.GATE_HEADER) == header


def test_validation_errors_use_the_service_error_shape(app: FastAPI, stored_model: Any) -> None:
    model = stored_model()
    response = call(app, lambda c: post(c, model, "text", num_beams=0))
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "parameters.num_beams"


def test_a_request_without_a_valid_key_is_refused(app: FastAPI, stored_model: Any) -> None:
    model = stored_model()
    stranger = StoredModel(id=model.id, headers={"Authorization": "Bearer dqb_wrong"}, tenant_id="")
    response = call(app, lambda c: post(c, stranger, "text"))
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_another_tenants_model_reads_as_missing(app: FastAPI, stored_model: Any) -> None:
    mine, theirs = stored_model(), stored_model()
    foreign = StoredModel(id=theirs.id, headers=mine.headers, tenant_id=mine.tenant_id)
    response = call(app, lambda c: post(c, foreign, "text"))
    assert response.status_code == 404


def test_a_too_long_input_is_refused_unless_truncation_is_asked(app: FastAPI, stored_model: Any) -> None:
    model = stored_model()
    long_text = "word " * 200  # the packed recipe's max_source_length is 64 tokens

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        refused = await post(client, model, ["short", long_text], truncation=False)
        cut = await post(client, model, long_text, truncation=True)
        return refused, cut

    refused, cut = call(app, scenario)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "inputs.1"
    assert cut.status_code == 200


def test_concurrent_requests_share_a_generate_call_and_keep_their_answers(
        serving_settings: Settings, diverse_artifact: Path) -> None:
    app = create_app(serving_settings, limits=BatchLimits(max_batch_size=len(TEXTS), max_wait_ms=5000))
    model = store_artifact(serving_settings, diverse_artifact)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return await asyncio.gather(*(post(client, model, text) for text in TEXTS))

    responses = call(app, scenario)
    assert [r.status_code for r in responses] == [200] * len(TEXTS)
    assert metric(app, "dqbart_inference_batch_size_count") == 1
    # The same batch run directly, in reverse order: each answer is its own input's.
    loaded = app.state.serving.cache.peek(model.id).value
    params = app.state.serving.resolve(loaded, GenerationParameters(**SHORT))
    items = [GenerationItem(loaded, params, ids) for ids in encode(loaded, TEXTS, True)]
    expected = [g.text for g in reversed(run_batch(None, items[::-1]))]
    assert [r.json()[0]["summary_text"] for r in responses] == expected
    assert len(set(expected)) > 1


def test_generate_calls_on_two_streams_at_once_each_answer_their_own_input(
        serving_settings: Settings, diverse_artifact: Path) -> None:
    # Batches of one: an input's answer depends on its batch (per-tensor activation ranges).
    app = create_app(serving_settings, limits=BatchLimits(max_batch_size=1, max_wait_ms=0, streams=2))
    model = store_artifact(serving_settings, diverse_artifact)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return await asyncio.gather(*(post(client, model, text) for text in TEXTS))

    responses = call(app, scenario)
    loaded = app.state.serving.cache.peek(model.id).value
    params = app.state.serving.resolve(loaded, GenerationParameters(**SHORT))
    alone = [run_batch(None, [GenerationItem(loaded, params, ids)])[0].text
             for ids in encode(loaded, TEXTS, True)]
    assert [r.json()[0]["summary_text"] for r in responses] == alone


def test_a_cpu_host_serves_one_stream_per_core_by_default(serving_settings: Settings) -> None:
    cpu = serving_settings.model_copy(update={"DEVICE": "cpu"})
    assert inference_streams(cpu) == len(os.sched_getaffinity(0))
    assert inference_streams(cpu.model_copy(update={"SERVING_STREAMS": 3})) == 3


def test_a_full_queue_answers_429_with_retry_after(serving_settings: Settings, stored_model: Any) -> None:
    app = create_app(serving_settings, limits=BatchLimits(max_batch_size=1, max_wait_ms=0, max_queue=1))
    model = stored_model()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        await post(client, model, "warm up")  # load the model first
        return await asyncio.gather(*(post(client, model, text, max_new_tokens=24) for text in TEXTS))

    responses = call(app, scenario)
    refused = [r for r in responses if r.status_code == 429]
    assert refused and any(r.status_code == 200 for r in responses)
    assert int(refused[0].headers["Retry-After"]) >= 1
    assert refused[0].json()["error"]["code"] == "rate_limited"


def test_info_reports_the_runtime_chosen_on_load(app: FastAPI, stored_model: Any) -> None:
    model = stored_model()
    response = call(app, lambda c: c.get(f"/v1/models/{model.id}/info", headers=model.headers))
    assert response.status_code == 200
    runtime = response.json()["runtime"]
    assert runtime["form"] == "ctranslate2_int8" and runtime["int8_layers"] > 0
    assert response.json()["engine"]["name"] == "ctranslate2"
    assert response.json()["batching"]["streams"] == app.state.serving.batcher.limits.streams


def test_a_corrupted_artifact_is_not_served(app: FastAPI, stored_model: Any,
                                            serving_settings: Settings) -> None:
    model = stored_model()
    with session_scope(serving_settings) as session:
        artifact = session.get(Artifact, session.get(Model, model.id).artifact_id)
        path = LocalBlobStore(serving_settings.artifact_dir).path_of(artifact.path)
    with open(path, "ab") as f:
        f.write(b"tampered")
    response = call(app, lambda c: post(c, model, "text"))
    assert response.status_code == 500 and response.json()["error"]["code"] == "artifact_corrupt"


def test_the_cache_budget_evicts_the_least_recent_model(serving_settings: Settings,
                                                        stored_model: Any) -> None:
    app = create_app(serving_settings, cache_budget_bytes=1)
    first, second = stored_model(), stored_model()

    async def scenario(client: httpx.AsyncClient) -> None:
        for model in (first, second):
            assert (await post(client, model, "text")).status_code == 200

    call(app, scenario)
    assert app.state.serving.cache.keys() == [second.id]
    assert metric(app, "dqbart_inference_model_evictions_total") == 1


def test_metrics_count_requests_and_generated_tokens(app: FastAPI, stored_model: Any) -> None:
    model = stored_model()

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        await post(client, model, ["one", "two"])
        return await client.get("/metrics")

    text = call(app, scenario).text
    assert 'dqbart_inference_request_duration_seconds_count{route="/v1/models/{model_id}/summarize"' in text
    assert metric(app, "dqbart_inference_generated_tokens_total") >= 2 * SHORT["min_new_tokens"]
    assert "dqbart_inference_queue_depth 0.0" in text


def test_the_app_works_mounted_in_another_app(serving_settings: Settings, stored_model: Any) -> None:
    parent = FastAPI()
    parent.mount("/", create_app(serving_settings))
    model = stored_model()
    response = call(parent, lambda c: post(c, model, "text"))
    assert response.status_code == 200, response.text


def test_a_request_without_a_key_is_asked_for_one(app: FastAPI, stored_model: Any) -> None:
    model = stored_model()
    response = call(app, lambda c: c.post(f"/v1/models/{model.id}/summarize", json={"inputs": "text"}))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


def test_the_router_works_included_in_another_app(serving_settings: Settings, stored_model: Any) -> None:
    inference = create_app(serving_settings)
    host = FastAPI()
    host.state.serving = inference.state.serving
    host.include_router(serving_routes.router)
    model = stored_model()
    response = call(host, lambda c: post(c, model, "text"))
    assert response.status_code == 200, response.text
    assert metric(inference, "dqbart_inference_batch_size_count") == 1


def test_streams_share_the_cores_and_each_keeps_at_least_one() -> None:
    assert stream_threads(2, 2) == 1
    assert stream_threads(8, 3) == 2 and stream_threads(1, 2) == 1


def test_concurrent_requests_share_one_lookup_of_their_key_and_model(
        app: FastAPI, stored_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model, service = stored_model(), app.state.serving
    lookups: list[str] = []
    real_lookup = service._lookup

    def slow_lookup(key: str, model_id: str) -> Any:
        lookups.append(model_id)
        time.sleep(0.2)  # the others arrive while it runs
        return real_lookup(key, model_id)

    monkeypatch.setattr(service, "_lookup", slow_lookup)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return await asyncio.gather(*(post(client, model, text) for text in TEXTS))

    responses = call(app, scenario)
    assert [r.status_code for r in responses] == [200] * len(TEXTS)
    assert lookups == [model.id]


def test_a_model_load_collects_garbage_and_freezes_what_lives_on(app: FastAPI, stored_model: Any) -> None:
    class Node:
        other: Node

    first, second = Node(), Node()
    first.other, second.other = second, first
    cycle = weakref.ref(first)
    del first, second
    gc.disable()  # only the load's own collection may free the cycle
    try:
        model = stored_model()
        response = call(app, lambda c: post(c, model, "text"))
    finally:
        gc.enable()
    assert response.status_code == 200, response.text
    assert cycle() is None and gc.get_freeze_count() > 0
