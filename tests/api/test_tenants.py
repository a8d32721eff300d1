"""A tenant sees only its own objects: another tenant's id reads as 404 everywhere."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Headers, tiny_recipe, upload_dataset, upload_model

NewTenant = Callable[[], Headers]


@pytest.fixture
def owner_objects(client: TestClient, auth: Headers, teacher_archive: bytes) -> dict[str, str]:
    model = upload_model(client, auth, teacher_archive)["id"]
    dataset = upload_dataset(client, auth)["id"]
    job = client.post("/v1/jobs", headers=auth, json=tiny_recipe(model, dataset)).json()["id"]
    return {"model": model, "dataset": dataset, "job": job}


def foreign_requests(ids: dict[str, str]) -> list[tuple[str, str]]:
    model, dataset, job = ids["model"], ids["dataset"], ids["job"]
    return [
        ("GET", f"/v1/models/{model}"), ("GET", f"/v1/models/{model}/download"),
        ("GET", f"/v1/datasets/{dataset}"),
        ("GET", f"/v1/jobs/{job}"), ("POST", f"/v1/jobs/{job}/cancel"), ("GET", f"/v1/jobs/{job}/events"),
        ("GET", f"/v1/jobs/{job}/metrics"), ("GET", f"/v1/jobs/{job}/checkpoints"),
    ]


def test_another_tenant_gets_404_on_every_object(client: TestClient, owner_objects: dict[str, str],
                                                 new_tenant: NewTenant) -> None:
    stranger = new_tenant()
    for method, path in foreign_requests(owner_objects):
        response = client.request(method, path, headers=stranger)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"


def test_another_tenant_lists_nothing(client: TestClient, owner_objects: dict[str, str],
                                      new_tenant: NewTenant) -> None:
    stranger = new_tenant()
    for kind in ("models", "datasets", "jobs"):
        assert client.get(f"/v1/{kind}", headers=stranger).json() == {"data": [], "has_more": False}


def test_another_tenant_cannot_cancel_the_job(client: TestClient, auth: Headers,
                                              owner_objects: dict[str, str], new_tenant: NewTenant) -> None:
    client.post(f"/v1/jobs/{owner_objects['job']}/cancel", headers=new_tenant())
    assert client.get(f"/v1/jobs/{owner_objects['job']}", headers=auth).json()["status"] == "queued"


def test_another_tenants_uploads_cannot_be_used_in_a_recipe(client: TestClient, owner_objects: dict[str, str],
                                                            new_tenant: NewTenant) -> None:
    stranger = new_tenant()
    own_dataset = upload_dataset(client, stranger)["id"]
    recipe = tiny_recipe(owner_objects["model"], own_dataset)
    response = client.post("/v1/jobs", headers=stranger, json=recipe)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "teacher.model"
