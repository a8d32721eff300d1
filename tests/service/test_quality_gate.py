"""Quality gates through a real API process and a real Celery worker.

The validation references are the teacher's own outputs, so the teacher scores 100 by
construction, and a gate allowing no drop at all fails for any student that does not write the
teacher's texts word for word (a one-layer, 2-bit student after two steps does not).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import Service, post_file, sample_rows, tiny_recipe
from tests.service.test_end_to_end import all_events
from tests.tiny import make_diverse_teacher, make_tiny_teacher

pytestmark = pytest.mark.slow
JOB_TIMEOUT_S = 240.0
VALIDATION_RECORDS = 4
GATE_HEADER = "X-DQB-Quality-Gate"


def _teacher_outputs(teacher: Path, sources: list[str], recipe: dict[str, Any]) -> list[str]:
    """What the worker's evaluation will have the teacher write: the same function and settings."""
    from transformers import AutoTokenizer, BartForConditionalGeneration

    from compression.evaluate import generate
    from compression.recipe import EvaluationSpec

    model = BartForConditionalGeneration.from_pretrained(teacher)
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    return generate(model, tokenizer, sources, EvaluationSpec(**recipe["evaluation"]),
                    max_source_length=recipe["training"]["max_source_length"])


def _scorable(text: str) -> bool:
    """ROUGE reads letters and digits only: a text without any scores 0 even against itself."""
    return re.search(r"[a-z0-9]", text.lower()) is not None


@pytest.fixture(scope="module")
def gated_uploads(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A teacher whose outputs tell inputs apart, and validation records whose references are them."""
    tmp = tmp_path_factory.mktemp("gate")
    teacher = make_diverse_teacher(make_tiny_teacher(tmp / "tokenizer"), tmp / "teacher")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tf:
        tf.add(teacher, arcname="diverse-bart")
    ids = {"model": post_file(service.owner, "/v1/models", "diverse-bart.tar.gz", archive.getvalue()),
           "train": post_file(service.owner, "/v1/datasets", "train.jsonl", sample_rows("train", 48))}
    records = [json.loads(line) for line in sample_rows("validation", 24).decode().splitlines()]
    recipe = tiny_recipe({**ids, "validation": ""}, max_steps=2)  # the settings, before the ids exist
    outputs = _teacher_outputs(teacher, [r["document"] for r in records], recipe)
    kept = [{"document": r["document"], "summary": out} for r, out in zip(records, outputs, strict=True)
            if _scorable(out)][:VALIDATION_RECORDS]
    assert len(kept) == VALIDATION_RECORDS, outputs
    ids["validation"] = post_file(service.owner, "/v1/datasets", "validation.jsonl",
                                  "".join(json.dumps(r) + "\n" for r in kept).encode())
    return ids


def _run(service: Service, uploads: dict[str, str], on_fail: str) -> dict[str, Any]:
    recipe = {**tiny_recipe(uploads, max_steps=2), "gate": {"max_drop": 0, "on_fail": on_fail}}
    response = service.owner.post("/v1/jobs", json=recipe)
    assert response.status_code == 201, response.text
    return service.wait_for_job(response.json()["id"], lambda job: False, timeout=JOB_TIMEOUT_S)


@pytest.fixture(scope="module")
def flagged_job(service: Service, gated_uploads: dict[str, str]) -> dict[str, Any]:
    return _run(service, gated_uploads, "flag")


@pytest.fixture(scope="module")
def rejected_job(service: Service, gated_uploads: dict[str, str]) -> dict[str, Any]:
    return _run(service, gated_uploads, "reject")


def _failed_verdict(gate: dict[str, Any], verdict: str) -> None:
    assert gate["verdict"] == verdict and gate["passed"] is False
    assert gate["metric"] == "rougeLsum" and gate["teacher"] == pytest.approx(100.0)
    assert gate["student"] < gate["teacher"]
    assert gate["drop"] == pytest.approx(gate["teacher"] - gate["student"])
    assert gate["relative_drop"] == pytest.approx(gate["drop"] / gate["teacher"])


def test_a_flagged_model_is_published_and_marked(service: Service, flagged_job: dict[str, Any]) -> None:
    assert flagged_job["status"] == "succeeded", flagged_job["error"]
    _failed_verdict(flagged_job["quality_gate"], "flagged")
    model = service.owner.get(f"/v1/models/{flagged_job['result_model']}").json()
    assert model["quality_gate"] == flagged_job["quality_gate"]
    events = all_events(service, flagged_job["id"])
    assert [e["data"]["quality_gate"] for e in events
            if e["data"].get("kind") == "quality_gate"] == [flagged_job["quality_gate"]]


def test_a_flagged_model_is_served_with_a_header_that_says_so(service: Service,
                                                               flagged_job: dict[str, Any]) -> None:
    response = service.owner.post(f"/v1/models/{flagged_job['result_model']}/summarize",
                                  json={"inputs": "a small tool to compress files"})
    assert response.status_code == 200, response.text
    assert response.headers[GATE_HEADER] == "failed"


def test_a_rejected_job_publishes_no_model(service: Service, rejected_job: dict[str, Any]) -> None:
    assert rejected_job["status"] == "rejected"
    assert rejected_job["error"]["code"] == "quality_gate_failed"
    assert rejected_job["error"]["param"] == "gate"
    assert rejected_job["result_model"] is None
    _failed_verdict(rejected_job["quality_gate"], "rejected")
    models = service.owner.get("/v1/models", params={"limit": 100}).json()["data"]
    assert rejected_job["id"] not in {m["job_id"] for m in models}


def test_a_rejected_job_keeps_its_report_and_metrics(service: Service, rejected_job: dict[str, Any]) -> None:
    events = all_events(service, rejected_job["id"])
    final = events[-1]["data"]
    assert final["kind"] == "rejected" and final["code"] == "quality_gate_failed"
    report = final["report"]
    assert report["quality_gate"] == rejected_job["quality_gate"]
    assert report["teacher_metrics"]["rougeLsum"] == rejected_job["quality_gate"]["teacher"]
    assert report["student_metrics"]["rougeLsum"] == rejected_job["quality_gate"]["student"]
    assert rejected_job["metrics"]
