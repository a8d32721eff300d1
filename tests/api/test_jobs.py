"""Job submission: recipe checks against the catalog, idempotency, queueing, paging, cancel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from store.settings import Settings
from tests.api.conftest import (
    Headers,
    Uploads,
    UploadsFor,
    queued_job_ids,
    tiny_recipe,
    upload_dataset,
    upload_model,
)


def test_created_job_is_queued_with_the_full_recipe(client: TestClient, auth: Headers,
                                                    uploads: Uploads) -> None:
    response = client.post("/v1/jobs", headers=auth, json=tiny_recipe(*uploads))
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["id"].startswith("job_")
    assert (job["status"], job["attempts"], job["result_model"], job["error"]) == ("queued", 0, None, None)
    assert job["progress"] == {"step": 0, "total_steps": 0, "fraction": 0.0, "eta_seconds": None}
    assert job["recipe"]["teacher"] == {"model": uploads[0], "path": None, "hf": None, "revision": None}
    assert job["recipe"]["quantization"]["weight_bits"] == 8  # defaults are filled in
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).json()["id"] == job["id"]


def test_created_job_is_sent_to_the_queue_by_task_name(client: TestClient, auth: Headers,
                                                       api_settings: Settings, uploads: Uploads) -> None:
    job = client.post("/v1/jobs", headers=auth, json=tiny_recipe(*uploads)).json()
    assert job["id"] in queued_job_ids(api_settings)


@pytest.mark.parametrize(("change", "param"), [
    ({"student": {"encoder_layers": 1, "decoder_layers": 7}}, "student.decoder_layers"),
    ({"quantization": {"weight_bits": 3}}, "quantization.weight_bits"),
    ({"surprise": 1}, "surprise"),
    ({"dataset": {"dataset": "DS", "source_field": "text"}}, "dataset.source_field"),
    ({"teacher": {"path": "/etc"}}, "teacher"),
    ({"teacher": {"model": "mdl_missing"}}, "teacher.model"),
    ({"dataset": {"dataset": "DS", "validation": "ds_missing"}}, "dataset.validation"),
    ({"dataset": {"dataset": "DS", "max_validation_samples": 0}}, "dataset.max_validation_samples"),
])
def test_bad_recipe_is_400_naming_the_field(client: TestClient, auth: Headers, uploads: Uploads,
                                            change: dict, param: str) -> None:
    recipe = json.loads(json.dumps(tiny_recipe(*uploads, **change)).replace('"DS"', json.dumps(uploads[1])))
    response = client.post("/v1/jobs", headers=auth, json=recipe)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["param"] == param


def test_same_idempotency_key_returns_the_first_job(client: TestClient, auth: Headers,
                                                    api_settings: Settings, uploads: Uploads) -> None:
    headers = {**auth, "Idempotency-Key": "run-42"}
    first = client.post("/v1/jobs", headers=headers, json=tiny_recipe(*uploads))
    again = client.post("/v1/jobs", headers=headers, json=tiny_recipe(*uploads))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert queued_job_ids(api_settings).count(first.json()["id"]) == 1
    assert [j["id"] for j in client.get("/v1/jobs", headers=auth).json()["data"]] == [first.json()["id"]]


def test_idempotency_key_reused_for_another_recipe_is_409(client: TestClient, auth: Headers,
                                                          uploads: Uploads) -> None:
    headers = {**auth, "Idempotency-Key": "run-43"}
    client.post("/v1/jobs", headers=headers, json=tiny_recipe(*uploads))
    other = tiny_recipe(*uploads, training={"max_steps": 3})
    response = client.post("/v1/jobs", headers=headers, json=other)
    assert response.status_code == 409
    assert response.json()["error"]["param"] == "Idempotency-Key"


def test_jobs_page_newest_first_with_has_more(client: TestClient, auth: Headers, uploads: Uploads) -> None:
    created = [client.post("/v1/jobs", headers=auth, json=tiny_recipe(*uploads)).json()["id"]
               for _ in range(5)]
    seen, params = [], {"limit": 2}
    while True:
        page = client.get("/v1/jobs", headers=auth, params=params).json()
        seen += [j["id"] for j in page["data"]]
        if not page["has_more"]:
            break
        params["after"] = page["data"][-1]["id"]
    assert seen == created[::-1]


def test_cancelling_a_queued_job_cancels_it_at_once(client: TestClient, auth: Headers,
                                                    uploads: Uploads) -> None:
    job = client.post("/v1/jobs", headers=auth, json=tiny_recipe(*uploads)).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"] is not None
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=auth).json()
    assert events["has_more"] is False
    assert [e["type"] for e in events["data"]] == ["message"]


def test_new_job_has_no_checkpoints_or_metrics(client: TestClient, auth: Headers, uploads: Uploads) -> None:
    job = client.post("/v1/jobs", headers=auth, json=tiny_recipe(*uploads)).json()
    for part in ("checkpoints", "metrics"):
        page = client.get(f"/v1/jobs/{job['id']}/{part}", headers=auth).json()
        assert page == {"data": [], "has_more": False}


def test_unknown_job_is_404(client: TestClient, auth: Headers) -> None:
    response = client.get("/v1/jobs/job_nope", headers=auth)
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "param": "id",
                                        "message": "no job with id 'job_nope'"}


def test_models_and_datasets_page_like_jobs(client: TestClient, auth: Headers, teacher_archive: bytes,
                                            tmp_path: Path) -> None:
    ids = [upload_dataset(client, auth, rows=3)["id"] for _ in range(3)]
    first = client.get("/v1/datasets", headers=auth, params={"limit": 2}).json()
    after = first["data"][-1]["id"]
    rest = client.get("/v1/datasets", headers=auth, params={"limit": 2, "after": after}).json()
    assert [d["id"] for d in first["data"] + rest["data"]] == ids[::-1]
    assert (first["has_more"], rest["has_more"]) == (True, False)
    model = upload_model(client, auth, teacher_archive)
    del model["dropped_files"]  # only the upload's answer says what it left out of the archive
    assert client.get("/v1/models", headers=auth).json() == {"data": [model], "has_more": False}


def test_tenant_over_its_active_job_limit_gets_429_but_replays_pass(client: TestClient,
                                                                    uploads_for: UploadsFor) -> None:
    headers, uploads = uploads_for(max_concurrent_jobs=1)
    keyed = {**headers, "Idempotency-Key": "only"}
    first = client.post("/v1/jobs", headers=keyed, json=tiny_recipe(*uploads))
    second = client.post("/v1/jobs", headers=headers, json=tiny_recipe(*uploads))
    replay = client.post("/v1/jobs", headers=keyed, json=tiny_recipe(*uploads))
    assert (first.status_code, second.status_code, replay.status_code) == (201, 429, 200)
    assert second.json()["error"]["code"] == "too_many_active_jobs"
    client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=headers)
    assert client.post("/v1/jobs", headers=headers, json=tiny_recipe(*uploads)).status_code == 201


def test_cancelling_a_finished_job_is_409_naming_its_status(client: TestClient, auth: Headers,
                                                            uploads: Uploads) -> None:
    job = client.post("/v1/jobs", headers=auth, json=tiny_recipe(*uploads)).json()
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "job_not_cancellable")
    assert "'cancelled'" in again.json()["error"]["message"]
