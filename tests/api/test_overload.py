"""Overload is shed, not queued: past MAX_IN_FLIGHT requests a request gets 503 at once, and past
its key's rate an upload or an inference gets 429, both in the error shape with a Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi.testclient import TestClient

from api.main import create_app
from store.settings import Settings
from tests.api.conftest import Headers, jsonl_bytes
from tests.reliability import hostile

UNKNOWN_MODEL = "mdl_01ARZ3NDEKTSV4RRFFQ69G5FAV"
BOUNDARY = "held-upload"


def _shape(response: httpx.Response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], response.headers.get("retry-after")


async def _held_upload(client: httpx.AsyncClient, auth: Headers, started: asyncio.Event,
                       release: asyncio.Event) -> httpx.Response:
    """An upload whose body stops halfway until `release`: it holds its admission slot meanwhile."""
    body = hostile.multipart([(b'Content-Disposition: form-data; name="file"; filename="d.jsonl"',
                               jsonl_bytes(4))], BOUNDARY.encode())

    async def chunks() -> AsyncIterator[bytes]:
        yield body[:20]
        started.set()
        await release.wait()
        yield body[20:]

    headers = {**auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return await client.post("/v1/datasets", headers=headers, content=chunks())


def _with_one_upload_in_flight(settings: Settings, auth: Headers, path: str) -> tuple[httpx.Response, ...]:
    app = create_app(settings.model_copy(update={"MAX_IN_FLIGHT": 1}))

    async def scenario() -> tuple[httpx.Response, ...]:
        started, release = asyncio.Event(), asyncio.Event()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            upload = asyncio.create_task(_held_upload(client, auth, started, release))
            await started.wait()
            other = await client.get(path, headers=auth)
            release.set()
            return other, await upload

    return asyncio.run(scenario())


def test_a_request_over_the_in_flight_limit_is_shed_with_503_json_and_retry_after(
        api_settings: Settings, auth: Headers) -> None:
    shed, upload = _with_one_upload_in_flight(api_settings, auth, "/v1/jobs")
    assert _shape(shed) == (503, "overloaded", "1")
    assert upload.status_code == 201, upload.text


def test_health_is_never_shed(api_settings: Settings, auth: Headers) -> None:
    health, _ = _with_one_upload_in_flight(api_settings, auth, "/health")
    assert health.status_code == 200


def _limited_client(settings: Settings, **rates: Any) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=rates)), raise_server_exceptions=False)


def test_uploads_over_the_key_rate_get_429_with_retry_after(api_settings: Settings, auth: Headers) -> None:
    with _limited_client(api_settings, UPLOAD_RATE_LIMIT="1/minute") as client:
        files = {"file": ("d.jsonl", jsonl_bytes(2))}
        assert client.post("/v1/datasets", headers=auth, files=files).status_code == 201
        second = client.post("/v1/datasets", headers=auth, files=files)
    status, code, retry_after = _shape(second)
    assert (status, code) == (429, "rate_limited")
    assert retry_after is not None and 1 <= int(retry_after) <= 60


def test_the_upload_rate_is_per_key(api_settings: Settings, auth: Headers, new_tenant: Any) -> None:
    with _limited_client(api_settings, UPLOAD_RATE_LIMIT="1/minute") as client:
        files = {"file": ("d.jsonl", jsonl_bytes(2))}
        client.post("/v1/datasets", headers=auth, files=files)
        assert client.post("/v1/datasets", headers=new_tenant(), files=files).status_code == 201


def test_inference_over_the_key_rate_gets_429(api_settings: Settings, auth: Headers) -> None:
    with _limited_client(api_settings, INFERENCE_RATE_LIMIT="1/minute") as client:
        path = f"/v1/models/{UNKNOWN_MODEL}/summarize"
        assert client.post(path, headers=auth, json={"inputs": "text"}).status_code == 404
        second = client.post(path, headers=auth, json={"inputs": "text"})
    assert _shape(second)[:2] == (429, "rate_limited")
