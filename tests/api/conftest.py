"""In-process API tests: FastAPI's TestClient on one migrated SQLite database per session.

Tests keep apart by making their own tenants (`new_tenant`), so the app and database are shared.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from store import tenants
from store.db import session_scope, upgrade_database
from store.settings import Settings

Headers = dict[str, str]
UPLOAD_LIMIT = 3_000_000


@pytest.fixture(scope="session")
def api_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(DATA_DIR=tmp_path_factory.mktemp("api-data"), MAX_UPLOAD_BYTES=UPLOAD_LIMIT)
    upgrade_database(settings)
    return settings


@pytest.fixture(scope="session")
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings), raise_server_exceptions=False) as test_client:
        yield test_client


def make_key(settings: Settings, name: str) -> str:
    with session_scope(settings) as session:
        tenant = tenants.get_or_create_tenant(session, name=name)
        return tenants.create_key(session, tenant_id=tenant.id)[1]


@pytest.fixture
def new_tenant(api_settings: Settings) -> Callable[[], Headers]:
    """Headers with the key of a fresh tenant."""
    return lambda: {"Authorization": f"Bearer {make_key(api_settings, f'tenant-{uuid.uuid4().hex[:10]}')}"}


@pytest.fixture
def auth(new_tenant: Callable[[], Headers]) -> Headers:
    return new_tenant()


def tar_bytes(folder: Path, arcname: str = "teacher", mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        tf.add(folder, arcname=arcname)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def teacher_archive(tiny_teacher_dir: Path) -> bytes:
    return tar_bytes(tiny_teacher_dir)


def jsonl_bytes(rows: int) -> bytes:
    return "".join(json.dumps({"document": f"document {i}", "summary": f"summary {i}"}) + "\n"
                   for i in range(rows)).encode()


def upload_model(client: TestClient, headers: Headers, archive: bytes,
                 filename: str = "teacher.tar.gz") -> dict:
    response = client.post("/v1/models", headers=headers, files={"file": (filename, archive)})
    assert response.status_code == 201, response.text
    return response.json()


def upload_dataset(client: TestClient, headers: Headers, rows: int = 12) -> dict:
    files = {"file": ("train.jsonl", jsonl_bytes(rows))}
    response = client.post("/v1/datasets", headers=headers, files=files)
    assert response.status_code == 201, response.text
    return response.json()


def tiny_recipe(model_id: str, dataset_id: str, **overrides: object) -> dict:
    recipe = {
        "teacher": {"model": model_id},
        "dataset": {"dataset": dataset_id, "source_field": "document", "target_field": "summary"},
        "student": {"encoder_layers": 1, "decoder_layers": 1},
        "training": {"max_steps": 2, "batch_size": 2, "checkpoint_every": 1},
        "evaluation": {"num_beams": 1, "max_length": 8},
    }
    recipe.update(overrides)
    return recipe


Uploads = tuple[str, str]  # (model id, dataset id)
UploadsFor = Callable[..., tuple[Headers, Uploads]]


@pytest.fixture
def uploads(client: TestClient, auth: Headers, teacher_archive: bytes) -> Uploads:
    return upload_model(client, auth, teacher_archive)["id"], upload_dataset(client, auth)["id"]


@pytest.fixture
def uploads_for(client: TestClient, api_settings: Settings, teacher_archive: bytes) -> UploadsFor:
    """A new tenant with the given limits, its key's headers, and its uploads."""
    def make(**limits: int) -> tuple[Headers, Uploads]:
        with session_scope(api_settings) as session:
            tenant = tenants.create_tenant(session, name=f"limited-{uuid.uuid4().hex[:8]}", **limits)
            headers = {"Authorization": f"Bearer {tenants.create_key(session, tenant_id=tenant.id)[1]}"}
        model = upload_model(client, headers, teacher_archive)["id"]
        return headers, (model, upload_dataset(client, headers)["id"])
    return make


def queued_job_ids(settings: Settings) -> list[str]:
    """Job ids of the task messages waiting in the filesystem broker's folder."""
    ids = []
    for path in (settings.broker_dir / "queue").glob("*.msg"):
        message = json.loads(path.read_text())
        if message["headers"]["task"] == "dqbart.run_job":
            ids.append(message["headers"]["argsrepr"].strip("[]'\""))
    return ids
