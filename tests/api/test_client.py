"""dqbart_client.Client against the in-process app: resources, paging, typed errors, downloads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from dqbart_client import (
    AuthenticationError,
    BadRequestError,
    ChecksumMismatchError,
    Client,
    Dataset,
    DqbartError,
    Model,
    NotFoundError,
)
from tests.api.conftest import Headers, tiny_recipe


def key_of(headers: Headers) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def sdk(client: TestClient, auth: Headers) -> Client:
    return Client(api_key=key_of(auth), http_client=client)


@pytest.fixture
def teacher(sdk: Client, tiny_teacher_dir: Path) -> Model:
    return sdk.models.upload(tiny_teacher_dir, name="tiny")


@pytest.fixture
def dataset(sdk: Client, tmp_path: Path) -> Dataset:
    return sdk.datasets.upload(jsonl_file(tmp_path / "train.jsonl", rows=12))


def jsonl_file(path: Path, rows: int) -> Path:
    lines = (f'{{"document": "document {i}", "summary": "summary {i}"}}\n' for i in range(rows))
    path.write_text("".join(lines))
    return path


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DQB_API_URL", "http://dqbart.example:9000")
    monkeypatch.setenv("DQB_API_KEY", "dqb_test")
    with Client() as sdk:
        assert sdk.base_url == "http://dqbart.example:9000"


def test_a_client_without_a_key_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DQB_API_KEY", raising=False)
    with pytest.raises(DqbartError, match="DQB_API_KEY"):
        Client()


def test_a_wrong_key_raises_authentication_error_with_the_api_code(client: TestClient) -> None:
    with pytest.raises(AuthenticationError) as caught:
        Client(api_key="dqb_wrong", http_client=client).models.get("mdl_x")
    assert (caught.value.status_code, caught.value.code) == (401, "invalid_api_key")


def test_a_folder_uploads_as_a_model_with_its_layers(teacher: Model, tiny_teacher_dir: Path) -> None:
    assert teacher.id.startswith("mdl_") and teacher.name == "tiny"
    assert teacher.layers == {"encoder": 2, "decoder": 2} and teacher.source == "upload"


def test_an_unknown_model_raises_not_found_naming_the_id(sdk: Client) -> None:
    with pytest.raises(NotFoundError) as caught:
        sdk.models.get("mdl_missing")
    assert (caught.value.code, caught.value.param) == ("not_found", "id")


def test_dataset_upload_reports_rows_and_columns(dataset: Dataset) -> None:
    assert (dataset.rows, dataset.columns) == (12, ["document", "summary"])


def test_lists_iterate_over_every_cursor_page(sdk: Client, tmp_path: Path) -> None:
    uploaded = [sdk.datasets.upload(jsonl_file(tmp_path / f"d{i}.jsonl", rows=2)).id for i in range(3)]
    paged = [d.id for d in sdk.paginate("/v1/datasets", Dataset, page_size=1)]
    assert paged == uploaded[::-1]
    assert [d.id for d in sdk.datasets.list()] == paged


def test_a_bad_recipe_raises_bad_request_naming_the_field(sdk: Client, teacher: Model,
                                                          dataset: Dataset) -> None:
    recipe = tiny_recipe(teacher.id, dataset.id, student={"encoder_layers": 1, "decoder_layers": 7})
    with pytest.raises(BadRequestError) as caught:
        sdk.jobs.create(recipe)
    assert caught.value.param == "student.decoder_layers"


def test_a_replayed_idempotency_key_returns_the_first_job(sdk: Client, teacher: Model,
                                                          dataset: Dataset) -> None:
    recipe = tiny_recipe(teacher.id, dataset.id)
    first = sdk.jobs.create(recipe, idempotency_key="run-1")
    assert sdk.jobs.create(recipe, idempotency_key="run-1").id == first.id
    assert [job.id for job in sdk.jobs.list()] == [first.id]


def test_wait_returns_a_cancelled_job_and_reports_its_events(sdk: Client, teacher: Model,
                                                             dataset: Dataset) -> None:
    job = sdk.jobs.create(tiny_recipe(teacher.id, dataset.id))
    assert sdk.jobs.cancel(job.id).status == "cancelled"
    seen: list[tuple[str, int]] = []
    done = sdk.jobs.wait(job.id, on_progress=lambda j, events: seen.append((j.status, len(events))),
                         timeout=10)
    assert done.done and done.status == "cancelled"
    assert seen == [("cancelled", len(sdk.jobs.events(job.id)))]
    assert sdk.jobs.metrics(job.id) == [] and sdk.jobs.checkpoints(job.id) == []


def test_waiting_past_the_timeout_raises_naming_the_status(sdk: Client, teacher: Model,
                                                           dataset: Dataset) -> None:
    job = sdk.jobs.create(tiny_recipe(teacher.id, dataset.id))  # no worker here: it stays queued
    with pytest.raises(TimeoutError, match=f"job {job.id} is still queued"):
        sdk.jobs.wait(job.id, poll_interval=0, timeout=0)
    sweep = sdk.sweeps.create({"recipe": tiny_recipe(teacher.id, dataset.id),
                               "axes": {"bits": ["8-8-8"], "layers": ["1-1"]}, "gate": {"max_drop": 0.1}})
    seen: list[str] = []
    with pytest.raises(TimeoutError, match=f"sweep {sweep.id} is still running"):
        sdk.sweeps.wait(sweep.id, on_progress=lambda s: seen.append(s.status), poll_interval=0, timeout=0)
    assert seen == ["running"]


def test_download_checks_the_sha256_and_leaves_no_part_file(sdk: Client, teacher: Model,
                                                            tmp_path: Path) -> None:
    done = sdk.models.download(teacher.id, tmp_path / "teacher.tar")
    assert done.sha256 == teacher.sha256 == hashlib.sha256(done.path.read_bytes()).hexdigest()
    assert done.bytes == teacher.bytes and done.resumed_from == 0
    assert not (tmp_path / "teacher.tar.part").exists()


def test_download_resumes_from_an_interrupted_part_file(sdk: Client, teacher: Model, tmp_path: Path) -> None:
    whole = sdk.models.download(teacher.id, tmp_path / "whole.tar").path.read_bytes()
    (tmp_path / "again.tar.part").write_bytes(whole[:1000])
    done = sdk.models.download(teacher.id, tmp_path / "again.tar")
    assert done.resumed_from == 1000 and done.path.read_bytes() == whole


def test_a_corrupt_part_file_fails_the_check_and_is_removed(sdk: Client, teacher: Model,
                                                            tmp_path: Path) -> None:
    (tmp_path / "bad.tar.part").write_bytes(b"x" * 1000)
    with pytest.raises(ChecksumMismatchError):
        sdk.models.download(teacher.id, tmp_path / "bad.tar")
    assert not (tmp_path / "bad.tar.part").exists() and not (tmp_path / "bad.tar").exists()


class _CutStream(httpx.SyncByteStream):
    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise httpx.ReadError("connection reset by peer")


class CutFirstDownload(httpx.BaseTransport):
    """httpx requests answered by the in-process app, except that the first download's body breaks
    after `keep` bytes. (The TestClient is built on starlette's own HTTP library, whose errors
    are not httpx's: this adapter makes the cut an httpx.ReadError, as on a real connection.)"""

    def __init__(self, app: TestClient, keep: int) -> None:
        self.app, self.keep, self.cut = app, keep, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.app.request(request.method, str(request.url), headers=dict(request.headers),
                                  content=request.read())
        if self.cut or not request.url.path.endswith("/download"):
            return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)
        self.cut = True
        head = answer.content[:self.keep]
        return httpx.Response(answer.status_code, headers=answer.headers, stream=_CutStream(head))


def test_a_download_cut_mid_body_resumes_with_range(client: TestClient, auth: Headers, teacher: Model,
                                                    tmp_path: Path) -> None:
    transport = CutFirstDownload(client, keep=4096)
    with httpx.Client(transport=transport, base_url=str(client.base_url)) as flaky:
        done = Client(api_key=key_of(auth), http_client=flaky).models.download(teacher.id, tmp_path / "m.tar")
    assert transport.cut and done.sha256 == teacher.sha256 and done.bytes == teacher.bytes
