"""Security: keys on every route but /health, keys hashed and never logged, revocation from the CLI,
per-tenant limits, archives extracted only inside their folder, and no pickle ever loaded."""

from __future__ import annotations

import logging
import re
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api import cli
from api.main import create_app
from compression.errors import ModelError
from compression.recipe import TeacherSpec
from compression.teacher import load_teacher
from serving.loading import unpack_artifact
from store import catalog, tenants
from store.blobs import LocalBlobStore, sha256_file
from store.db import session_scope, upgrade_database
from store.models import Base
from store.settings import Settings, get_settings
from tests.reliability import hostile
from worker.refs import model_directory

PUBLIC = {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}  # no tenant data
DASHBOARD = "/ui"  # page shells and scripts; the page sends the key on its own /v1 calls
SOURCES = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(DATA_DIR=tmp_path_factory.mktemp("security"), MAX_CONCURRENT_JOBS=1,
                        STORAGE_LIMIT_BYTES=600_000)
    upgrade_database(settings)
    return settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def new_key(settings: Settings) -> tuple[str, str, str]:
    """(tenant id, key id, plaintext) of a fresh tenant."""
    with session_scope(settings) as session:
        tenant = tenants.create_tenant(session, name=f"t-{uuid.uuid4().hex[:10]}")
        row, plaintext = tenants.create_key(session, tenant_id=tenant.id)
        return tenant.id, row.id, plaintext


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:  # included routers keep their own routes (FastAPI wraps them)
        yield from _routes(route.original_router.routes) if hasattr(route, "original_router") else [route]


def public(path: str) -> bool:
    return path in PUBLIC or path == DASHBOARD or path.startswith(f"{DASHBOARD}/")


def every_operation(client: TestClient) -> list[tuple[str, str]]:
    """(method, path with dummy ids) of every route the app serves, documented or not."""
    operations = []
    for route in _routes(client.app.routes):  # type: ignore[attr-defined]
        methods = set(getattr(route, "methods", None) or ()) - {"HEAD", "OPTIONS"}
        path = re.sub(r"\{[^}]+\}", "job_01ARZ3NDEKTSV4RRFFQ69G5FAV", route.path)
        operations += [(m, path) for m in sorted(methods) if not public(route.path)]
    return operations


def test_every_route_but_health_needs_a_valid_unrevoked_key(client: TestClient, settings: Settings) -> None:
    tenant_id, key_id, key = new_key(settings)
    with session_scope(settings) as session:
        tenants.revoke_key(session, tenant_id=tenant_id, key_id=key_id)
    operations = every_operation(client)
    assert ("GET", "/metrics") in operations and len(operations) >= 15
    for headers in ({}, bearer("dqb_unknown"), bearer(key), {"Authorization": "Basic dXNlcjpwYXNz"}):
        for method, path in operations:  # a valid body, so that only the key can be wrong
            response = client.request(method, path, headers=headers,
                                      json={"inputs": "some text"} if method == "POST" else None)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/health").status_code == 200


def test_keys_are_stored_hashed_and_never_logged(client: TestClient, settings: Settings,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tenant_id, key_id, key = new_key(settings)
    for path in ("/v1/jobs", "/v1/models/mdl_x/summarize", "/metrics", "/v1/nothing"):
        client.post(path, headers=bearer(key), json={"inputs": key})
        client.get(path, headers=bearer(key + "x"))
    with session_scope(settings) as session:
        tenants.revoke_key(session, tenant_id=tenant_id, key_id=key_id)
        rows = [repr(row.__dict__) for table in Base.__subclasses__()
                for row in session.scalars(select(table))]
    secret = key.removeprefix(tenants.KEY_PREFIX)
    assert caplog.records and secret not in caplog.text
    assert not any(secret in row for row in rows)
    assert any(tenants.hash_key(key) in row for row in rows)
    database = [p for p in settings.DATA_DIR.glob("dqbart.db*") if p.is_file()]
    assert database and not any(secret.encode() in p.read_bytes() for p in database)


def test_cli_revokes_a_key_by_its_id(client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DQB_DATA_DIR", str(settings.DATA_DIR))
    monkeypatch.delenv("DQB_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert cli.main(["keys", "create", "--tenant", "revocable"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        key, key_id = lines[-1], re.search(r"\b(key_\w+)\b", lines[0]).group(1)  # type: ignore[union-attr]
        assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
        assert cli.main(["keys", "revoke", key_id, "--tenant", "revocable"]) == 0
        assert client.get("/v1/jobs", headers=bearer(key)).status_code == 401
        assert cli.main(["keys", "revoke", key_id, "--tenant", "revocable"]) == 1  # already revoked
        assert cli.main(["keys", "revoke", key_id, "--tenant", "someone-else"]) == 1
    finally:
        get_settings.cache_clear()


def test_tenant_limits_answer_429_for_jobs_and_413_for_storage(client: TestClient, settings: Settings,
                                                               tiny_teacher_dir: Path) -> None:
    headers = bearer(new_key(settings)[2])
    model = client.post("/v1/models", headers=headers, files={
        "file": ("t.tar", hostile.tar_of(hostile.teacher_files(tiny_teacher_dir)))})
    assert model.status_code == 201, model.text  # the tiny teacher (440 kB) fits the 600 kB limit
    too_much = client.post("/v1/datasets", headers=headers, files={"file": ("d.jsonl", hostile.jsonl(4000))})
    assert (too_much.status_code, too_much.json()["error"]["code"]) == (413, "storage_limit_exceeded")
    dataset = client.post("/v1/datasets", headers=headers, files={"file": ("d.jsonl", hostile.jsonl(8))})
    recipe = {"teacher": {"model": model.json()["id"]}, "dataset": {
        "dataset": dataset.json()["id"], "source_field": "document", "target_field": "summary"}}
    assert client.post("/v1/jobs", headers=headers, json=recipe).status_code == 201
    second = client.post("/v1/jobs", headers=headers, json=recipe)
    assert (second.status_code, second.json()["error"]["code"]) == (429, "too_many_active_jobs")
    other = bearer(new_key(settings)[2])  # limits are per tenant
    small = client.post("/v1/datasets", headers=other, files={"file": ("d.jsonl", hostile.jsonl(8))})
    assert small.status_code == 201


def _hostile_tar(tmp_path: Path, teacher: Path, name: str, link: tuple[str, str] | None = None) -> Path:
    members = {**hostile.teacher_files(teacher), name: b"{}"}
    path = tmp_path / "hostile.tar"
    path.write_bytes(hostile.tar_of(members, links={name + ".lnk": link} if link else None))
    return path


@pytest.mark.parametrize(("name", "link"), [
    ("../escaped.json", None), ("ok.json", ("sym", "/etc/passwd")), ("ok.json", ("sym", "../../x")),
])
def test_worker_and_server_extract_a_stored_tar_only_inside_its_folder(settings: Settings, tmp_path: Path,
                                                                       tiny_teacher_dir: Path, name: str,
                                                                       link: tuple[str, str] | None) -> None:
    """Defence in depth: a tar that reached the blob store without the API's checks."""
    tar = _hostile_tar(tmp_path, tiny_teacher_dir, name, link)
    with pytest.raises(tarfile.FilterError):
        unpack_artifact(tar, sha256_file(tar), tmp_path / "serving-cache")
    tenant_id, model_id = new_key(settings)[0], f"mdl_{uuid.uuid4().hex[:8]}"
    blobs = LocalBlobStore(settings.artifact_dir)
    blob = blobs.put_file(f"{tenant_id}/models/{model_id}.tar", tar)
    with session_scope(settings) as session:
        catalog.create_model(session, model_id=model_id, tenant_id=tenant_id, name="h", source="upload",
                             architecture="BartForConditionalGeneration", layers={"encoder": 2, "decoder": 2},
                             parameters=0, blob=blob)
        with pytest.raises(tarfile.FilterError):
            model_directory(session, tenant_id=tenant_id, model_id=model_id, settings=settings, blobs=blobs)
    assert not Path("/tmp/escaped.json").exists()
    assert not list(tmp_path.parent.glob("escaped.json"))
    assert not list(settings.DATA_DIR.rglob("escaped.json"))
    assert not (settings.cache_dir / "models" / model_id).exists()


def test_an_absolute_member_name_lands_below_the_folder(tmp_path: Path, tiny_teacher_dir: Path) -> None:
    tar = _hostile_tar(tmp_path, tiny_teacher_dir, "/tmp/escaped-absolute.json")
    folder = unpack_artifact(tar, sha256_file(tar), tmp_path / "serving-cache")
    assert (folder / "tmp" / "escaped-absolute.json").is_file()
    assert not Path("/tmp/escaped-absolute.json").exists()


def test_loader_refuses_pickle_weights_without_unpickling(tmp_path: Path, tiny_teacher_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    import torch

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    folder = tmp_path / "teacher"
    folder.mkdir()
    for name, data in hostile.teacher_files(tiny_teacher_dir).items():
        (folder / name).write_bytes(data)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"boom": 1}))
    with pytest.raises(ModelError, match="pickle"):
        load_teacher(TeacherSpec(path=str(folder)))
    (folder / "pytorch_model.bin").unlink()
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="model.safetensors"):
        load_teacher(TeacherSpec(path=str(folder)))


def test_no_source_file_unpickles_or_extracts_unchecked() -> None:
    pattern = re.compile(r"torch\.load\(|pickle\.loads?\(|weights_only=False"
                         r"|\.extractall\((?![^)]*filter=\"data\")")
    offenders = [f"{path.relative_to(SOURCES)}:{number}"
                 for package in ("api", "store", "worker", "serving", "compression")
                 for path in (SOURCES / package).rglob("*.py")
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                 if pattern.search(line)]
    assert offenders == []


def _owned(client: TestClient, headers: dict[str, str], teacher: Path) -> dict[str, str]:
    model = client.post("/v1/models", headers=headers, files={
        "file": ("t.tar", hostile.tar_of(hostile.teacher_files(teacher)))}).json()["id"]
    files = {"file": ("d.jsonl", hostile.jsonl(8))}
    dataset = client.post("/v1/datasets", headers=headers, files=files).json()
    recipe = {"teacher": {"model": model}, "dataset": {
        "dataset": dataset["id"], "source_field": "document", "target_field": "summary"}}
    keyed = {**headers, "Idempotency-Key": "same-key"}
    job = client.post("/v1/jobs", headers=keyed, json=recipe).json()
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)  # a free slot for the sweep's child
    sweep = client.post("/v1/sweeps", headers=keyed, json={
        "recipe": {**recipe, "training": {"max_steps": 2}}, "axes": {"bits": ["8-8-8"], "layers": ["1-1"]},
        "gate": {"max_drop": 0.1}}).json()
    return {"model_id": model, "dataset_id": dataset["id"], "job_id": job["id"], "sweep_id": sweep["id"]}


def test_every_route_with_an_id_hides_another_tenants_object(client: TestClient, settings: Settings,
                                                             tiny_teacher_dir: Path) -> None:
    owner, stranger = bearer(new_key(settings)[2]), bearer(new_key(settings)[2])
    ids = _owned(client, owner, tiny_teacher_dir)
    checked = 0
    for route in _routes(client.app.routes):  # type: ignore[attr-defined]
        names = re.findall(r"\{([^}]+)\}", route.path)
        if not names or public(route.path):
            continue
        path = route.path.format(**ids)
        for method in set(route.methods) - {"HEAD", "OPTIONS"}:
            body = {"inputs": "some text"} if method == "POST" else None
            theirs = client.request(method, path, headers=stranger, json=body)
            assert (theirs.status_code, theirs.json()["error"]["code"]) == (404, "not_found"), (method, path)
            # The owner never reads not_found (an upload's report is 404 no_report: it has none).
            mine = client.request(method, path, headers=owner, json=body)
            assert mine.status_code != 404 or mine.json()["error"]["code"] != "not_found", (method, path)
            checked += 1
    assert checked >= 11
    for kind in ("models", "datasets", "jobs", "sweeps"):
        assert client.get(f"/v1/{kind}", headers=stranger).json() == {"data": [], "has_more": False}


def test_the_same_idempotency_key_in_two_tenants_makes_two_jobs_and_two_sweeps(
        client: TestClient, settings: Settings, tiny_teacher_dir: Path) -> None:
    first = _owned(client, bearer(new_key(settings)[2]), tiny_teacher_dir)
    second = _owned(client, bearer(new_key(settings)[2]), tiny_teacher_dir)
    assert first["job_id"] != second["job_id"] and first["sweep_id"] != second["sweep_id"]
