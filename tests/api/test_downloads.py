"""Model download: the stored .tar with its checksum, ETag and byte ranges."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import ctranslate2
import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

from api.downloads import ByteRange, parse_range
from tests.api.conftest import Headers, upload_model
from web.errors import ApiError


@pytest.fixture
def model(client: TestClient, auth: Headers, teacher_archive: bytes) -> dict:
    return upload_model(client, auth, teacher_archive)


def test_download_is_a_plain_tar_matching_its_checksum(client: TestClient, auth: Headers,
                                                       model: dict) -> None:
    response = client.get(f"/v1/models/{model['id']}/download", headers=auth)
    assert response.status_code == 200
    digest = hashlib.sha256(response.content).hexdigest()
    assert digest == response.headers["X-Checksum-SHA256"] == model["sha256"]
    assert response.headers["ETag"] == f'"{digest}"'
    assert int(response.headers["Content-Length"]) == model["bytes"]
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tf:
        names = tf.getnames()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(names)


def test_the_ctranslate2_download_loads_in_plain_ctranslate2(client: TestClient, auth: Headers, model: dict,
                                                            tmp_path: Path) -> None:
    response = client.get(f"/v1/models/{model['id']}/download?format=ctranslate2", headers=auth)
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == response.headers["X-Checksum-SHA256"]
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tf:
        tf.extractall(tmp_path, filter="data")
    translator = ctranslate2.Translator(str(tmp_path))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    source = tokenizer.convert_ids_to_tokens(tokenizer("a tool to resize images")["input_ids"])
    assert translator.translate_batch([source], max_decoding_length=4)[0].hypotheses[0]
    again = client.get(f"/v1/models/{model['id']}/download?format=ctranslate2", headers=auth)
    assert again.content == response.content


def test_range_request_returns_206_with_that_slice(client: TestClient, auth: Headers, model: dict) -> None:
    whole = client.get(f"/v1/models/{model['id']}/download", headers=auth).content
    part = client.get(f"/v1/models/{model['id']}/download", headers={**auth, "Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == whole[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert part.headers["X-Checksum-SHA256"] == model["sha256"]


def test_range_past_the_end_is_416(client: TestClient, auth: Headers, model: dict) -> None:
    response = client.get(f"/v1/models/{model['id']}/download",
                          headers={**auth, "Range": f"bytes={model['bytes']}-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{model['bytes']}"
    assert response.json()["error"]["code"] == "range_not_satisfiable"


def test_matching_etag_is_304(client: TestClient, auth: Headers, model: dict) -> None:
    response = client.get(f"/v1/models/{model['id']}/download",
                          headers={**auth, "If-None-Match": f'"{model["sha256"]}"'})
    assert response.status_code == 304
    assert response.content == b""


def test_stale_if_range_sends_the_whole_file(client: TestClient, auth: Headers, model: dict) -> None:
    response = client.get(f"/v1/models/{model['id']}/download",
                          headers={**auth, "Range": "bytes=0-9", "If-Range": '"old"'})
    assert response.status_code == 200
    assert len(response.content) == model["bytes"]


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("bytes=0-0", ByteRange(0, 0)),
    ("bytes=10-", ByteRange(10, 99)),
    ("bytes=-5", ByteRange(95, 99)),
    ("bytes=-500", ByteRange(0, 99)),
    ("bytes=90-1000", ByteRange(90, 99)),
    ("bytes=0-1,5-6", None),  # several ranges: the whole body is allowed
    ("items=0-1", None),
    ("bytes=x-y", None),
])
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-4", "bytes=-0"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_range(header, 100)
    assert caught.value.status == 416
