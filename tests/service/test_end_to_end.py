"""A real API process and a real Celery worker: upload, compress, follow, download, load, cancel."""

from __future__ import annotations

import hashlib
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import Service, tiny_recipe

pytestmark = pytest.mark.slow
JOB_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def finished_job(service: Service, uploads: dict[str, str]) -> dict[str, Any]:
    response = service.owner.post("/v1/jobs", json=tiny_recipe(uploads, max_steps=4))
    assert response.status_code == 201, response.text
    return service.wait_for_job(response.json()["id"], lambda job: False, timeout=JOB_TIMEOUT_S)


def all_events(service: Service, job_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        params = {"after": events[-1]["id"]} if events else {}
        page = service.owner.get(f"/v1/jobs/{job_id}/events", params=params).json()
        events += page["data"]
        if not page["has_more"]:
            return events


def test_job_runs_to_success(finished_job: dict[str, Any]) -> None:
    assert finished_job["status"] == "succeeded", finished_job["error"]
    assert finished_job["result_model"].startswith("mdl_")
    assert finished_job["progress"]["step"] == finished_job["progress"]["total_steps"] == 4
    assert finished_job["progress"]["fraction"] == 1.0
    assert finished_job["attempts"] == 1
    assert finished_job["created_at"] <= finished_job["started_at"] <= finished_job["finished_at"]


def test_events_follow_the_stages_and_carry_metrics(service: Service, finished_job: dict[str, Any]) -> None:
    events = all_events(service, finished_job["id"])
    stages = [e["stage"] for e in events if e["type"] == "stage"]
    assert stages[0] == "preparing"
    assert {"distilling", "evaluating", "packing"} <= set(stages)
    assert any(e["type"] == "metrics" for e in events)
    assert finished_job["metrics"]


def test_metric_series_are_recorded_by_step(service: Service, finished_job: dict[str, Any]) -> None:
    points = service.owner.get(f"/v1/jobs/{finished_job['id']}/metrics").json()["data"]
    names = {p["name"] for p in points}
    assert any(name.startswith("loss") for name in names), names
    assert set(finished_job["metrics"]) <= names


def test_checkpoints_are_listed(service: Service, finished_job: dict[str, Any]) -> None:
    checkpoints = service.owner.get(f"/v1/jobs/{finished_job['id']}/checkpoints").json()["data"]
    steps = [c["step"] for c in checkpoints]
    assert steps and steps == sorted(steps) and set(steps) <= {1, 2, 3, 4}
    assert all(c["bytes"] > 0 and c["id"].startswith("ckpt_") for c in checkpoints)


def test_result_downloads_with_its_checksum_and_loads(service: Service, finished_job: dict[str, Any],
                                                      tmp_path: Path) -> None:
    model_id = finished_job["result_model"]
    model = service.owner.get(f"/v1/models/{model_id}").json()
    assert (model["source"], model["job_id"], model["layers"]) == ("compression", finished_job["id"],
                                                                    {"encoder": 1, "decoder": 1})
    response = service.owner.get(f"/v1/models/{model_id}/download")
    assert response.status_code == 200
    digest = hashlib.sha256(response.content).hexdigest()
    assert digest == response.headers["X-Checksum-SHA256"] == model["sha256"]
    archive = tmp_path / "model.tar"
    archive.write_bytes(response.content)
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "model", filter="data")
    import compression  # torch and transformers load here, not at collection

    loaded, tokenizer = compression.load(tmp_path / "model")
    inputs = tokenizer(["a small tool to compress files"], return_tensors="pt")
    output = loaded.generate(**inputs, max_new_tokens=4, num_beams=1)
    assert output.shape[0] == 1


def test_result_model_carries_its_packing_time_engine_check(service: Service,
                                                            finished_job: dict[str, Any]) -> None:
    model_id = finished_job["result_model"]
    check = service.owner.get(f"/v1/models/{model_id}").json()["engines"]["ctranslate2"]
    packed = service.owner.get(f"/v1/models/{model_id}/report").json()["engines"]["ctranslate2"]
    assert check["available"] is True and check["metric"] == "rougeLsum"
    given = {key: value for key, value in check.items() if value is not None}
    assert given == {key: packed[key] for key in given}
    assert check["within_budget"] == (check["loss_interval"]["low"] <= check["budget"])


def test_result_model_summarizes_on_the_same_api(service: Service, finished_job: dict[str, Any]) -> None:
    response = service.owner.post(f"/v1/models/{finished_job['result_model']}/summarize",
                                  json={"inputs": ["a small tool to compress files", "a text editor"],
                                        "parameters": {"max_new_tokens": 4}})
    assert response.status_code == 200, response.text
    summaries = response.json()
    assert len(summaries) == 2 and all(isinstance(s["summary_text"], str) for s in summaries)


def test_running_job_is_cancelled_within_seconds(service: Service, uploads: dict[str, str],
                                                 finished_job: dict[str, Any]) -> None:
    recipe = tiny_recipe(uploads, max_steps=100_000)
    job = service.owner.post("/v1/jobs", json=recipe).json()
    training = lambda j: j["status"] == "running" and j["progress"]["step"] >= 1  # noqa: E731
    running = service.wait_for_job(job["id"], training, timeout=JOB_TIMEOUT_S)
    assert running["status"] == "running", running
    asked = time.monotonic()
    assert service.owner.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    final = service.wait_for_job(job["id"], lambda j: False, timeout=60)
    assert final["status"] == "cancelled"
    assert time.monotonic() - asked < 20
    assert final["result_model"] is None


def test_same_idempotency_key_twice_makes_one_job(service: Service, uploads: dict[str, str],
                                                  finished_job: dict[str, Any]) -> None:
    headers = {"Idempotency-Key": f"e2e-{uuid.uuid4().hex}"}
    first = service.owner.post("/v1/jobs", json=tiny_recipe(uploads, max_steps=2), headers=headers)
    second = service.owner.post("/v1/jobs", json=tiny_recipe(uploads, max_steps=2), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    listed = [j["id"] for j in service.owner.get("/v1/jobs", params={"limit": 100}).json()["data"]]
    assert listed.count(first.json()["id"]) == 1
    service.owner.post(f"/v1/jobs/{first.json()['id']}/cancel")
    assert service.wait_for_job(first.json()["id"], lambda j: False, timeout=60)["status"] in (
        "cancelled", "succeeded")


def test_another_tenant_gets_404_on_every_object(service: Service, uploads: dict[str, str],
                                                 finished_job: dict[str, Any]) -> None:
    job, result = finished_job["id"], finished_job["result_model"]
    paths = [("GET", f"/v1/models/{m}") for m in (uploads["model"], result)]
    paths += [("GET", f"/v1/models/{m}/download") for m in (uploads["model"], result)]
    paths += [("GET", f"/v1/datasets/{uploads[s]}") for s in ("train", "validation")]
    paths += [("GET", f"/v1/jobs/{job}{suffix}") for suffix in ("", "/events", "/metrics", "/checkpoints")]
    paths += [("POST", f"/v1/jobs/{job}/cancel"), ("POST", f"/v1/models/{result}/summarize")]
    for method, path in paths:
        body = {"inputs": "x"} if path.endswith("summarize") else None
        response = service.stranger.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    for kind in ("models", "datasets", "jobs"):
        assert service.stranger.get(f"/v1/{kind}").json() == {"data": [], "has_more": False}
