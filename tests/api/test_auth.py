"""API keys: hashed at rest, tenant-scoped, revocable."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from store import tenants
from store.db import session_scope
from store.models import ApiKey
from store.settings import Settings


def test_key_is_stored_only_as_its_hash(api_settings: Settings) -> None:
    with session_scope(api_settings) as session:
        tenant = tenants.create_tenant(session, name="hash-check")
        row, plaintext = tenants.create_key(session, tenant_id=tenant.id)
        stored = session.scalar(select(ApiKey).where(ApiKey.id == row.id))
    assert stored is not None
    assert stored.key_hash == tenants.hash_key(plaintext) != plaintext
    assert plaintext.startswith(stored.prefix)


def test_revoked_key_is_refused(api_settings: Settings, client: TestClient) -> None:
    with session_scope(api_settings) as session:
        tenant = tenants.create_tenant(session, name="revoke-check")
        row, plaintext = tenants.create_key(session, tenant_id=tenant.id)
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert client.get("/v1/models", headers=headers).status_code == 200
    with session_scope(api_settings) as session:
        assert tenants.revoke_key(session, tenant_id=tenant.id, key_id=row.id)
    assert client.get("/v1/models", headers=headers).status_code == 401


def test_health_needs_no_key_and_metrics_needs_one(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/health").json() == {"status": "ok", "database": "ok"}
    assert client.get("/metrics").status_code == 401
    metrics = client.get("/metrics", headers=auth)
    assert metrics.status_code == 200
    assert 'dqbart_jobs{status="queued"}' in metrics.text
    assert "dqbart_http_requests_total" in metrics.text


def test_openapi_docs_list_the_api(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/models", "/v1/models/{model_id}/download", "/v1/datasets", "/v1/jobs",
                 "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/checkpoints",
                 "/v1/models/{model_id}/summarize", "/v1/models/{model_id}/translate"):
        assert path in paths
