"""The bad-input table (docs/bad-inputs.md), tested in full through the real HTTP app.

Each named bad input gets a 4xx in the error shape {"error": {"code", "message", "param"}} with the
expected status, code and param, and leaves nothing half-stored: the same rows in every table and
the same files below DATA_DIR as before the request.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from api.main import create_app
from store import tenants
from store.db import session_scope, upgrade_database
from store.settings import Settings
from tests.reliability import hostile
from tests.reliability.stored import stored
from tests.tiny import REPO

UPLOAD_LIMIT = 12 * 1024 * 1024  # room for the 10 MB line, which must fail for its own reason
DOC = REPO / "docs" / "bad-inputs.md"


@dataclass
class World:
    """One installation: an owner with a teacher, a dataset and a queued job; a stranger likewise."""

    client: TestClient
    settings: Settings
    teacher: dict[str, bytes]
    owner: dict[str, str]  # headers
    stranger: dict[str, str]
    ids: dict[str, str]  # model, dataset, job; stranger_model, stranger_dataset, stranger_job

    def post_model(self, archive: bytes, filename: str = "teacher.tar") -> httpx.Response:
        return self.client.post("/v1/models", headers=self.owner, files={"file": (filename, archive)})

    def post_dataset(self, data: bytes, filename: str = "train.jsonl") -> httpx.Response:
        return self.client.post("/v1/datasets", headers=self.owner, files={"file": (filename, data)})

    def recipe(self, **overrides: Any) -> dict[str, Any]:
        recipe: dict[str, Any] = {
            "teacher": {"model": self.ids["model"]},
            "dataset": {"dataset": self.ids["dataset"], "source_field": "document",
                        "target_field": "summary"},
            "student": {"encoder_layers": 1, "decoder_layers": 1},
            "training": {"max_steps": 2, "batch_size": 2},
        }
        for section, values in overrides.items():
            recipe[section] = {**recipe.get(section, {}), **values} if isinstance(values, dict) else values
        return recipe

    def post_job(self, body: Any, **headers: str) -> httpx.Response:
        return self.client.post("/v1/jobs", headers={**self.owner, **headers}, json=body)

    def post_sweep(self, recipe: dict[str, Any] | None = None, **changes: Any) -> httpx.Response:
        body = {"recipe": recipe or self.recipe(), "axes": {"bits": ["8-8-8", "2-2-8"], "layers": ["1-1"]},
                "gate": {"max_drop": 0.05}, **changes}
        return self.client.post("/v1/sweeps", headers=self.owner, json=body)

    def post_multipart(self, body: bytes, boundary: str = "dqb-boundary") -> httpx.Response:
        headers = {**self.owner, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self.client.post("/v1/datasets", headers=headers, content=body)

    def post_raw_job(self, content: bytes, content_type: str) -> httpx.Response:
        headers = {**self.owner, "Content-Type": content_type}
        return self.client.post("/v1/jobs", headers=headers, content=content)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, headers=self.owner, params=params)

    def summarize(self, body: Any, model: str = "model") -> httpx.Response:
        return self.client.post(f"/v1/models/{self.ids[model]}/summarize", headers=self.owner, json=body)


def _key(settings: Settings, name: str) -> dict[str, str]:
    with session_scope(settings) as session:
        tenant = tenants.create_tenant(session, name=f"{name}-{uuid.uuid4().hex[:8]}")
        return {"Authorization": f"Bearer {tenants.create_key(session, tenant_id=tenant.id)[1]}"}


def _objects(client: TestClient, headers: dict[str, str], archive: bytes) -> dict[str, str]:
    model = client.post("/v1/models", headers=headers, files={"file": ("t.tar", archive)})
    dataset = client.post("/v1/datasets", headers=headers, files={"file": ("d.jsonl", hostile.jsonl(8))})
    assert model.status_code == dataset.status_code == 201, (model.text, dataset.text)
    recipe = {"teacher": {"model": model.json()["id"]},
              "dataset": {"dataset": dataset.json()["id"], "source_field": "document",
                          "target_field": "summary"}}
    job = client.post("/v1/jobs", headers=headers, json=recipe)
    assert job.status_code == 201, job.text
    return {"model": model.json()["id"], "dataset": dataset.json()["id"], "job": job.json()["id"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_teacher_dir: Path) -> Iterator[World]:
    settings = Settings(DATA_DIR=tmp_path_factory.mktemp("bad-inputs"), MAX_UPLOAD_BYTES=UPLOAD_LIMIT)
    upgrade_database(settings)
    teacher = hostile.teacher_files(tiny_teacher_dir)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        owner, stranger = _key(settings, "owner"), _key(settings, "stranger")
        archive = hostile.tar_of(teacher)
        ids = _objects(client, owner, archive)
        ids.update({f"stranger_{k}": v for k, v in _objects(client, stranger, archive).items()})
        # Loaded once now, so that the serving cache's files are there before any case counts files.
        warm = client.post(f"/v1/models/{ids['model']}/summarize", headers=owner, json={"inputs": "text"})
        assert warm.status_code == 200, warm.text
        yield World(client, settings, teacher, owner, stranger, ids)


Send = Callable[[World], httpx.Response]


@dataclass(frozen=True)
class BadInput:
    name: str
    status: int
    code: str
    param: str | None
    send: Send


def _members(extra: dict[str, bytes]) -> Send:
    return lambda w: w.post_model(hostile.tar_of({**w.teacher, **extra}))


def _weights(change: Callable[[dict[str, torch.Tensor]], None]) -> Send:
    return lambda w: w.post_model(hostile.tar_of(hostile.with_weights(w.teacher, change)))


def _recipe_text(text: Callable[[World], str]) -> Send:
    """A recipe body sent as written (JSON numbers such as Infinity, which json= cannot send)."""
    return lambda w: w.post_raw_job(text(w).encode(), "application/json")


FC1 = "model.encoder.layers.0.fc1.weight"
LONG_NAME_PART = (b'Content-Disposition: form-data; name="file"; filename="' + b"a" * 10_000 + b'.jsonl"',
                  hostile.jsonl(2))


def _without_safetensors(weights: dict[str, bytes]) -> Send:
    """A hub snapshot whose weights come only in formats the upload leaves unopened."""
    return lambda w: w.post_model(hostile.tar_of(
        {**{name: data for name, data in w.teacher.items() if name != "model.safetensors"}, **weights}))


INVALID, SCHEMA, MISSING = "invalid_request", "validation_error", "not_found"
UNKNOWN_JOB, UNKNOWN_MODEL = "job_01ARZ3NDEKTSV4RRFFQ69G5FAV", "mdl_01ARZ3NDEKTSV4RRFFQ69G5FAV"

CASES = [
    # recipes (POST /v1/jobs)
    BadInput("recipe: malformed JSON", 422, SCHEMA, None,
             lambda w: w.post_raw_job(b'{"teacher": {"model": ', "application/json")),
    BadInput("recipe: YAML body", 422, SCHEMA, None,
             lambda w: w.post_raw_job(b"teacher:\n  model: [unclosed\n", "application/yaml")),
    BadInput("recipe: JSON array instead of an object", 422, SCHEMA, None,
             lambda w: w.post_job([w.recipe()])),
    BadInput("recipe: unknown top-level field", 400, INVALID, "colour",
             lambda w: w.post_job(w.recipe(colour="blue"))),
    BadInput("recipe: unknown nested field", 400, INVALID, "training.learning_rate",
             lambda w: w.post_job(w.recipe(training={"learning_rate": 0.1}))),
    BadInput("recipe: weight_bits 5", 400, INVALID, "quantization.weight_bits",
             lambda w: w.post_job(w.recipe(quantization={"weight_bits": 5}))),
    BadInput("recipe: bits as a string", 400, INVALID, "quantization.embedding_bits",
             lambda w: w.post_job(w.recipe(quantization={"embedding_bits": "8"}))),
    BadInput("recipe: more student layers than the teacher", 400, INVALID, "student.decoder_layers",
             lambda w: w.post_job(w.recipe(student={"decoder_layers": 3}))),
    BadInput("recipe: layer index beyond the teacher", 400, INVALID, "student.encoder_layers",
             lambda w: w.post_job(w.recipe(student={"encoder_layers": [0, 2]}))),
    BadInput("recipe: duplicate layer indices", 400, INVALID, "student.encoder_layers",
             lambda w: w.post_job(w.recipe(student={"encoder_layers": [1, 1]}))),
    BadInput("recipe: dataset lacks the named column", 400, INVALID, "dataset.source_field",
             lambda w: w.post_job(w.recipe(dataset={"source_field": "article"}))),
    BadInput("recipe: teacher given as a server path", 400, INVALID, "teacher",
             lambda w: w.post_job(w.recipe(teacher={"path": "/etc"}))),
    BadInput("recipe: unknown teacher id", 400, INVALID, "teacher.model",
             lambda w: w.post_job(w.recipe(teacher={"model": UNKNOWN_MODEL}))),
    BadInput("recipe: another tenant's teacher", 400, INVALID, "teacher.model",
             lambda w: w.post_job(w.recipe(teacher={"model": w.ids["stranger_model"]}))),
    BadInput("recipe: another tenant's dataset", 400, INVALID, "dataset.dataset",
             lambda w: w.post_job(w.recipe(dataset={"dataset": w.ids["stranger_dataset"]}))),
    BadInput("recipe: negative learning rate", 400, INVALID, "training.lr",
             lambda w: w.post_job(w.recipe(training={"lr": -1.0}))),
    BadInput("recipe: infinite learning rate", 400, INVALID, "training.lr",
             _recipe_text(lambda w: json.dumps(w.recipe(training={"lr": float("inf")})))),
    BadInput("recipe: NaN loss weight", 400, INVALID, "distillation.hidden",
             _recipe_text(lambda w: json.dumps(w.recipe(distillation={"hidden": float("nan")})))),
    BadInput("recipe: learning rate above 1", 400, INVALID, "training.lr",
             lambda w: w.post_job(w.recipe(training={"lr": 1e30}))),
    BadInput("recipe: max_steps 2^70", 400, INVALID, "training.max_steps",
             lambda w: w.post_job(w.recipe(training={"max_steps": 2**70}))),
    BadInput("recipe: negative seed", 400, INVALID, "training.seed",
             lambda w: w.post_job(w.recipe(training={"seed": -1}))),
    BadInput("recipe: a byte that is not UTF-8 inside a string", 422, SCHEMA, None,
             lambda w: w.post_raw_job(b'{"teacher": {"model": "\xff"}}', "application/json")),
    BadInput("recipe: JSON nested 100 000 levels", 422, SCHEMA, None,
             lambda w: w.post_raw_job(hostile.nested_json(100_000), "application/json")),
    BadInput("recipe: empty Idempotency-Key", 400, INVALID, "Idempotency-Key",
             lambda w: w.post_job(w.recipe(), **{"Idempotency-Key": ""})),
    # datasets (POST /v1/datasets)
    BadInput("dataset: empty file", 400, INVALID, "file", lambda w: w.post_dataset(b"")),
    BadInput("dataset: not UTF-8", 400, INVALID, "file",
             lambda w: w.post_dataset('{"document": "caf\xe9"}\n'.encode("latin-1"))),
    BadInput("dataset: a line that is not JSON", 400, INVALID, "file",
             lambda w: w.post_dataset(hostile.jsonl(2) + b"{not json\n")),
    BadInput("dataset: a JSON line that is not an object", 400, INVALID, "file",
             lambda w: w.post_dataset(b"[1, 2]\n")),
    BadInput("dataset: a 10 MB line", 400, INVALID, "file",
             lambda w: w.post_dataset(hostile.long_line_jsonl(10 * 1024 * 1024))),
    BadInput("dataset: CSV row with a missing field", 400, INVALID, "file",
             lambda w: w.post_dataset(b"document,summary\na,b\nc\n", "d.csv")),
    BadInput("dataset: CSV row with an extra field", 400, INVALID, "file",
             lambda w: w.post_dataset(b"document,summary\na,b,c\n", "d.csv")),
    BadInput("dataset: CSV header naming a column twice", 400, INVALID, "file",
             lambda w: w.post_dataset(b"document,document\na,b\n", "d.csv")),
    BadInput("dataset: unsupported file type", 400, INVALID, "file",
             lambda w: w.post_dataset(b"PAR1", "d.parquet")),
    BadInput("dataset: a JSONL line nested 100 000 levels", 400, INVALID, "file",
             lambda w: w.post_dataset(hostile.nested_json(100_000) + b"\n")),
    BadInput("dataset: a multipart part header of 10 000 characters", 400, INVALID, "file",
             lambda w: w.post_multipart(hostile.multipart([LONG_NAME_PART]))),
    BadInput("dataset: a multipart body without its boundary", 400, INVALID, "file",
             lambda w: w.post_multipart(b"no boundary in here\r\n")),
    # model archives (POST /v1/models)
    BadInput("model: path traversal (../)", 400, INVALID, "file", _members({"../evil.json": b"{}"})),
    BadInput("model: absolute path", 400, INVALID, "file", _members({"/tmp/evil.json": b"{}"})),
    BadInput("model: symbolic link", 400, INVALID, "file",
             lambda w: w.post_model(hostile.tar_of(w.teacher, links={"vocab.json": ("sym", "/etc/passwd")}))),
    BadInput("model: hard link", 400, INVALID, "file",
             lambda w: w.post_model(hostile.tar_of(w.teacher, links={"x.json": ("hard", "/etc/passwd")}))),
    BadInput("model: pickle weights, no safetensors", 400, INVALID, "file",
             _without_safetensors({"pytorch_model.bin": b"\x80\x04K\x01."})),
    BadInput("model: TF weights, no safetensors", 400, INVALID, "file",
             _without_safetensors({"tf_model.h5": b"\x89HDF\r\n"})),
    BadInput("model: zip bomb", 400, INVALID, "file",
             lambda w: w.post_model(hostile.zip_bomb(2 * UPLOAD_LIMIT), "bomb.zip")),
    BadInput("model: not BART (model_type t5)", 400, INVALID, "file",
             lambda w: w.post_model(hostile.tar_of(hostile.with_config(w.teacher, model_type="t5")))),
    BadInput("model: no tokenizer", 400, INVALID, "file",
             lambda w: w.post_model(hostile.tar_of(hostile.without(w.teacher, "tokenizer.json")))),
    BadInput("model: no weights", 400, INVALID, "file",
             lambda w: w.post_model(hostile.tar_of(hostile.without(w.teacher, "model.safetensors")))),
    BadInput("model: corrupt safetensors header", 400, INVALID, "file",
             lambda w: w.post_model(hostile.tar_of({**w.teacher,
                                                    "model.safetensors": hostile.bad_safetensors_header()}))),
    BadInput("model: a tensor whose shape disagrees with the config", 400, INVALID, "file",
             _weights(lambda t: t.update({FC1: t[FC1].T.contiguous()}))),
    BadInput("model: a tensor the architecture lacks", 400, INVALID, "file",
             _weights(lambda t: t.update({"model.encoder.extra.weight": torch.zeros(2)}))),
    BadInput("model: a tensor missing", 400, INVALID, "file", _weights(lambda t: t.pop(FC1))),
    BadInput("model: integer weights", 400, INVALID, "file",
             _weights(lambda t: t.update({FC1: t[FC1].to(torch.int32)}))),
    BadInput("model: NaN weights", 400, INVALID, "file",
             _weights(lambda t: t[FC1].view(-1).__setitem__(0, float("nan")))),
    BadInput("model: not an archive", 400, INVALID, "file", lambda w: w.post_model(b"plain text")),
    BadInput("model: truncated gzip", 400, INVALID, "file",
             lambda w: w.post_model(hostile.tar_of(w.teacher, mode="w:gz")[:4000], "t.tar.gz")),
    BadInput("model: over the upload limit", 413, "payload_too_large", "file",
             lambda w: w.post_model(b"\0" * (UPLOAD_LIMIT + 1))),
    BadInput("model: body not multipart", 415, "unsupported_media_type", "file",
             lambda w: w.client.post("/v1/models", headers=w.owner, content=b"raw bytes")),
    # ids, cursors, limits, keys
    BadInput("unknown job id", 404, MISSING, "id", lambda w: w.get(f"/v1/jobs/{UNKNOWN_JOB}")),
    BadInput("another tenant's job", 404, MISSING, "id",
             lambda w: w.get(f"/v1/jobs/{w.ids['stranger_job']}")),
    BadInput("another tenant's model", 404, MISSING, "id",
             lambda w: w.get(f"/v1/models/{w.ids['stranger_model']}/download")),
    BadInput("another tenant's dataset", 404, MISSING, "id",
             lambda w: w.get(f"/v1/datasets/{w.ids['stranger_dataset']}")),
    BadInput("cancel another tenant's job", 404, MISSING, "id",
             lambda w: w.client.post(f"/v1/jobs/{w.ids['stranger_job']}/cancel", headers=w.owner)),
    BadInput("bad cursor", 422, SCHEMA, "after", lambda w: w.get("/v1/jobs", after="garbage")),
    BadInput("cursor of another kind of object", 422, SCHEMA, "after",
             lambda w: w.get("/v1/models", after=w.ids["job"])),
    BadInput("event cursor not a number", 422, SCHEMA, "after",
             lambda w: w.get(f"/v1/jobs/{w.ids['job']}/events", after="abc")),
    BadInput("event cursor beyond the database's integer", 422, SCHEMA, "after",
             lambda w: w.get(f"/v1/jobs/{w.ids['job']}/events", after=2**70)),
    BadInput("negative limit", 422, SCHEMA, "limit", lambda w: w.get("/v1/jobs", limit=-1)),
    BadInput("limit too large", 422, SCHEMA, "limit", lambda w: w.get("/v1/datasets", limit=1000)),
    BadInput("no API key", 401, "invalid_api_key", None, lambda w: w.client.get("/v1/jobs")),
    BadInput("unknown API key", 401, "invalid_api_key", None,
             lambda w: w.client.get("/v1/jobs", headers={"Authorization": "Bearer dqb_nope"})),
    # inference (POST /v1/models/{id}/summarize)
    BadInput("summarize: empty input", 422, SCHEMA, "inputs", lambda w: w.summarize({"inputs": ""})),
    BadInput("summarize: empty list", 422, SCHEMA, "inputs", lambda w: w.summarize({"inputs": []})),
    BadInput("summarize: oversized input", 422, SCHEMA, "inputs",
             lambda w: w.summarize({"inputs": "word " * 25_000})),
    BadInput("summarize: too many inputs", 422, SCHEMA, "inputs",
             lambda w: w.summarize({"inputs": ["text"] * 65})),
    BadInput("summarize: num_beams 0", 422, SCHEMA, "parameters.num_beams",
             lambda w: w.summarize({"inputs": "text", "parameters": {"num_beams": 0}})),
    BadInput("summarize: unknown parameter", 422, SCHEMA, "parameters.temperature",
             lambda w: w.summarize({"inputs": "text", "parameters": {"temperature": 0.7}})),
    BadInput("summarize: min_length above max_length", 422, SCHEMA, "parameters",
             lambda w: w.summarize({"inputs": "text", "parameters": {"min_length": 9, "max_length": 3}})),
    BadInput("summarize: max_length beyond the model's position table", 422, SCHEMA, "parameters.max_length",
             lambda w: w.summarize({"inputs": "text", "parameters": {"max_length": 1000}})),
    BadInput("summarize: min_new_tokens beyond the model's position table", 422, SCHEMA,
             "parameters.min_new_tokens",
             lambda w: w.summarize({"inputs": "text", "parameters": {"min_new_tokens": 900}})),
    BadInput("summarize: a dataset id in place of a model", 404, MISSING, "id",
             lambda w: w.summarize({"inputs": "text"}, model="dataset")),
    BadInput("summarize: another tenant's model", 404, MISSING, "id",
             lambda w: w.summarize({"inputs": "text"}, model="stranger_model")),
    # quality gates (the recipe's `gate`, POST /v1/jobs)
    BadInput("gate: no max_drop", 400, INVALID, "gate.max_drop",
             lambda w: w.post_job(w.recipe(gate={"on_fail": "reject"}))),
    BadInput("gate: negative max_drop", 400, INVALID, "gate.max_drop",
             lambda w: w.post_job(w.recipe(gate={"max_drop": -0.1}))),
    BadInput("gate: relative max_drop above 1", 400, INVALID, "gate.max_drop",
             lambda w: w.post_job(w.recipe(gate={"max_drop": 2, "drop": "relative"}))),
    BadInput("gate: a metric the task does not report", 400, INVALID, "gate.metric",
             lambda w: w.post_job(w.recipe(gate={"max_drop": 0.02, "metric": "bleu"}))),
    BadInput("gate: unknown on_fail", 400, INVALID, "gate.on_fail",
             lambda w: w.post_job(w.recipe(gate={"max_drop": 0.02, "on_fail": "delete"}))),
    # sweeps (POST /v1/sweeps)
    BadInput("sweep: a layer plan deeper than the teacher", 400, INVALID, "axes.layers",
             lambda w: w.post_sweep(axes={"bits": ["8-8-8"], "layers": ["3-1"]})),
    BadInput("sweep: bit widths that are not W-E-A", 400, INVALID, "axes.bits",
             lambda w: w.post_sweep(axes={"bits": ["8-8"], "layers": ["1-1"]})),
    BadInput("sweep: more than 64 points", 400, INVALID, "axes",
             lambda w: w.post_sweep(axes={"bits": ["8-8-8", "4-4-8", "2-2-8", "8-2-8", "2-8-8", "4-8-8",
                                                   "8-4-8", "2-4-8"],
                                          "layers": ["1-1", "2-1", "1-2", "2-2"],
                                          "methods": ["dq", "ptq", "qat_only"]})),
    BadInput("sweep: a base recipe without max_steps", 400, INVALID, "recipe.training.max_steps",
             lambda w: w.post_sweep(w.recipe(training={"max_steps": None}))),
    BadInput("sweep: a base recipe with its own gate", 400, INVALID, "recipe.gate",
             lambda w: w.post_sweep(w.recipe(gate={"max_drop": 0.1}))),
    BadInput("sweep: a plan over max_total_steps", 400, INVALID, "budget.max_total_steps",
             lambda w: w.post_sweep(budget={"max_total_steps": 3})),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_and_leaves_nothing(world: World, case: BadInput) -> None:
    before = stored(world.settings)
    response = case.send(world)
    body = response.json()
    assert (response.status_code, body["error"]["code"], body["error"]["param"]) == (
        case.status, case.code, case.param), body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "param"}
    assert body["error"]["message"]
    after = stored(world.settings)
    assert after.rows == before.rows
    assert after.files == before.files


def _documented() -> list[tuple[str, int, str, str | None]]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"\d{3}", cells[2]):
            param = cells[4].strip("`")
            rows.append((cells[1], int(cells[2]), cells[3].strip("`"), None if param == "-" else param))
    return rows


def test_the_documented_table_is_the_tested_table() -> None:
    assert len(CASES) >= 30
    assert _documented() == [(c.name, c.status, c.code, c.param) for c in CASES]

