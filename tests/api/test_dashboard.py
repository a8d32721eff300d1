"""The dashboard's server side: page shells at /ui that hold no tenant data, its static files, and
the model report it draws (GET /v1/models/{id}/report). The pages in a browser: tests/browser/."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.ui import STATIC_URL
from store import tenants
from store.blobs import LocalBlobStore
from store.db import session_scope
from store.ids import new_id
from store.models import Artifact, Model
from store.settings import Settings
from tests.api.conftest import Headers, upload_model

PAGES = ("/ui/jobs", "/ui/models", "/ui/compare", "/ui/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV")
VENDOR = Path(__file__).resolve().parents[2] / "api" / "static" / "vendor" / "chartjs"


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_served_without_a_key_and_runs_only_our_scripts(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", response.text, flags=re.S)
    assert scripts and all('src="/ui/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert 'id="signin-form"' in response.text and 'type="password"' in response.text


def test_the_dashboard_opens_on_the_jobs_page(client: TestClient) -> None:
    response = client.get("/ui", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (307, "/ui/jobs")


@pytest.mark.parametrize("job_id", ["job_123", "mdl_01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                    "job_<img src=x onerror=alert(1)>"])
def test_a_job_page_for_a_malformed_id_is_a_4xx_in_the_error_shape(client: TestClient, job_id: str) -> None:
    response = client.get(f"/ui/jobs/{job_id}")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["param"] == "job_id"
    assert response.headers["content-type"] == "application/json"  # never markup built from the path


@pytest.mark.parametrize("name", ["ui.js", "ui.css", "jobs.js", "job.js", "models.js", "compare.js"])
def test_the_page_files_are_served(client: TestClient, name: str) -> None:
    assert client.get(f"{STATIC_URL}/{name}").status_code == 200


def test_the_charting_library_is_vendored_with_its_licence(client: TestClient) -> None:
    response = client.get(f"{STATIC_URL}/vendor/chartjs/chart.umd.min.js")
    assert response.status_code == 200 and "Chart.js v4" in response.text[:200]
    assert "MIT License" in (VENDOR / "LICENSE.md").read_text()


def store_job_model(settings: Settings, headers: Headers, report: dict[str, object], tmp_path: Path) -> str:
    """A model row as a finished job leaves it: a plain tar holding report.json beside its weights."""
    archive = tmp_path / "model.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (("model.safetensors", b"\0" * 64), ("report.json", json.dumps(report).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with session_scope(settings) as session:
        tenant = tenants.tenant_for_key(session, key=headers["Authorization"].removeprefix("Bearer "))
        assert tenant is not None
        model_id = new_id("mdl")
        blob = LocalBlobStore(settings.artifact_dir).put_file(f"{tenant.id}/models/{model_id}.tar", archive)
        artifact = Artifact(id=new_id("art"), tenant_id=tenant.id, kind="compressed_model", path=blob.key,
                            bytes=blob.bytes, sha256=blob.sha256)
        session.add(artifact)
        session.flush()
        session.add(Model(id=model_id, tenant_id=tenant.id, name="student", source="compression",
                          architecture="BartForConditionalGeneration", layers={"encoder": 1, "decoder": 1},
                          parameters=10, bytes=blob.bytes, sha256=blob.sha256, artifact_id=artifact.id,
                          task="summarization"))
    return model_id


def test_a_job_made_model_reports_teacher_and_student_metrics(client: TestClient, api_settings: Settings,
                                                               new_tenant: Callable[[], Headers],
                                                               tmp_path: Path) -> None:
    owner, stranger = new_tenant(), new_tenant()
    report = {"teacher_metrics": {"rougeLsum": 0.4}, "student_metrics": {"rougeLsum": 0.35},
              "teacher_bytes": 4000, "student_bytes": 500, "compression_ratio": 8.0}
    model_id = store_job_model(api_settings, owner, report, tmp_path)
    response = client.get(f"/v1/models/{model_id}/report", headers=owner)
    assert response.status_code == 200 and response.json() == report
    theirs = client.get(f"/v1/models/{model_id}/report", headers=stranger)
    assert (theirs.status_code, theirs.json()["error"]["code"]) == (404, "not_found")


def test_an_uploaded_model_has_no_report(client: TestClient, auth: Headers, teacher_archive: bytes) -> None:
    model = upload_model(client, auth, teacher_archive)
    response = client.get(f"/v1/models/{model['id']}/report", headers=auth)
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "no_report", "param": "id",
                                        "message": f"model {model['id']!r} was uploaded, not made by a job: "
                                                   "it has no report"}
