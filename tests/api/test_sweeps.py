"""Sweep submission: checks against the catalog, fan-out within the limits, idempotency, paging,
tenants and cancel (no worker runs here: children stay queued)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from store.settings import Settings
from tests.api.conftest import Headers, Uploads, UploadsFor, queued_job_ids, tiny_recipe


def body(uploads: Uploads, **changes: Any) -> dict[str, Any]:
    return {"recipe": tiny_recipe(*uploads), "axes": {"bits": ["8-8-8", "2-2-8"], "layers": ["2-2", "1-1"]},
            "gate": {"max_drop": 0.05}, "budget": {"max_parallel": 2}, **changes}


def test_a_new_sweep_queues_max_parallel_children_and_lists_every_point(
        client: TestClient, auth: Headers, api_settings: Settings, uploads: Uploads) -> None:
    response = client.post("/v1/sweeps", headers=auth, json=body(uploads))
    assert response.status_code == 201, response.text
    sweep = response.json()
    assert sweep["id"].startswith("swp_") and sweep["status"] == "running"
    assert [p["status"] for p in sweep["points"]] == ["queued", "queued", "pending", "pending"]
    assert sweep["metric"] == "rougeLsum" and sweep["recommended"] is None
    queued = [p["job_id"] for p in sweep["points"] if p["job_id"]]
    assert set(queued) <= set(queued_job_ids(api_settings))
    assert client.get(f"/v1/jobs/{queued[0]}", headers=auth).json()["sweep"] == sweep["id"]


@pytest.mark.parametrize(("changes", "param"), [
    ({"axes": {"bits": ["8-8-8"], "layers": ["3-1"]}}, "axes.layers"),
    ({"axes": {"bits": ["9-9-9"], "layers": ["1-1"]}}, "axes.bits"),
    ({"budget": {"max_total_steps": 3}}, "budget.max_total_steps"),
    ({"gate": {"max_drop": 0.05, "metric": "bleu"}}, "gate.metric"),
    ({"strategy": "random"}, "strategy"),
])
def test_a_bad_sweep_is_400_naming_the_field(client: TestClient, auth: Headers, uploads: Uploads,
                                             changes: dict[str, Any], param: str) -> None:
    response = client.post("/v1/sweeps", headers=auth, json=body(uploads, **changes))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_a_sweep_over_another_tenants_teacher_is_400(client: TestClient, auth: Headers,
                                                      uploads_for: UploadsFor) -> None:
    _, theirs = uploads_for()
    response = client.post("/v1/sweeps", headers=auth, json=body(theirs))
    assert response.status_code == 400 and response.json()["error"]["param"] == "teacher.model"


def test_the_same_idempotency_key_returns_the_first_sweep_and_another_body_is_409(
        client: TestClient, auth: Headers, uploads: Uploads) -> None:
    keyed = {**auth, "Idempotency-Key": "sweep-once"}
    first = client.post("/v1/sweeps", headers=keyed, json=body(uploads))
    replay = client.post("/v1/sweeps", headers=keyed, json=body(uploads))
    other = client.post("/v1/sweeps", headers=keyed, json=body(uploads, objective="pareto"))
    assert (first.status_code, replay.status_code, other.status_code) == (201, 200, 409)
    assert replay.json()["id"] == first.json()["id"]


def test_sweeps_page_newest_first_and_are_the_tenants_own(client: TestClient, auth: Headers,
                                                          new_tenant: Any, uploads: Uploads) -> None:
    made = [client.post("/v1/sweeps", headers=auth, json=body(uploads)).json()["id"] for _ in range(3)]
    page = client.get("/v1/sweeps", headers=auth, params={"limit": 2}).json()
    assert [s["id"] for s in page["data"]] == made[:0:-1] and page["has_more"]
    rest = client.get("/v1/sweeps", headers=auth, params={"after": made[1]}).json()
    assert [s["id"] for s in rest["data"]] == [made[0]]
    assert client.get(f"/v1/sweeps/{made[0]}", headers=new_tenant()).status_code == 404


def test_children_count_against_the_tenants_active_job_cap(client: TestClient,
                                                           uploads_for: UploadsFor) -> None:
    headers, theirs = uploads_for(max_concurrent_jobs=1)
    sweep = client.post("/v1/sweeps", headers=headers, json=body(theirs)).json()
    assert sum(p["status"] == "queued" for p in sweep["points"]) == 1
    full = client.post("/v1/sweeps", headers=headers, json=body(theirs))
    assert full.status_code == 429 and full.json()["error"]["code"] == "too_many_active_jobs"


def test_cancelling_a_sweep_cancels_its_children_and_a_second_cancel_is_409(
        client: TestClient, auth: Headers, uploads: Uploads) -> None:
    sweep = client.post("/v1/sweeps", headers=auth, json=body(uploads)).json()
    cancelled = client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=auth).json()
    assert cancelled["status"] == "cancelled"
    assert [p["status"] for p in cancelled["points"]] == ["cancelled", "cancelled", "pending", "pending"]
    again = client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=auth)
    assert again.status_code == 409 and again.json()["error"]["code"] == "sweep_not_cancellable"
