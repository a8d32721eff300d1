"""Model and dataset uploads: good archives are stored, hostile or broken ones leave nothing behind."""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from store import tenants
from store.db import session_scope
from store.settings import Settings
from tests.api.conftest import UPLOAD_LIMIT, Headers, jsonl_bytes, upload_model
from tests.tiny import make_tiny_teacher


def stored_files(settings: Settings) -> list[Path]:
    """Every blob and temp file of the installation (uploads must not leave strays)."""
    roots = [settings.artifact_dir, settings.DATA_DIR / "tmp"]
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


def tar_with(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buffer.getvalue()


def teacher_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def post_model(client: TestClient, headers: Headers, archive: bytes, filename: str = "m.tar") -> dict:
    return client.post("/v1/models", headers=headers, files={"file": (filename, archive)}).json()


def test_tar_gz_upload_reports_architecture_layers_and_checksum(client: TestClient, auth: Headers,
                                                                 teacher_archive: bytes) -> None:
    model = upload_model(client, auth, teacher_archive)
    assert model["id"].startswith("mdl_")
    assert model["name"] == "teacher"
    assert model["source"] == "upload"
    assert model["architecture"] == "BartForConditionalGeneration"
    assert model["layers"] == {"encoder": 2, "decoder": 2}
    assert model["parameters"] > 0
    assert len(model["sha256"]) == 64
    assert model.pop("dropped_files") == []
    assert client.get(f"/v1/models/{model['id']}", headers=auth).json() == model


def test_mbart_teacher_is_accepted(client: TestClient, auth: Headers, tmp_path: Path) -> None:
    teacher = make_tiny_teacher(tmp_path / "mbart", encoder_layers=1, decoder_layers=3, mbart=True)
    model = upload_model(client, auth, tar_with(teacher_files(teacher)), "mbart.tar")
    assert model["architecture"] == "MBartForConditionalGeneration"
    assert model["layers"] == {"encoder": 1, "decoder": 3}


def test_plain_tar_with_files_at_the_root_is_accepted(client: TestClient, auth: Headers,
                                                      tiny_teacher_dir: Path) -> None:
    model = upload_model(client, auth, tar_with(teacher_files(tiny_teacher_dir)), "teacher.tar")
    assert model["layers"] == {"encoder": 2, "decoder": 2}


def test_zip_upload_is_accepted_and_named_by_the_form_field(client: TestClient, auth: Headers,
                                                            tiny_teacher_dir: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in teacher_files(tiny_teacher_dir).items():
            zf.writestr(f"my-teacher/{name}", data)
    response = client.post("/v1/models", headers=auth, files={"file": ("x.zip", buffer.getvalue())},
                           data={"name": "bart-tiny"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "bart-tiny"


@pytest.mark.parametrize(("name", "expected"), [
    ("../evil.txt", "path traversal"),
    ("teacher/../../evil.txt", "path traversal"),
    ("/etc/evil.txt", "absolute path"),
])
def test_hostile_member_names_are_refused(client: TestClient, auth: Headers, api_settings: Settings,
                                          tiny_teacher_dir: Path, name: str, expected: str) -> None:
    before = stored_files(api_settings)
    archive = tar_with({**teacher_files(tiny_teacher_dir), name: b"x"})
    response = client.post("/v1/models", headers=auth, files={"file": ("m.tar", archive)})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"
    assert expected in response.json()["error"]["message"]
    assert stored_files(api_settings) == before


def test_symlink_in_tar_is_refused(client: TestClient, auth: Headers, tiny_teacher_dir: Path) -> None:
    archive = tar_with(teacher_files(tiny_teacher_dir), links={"tokenizer_link.json": "/etc/passwd"})
    response = post_model(client, auth, archive)
    assert "links are refused" in response["error"]["message"]


def test_symlink_in_zip_is_refused(client: TestClient, auth: Headers) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("config.json")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    assert "links are refused" in post_model(client, auth, buffer.getvalue(), "m.zip")["error"]["message"]


@pytest.mark.parametrize(("drop", "expected"), [
    ("model.safetensors", "model.safetensors is missing"),
    ("tokenizer.json", "tokenizer files are missing"),
    ("config.json", "no config.json"),
])
def test_incomplete_model_directory_is_refused(client: TestClient, auth: Headers, tiny_teacher_dir: Path,
                                               drop: str, expected: str) -> None:
    files = teacher_files(tiny_teacher_dir)
    del files[drop]
    assert expected in post_model(client, auth, tar_with(files))["error"]["message"]


def test_non_bart_config_is_refused(client: TestClient, auth: Headers, tiny_teacher_dir: Path) -> None:
    files = teacher_files(tiny_teacher_dir)
    config = json.loads(files["config.json"])
    files["config.json"] = json.dumps({**config, "model_type": "t5"}).encode()
    assert "expected 'bart' or 'mbart'" in post_model(client, auth, tar_with(files))["error"]["message"]


def test_config_and_weights_that_disagree_are_refused(client: TestClient, auth: Headers,
                                                      tiny_teacher_dir: Path) -> None:
    files = teacher_files(tiny_teacher_dir)
    config = json.loads(files["config.json"])
    files["config.json"] = json.dumps({**config, "encoder_layers": 3}).encode()
    assert "config.json says 3" in post_model(client, auth, tar_with(files))["error"]["message"]


def test_not_an_archive_is_refused(client: TestClient, auth: Headers) -> None:
    assert "not a .tar" in post_model(client, auth, b"just some text")["error"]["message"]


def test_upload_over_the_limit_is_413_and_leaves_nothing(client: TestClient, auth: Headers,
                                                         api_settings: Settings) -> None:
    before = stored_files(api_settings)
    too_big = b"\0" * (UPLOAD_LIMIT + 1)
    response = client.post("/v1/models", headers=auth, files={"file": ("big.tar", too_big)})
    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("payload_too_large", "file")
    assert str(UPLOAD_LIMIT) in error["message"]
    assert stored_files(api_settings) == before


def test_archive_that_unpacks_past_the_limit_is_refused(client: TestClient, auth: Headers) -> None:
    bomb = tar_bytes_of_zeros(UPLOAD_LIMIT * 2)
    assert len(bomb) < UPLOAD_LIMIT
    assert "unpacks to more than" in post_model(client, auth, bomb, "bomb.tar.gz")["error"]["message"]


def tar_bytes_of_zeros(size: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo("config.json")
        info.size = size
        tf.addfile(info, io.BytesIO(b"\0" * size))
    return buffer.getvalue()


def test_body_that_is_not_multipart_is_415(client: TestClient, auth: Headers) -> None:
    response = client.post("/v1/models", headers=auth, content=b"raw")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_multipart_without_the_file_field_is_400(client: TestClient, auth: Headers) -> None:
    response = client.post("/v1/datasets", headers=auth, files={"other": ("a.jsonl", b"{}\n")})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


def test_jsonl_dataset_reports_rows_columns_and_preview(client: TestClient, auth: Headers) -> None:
    response = client.post("/v1/datasets", headers=auth, files={"file": ("train.jsonl", jsonl_bytes(12))})
    assert response.status_code == 201
    dataset = response.json()
    assert (dataset["format"], dataset["rows"], dataset["columns"]) == ("jsonl", 12, ["document", "summary"])
    assert dataset["preview"][0] == {"document": "document 0", "summary": "summary 0"}
    assert len(dataset["preview"]) == 5
    assert dataset["name"] == "train"


def test_csv_dataset_reports_rows_and_columns(client: TestClient, auth: Headers) -> None:
    csv_text = b"source,target\nhello,hallo\n\"a, b\",\"c\"\n"
    dataset = client.post("/v1/datasets", headers=auth, files={"file": ("pairs.csv", csv_text)}).json()
    assert (dataset["format"], dataset["rows"], dataset["columns"]) == ("csv", 2, ["source", "target"])
    assert dataset["preview"][1] == {"source": "a, b", "target": "c"}


@pytest.mark.parametrize(("filename", "data", "expected"), [
    ("bad.jsonl", b'{"a": 1}\nnot json\n', "line 2 is not valid JSON"),
    ("list.jsonl", b"[1, 2]\n", "line 1 is not a JSON object"),
    ("empty.jsonl", b"\n\n", "no rows"),
    ("latin.csv", "a,b\ncaf\xe9,x\n".encode("latin-1"), "not UTF-8"),
    ("data.parquet", b"PAR1", "expected a .jsonl or .csv"),
])
def test_bad_dataset_is_400_and_leaves_nothing(client: TestClient, auth: Headers, api_settings: Settings,
                                               filename: str, data: bytes, expected: str) -> None:
    before = stored_files(api_settings)
    response = client.post("/v1/datasets", headers=auth, files={"file": (filename, data)})
    assert response.status_code == 400
    assert expected in response.json()["error"]["message"]
    assert stored_files(api_settings) == before


def test_upload_past_the_tenant_storage_limit_is_413_and_leaves_nothing(client: TestClient,
                                                                       api_settings: Settings) -> None:
    with session_scope(api_settings) as session:
        tenant = tenants.create_tenant(session, name=f"small-{uuid.uuid4().hex[:8]}", storage_limit_bytes=500)
        headers = {"Authorization": f"Bearer {tenants.create_key(session, tenant_id=tenant.id)[1]}"}
    first = client.post("/v1/datasets", headers=headers, files={"file": ("a.jsonl", jsonl_bytes(3))})
    assert first.status_code == 201
    before = stored_files(api_settings)
    response = client.post("/v1/datasets", headers=headers, files={"file": ("b.jsonl", jsonl_bytes(10))})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "storage_limit_exceeded"
    assert stored_files(api_settings) == before


@pytest.mark.parametrize(("filename", "data"), [
    ("bom.jsonl", b'\xef\xbb\xbf{"document": "d", "summary": "s"}\n'),
    ("bom.csv", b"\xef\xbb\xbfdocument,summary\nd,s\n"),
])
def test_a_utf8_byte_order_mark_is_skipped(client: TestClient, auth: Headers, filename: str,
                                           data: bytes) -> None:
    response = client.post("/v1/datasets", headers=auth, files={"file": (filename, data)})
    assert response.status_code == 201, response.text
    assert response.json()["columns"] == ["document", "summary"]


def test_the_sweep_of_stale_temporaries_is_counted_in_metrics(api_settings: Settings, auth: Headers) -> None:
    api_settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    orphan = api_settings.tmp_dir / "upload-orphan"
    orphan.write_bytes(b"x" * 10)
    os.utime(orphan, (0, 0))  # long ago, and nobody holds its lock: a dead process's
    with TestClient(create_app(api_settings)) as fresh:
        text = fresh.get("/metrics", headers=auth).text
    assert not orphan.exists()
    assert "dqbart_tmp_swept_entries_total 1.0" in text
    assert "dqbart_tmp_swept_bytes_total 10.0" in text
