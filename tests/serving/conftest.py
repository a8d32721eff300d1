"""Serving fixtures: packed tiny artifacts stored as model rows, and app clients over ASGI."""

from __future__ import annotations

import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from compression.artifact import pack
from compression.recipe import QuantizationSpec, Recipe, StudentSpec, TeacherSpec
from compression.student import build_student
from compression.swap import quantize_model
from compression.teacher import load_teacher
from store import catalog, tenants
from store.blobs import LocalBlobStore
from store.db import session_scope, upgrade_database
from store.ids import new_id
from store.settings import Settings
from tests.tiny import make_diverse_teacher


def pack_student(teacher_dir: Path, out_dir: Path, *, bits: int = 8, decoder_layers: int = 1,
                 granularity: str = "per_tensor", group_size: int = 64) -> Path:
    """An untrained PTQ student of the teacher (build_student + quantize_model + pack)."""
    teacher, tokenizer = load_teacher(TeacherSpec(path=str(teacher_dir)))
    student, layer_map = build_student(teacher, StudentSpec(decoder_layers=decoder_layers))
    spec = QuantizationSpec(weight_bits=bits, embedding_bits=bits, granularity=granularity,
                            group_size=group_size)
    quantize_model(student, spec)
    recipe = Recipe.from_dict({"teacher": {"path": str(teacher_dir)}, "dataset": {"train": "train.jsonl"},
                               "quantization": spec.model_dump(), "training": {"max_source_length": 64}})
    pack(student.eval(), tokenizer, out_dir, spec=spec, layer_map=layer_map, recipe=recipe.to_dict(),
         teacher_identity={"path": str(teacher_dir)})
    return out_dir


@dataclass(frozen=True)
class StoredModel:
    id: str
    headers: dict[str, str]
    tenant_id: str


def store_artifact(settings: Settings, artifact_dir: Path, *, task: str | None = "summarization",
                   tenant_name: str | None = None, source: str = "compression") -> StoredModel:
    """A tenant with a key, and a model row (compressed by default) whose .tar lies in the blob store."""
    tar_path = artifact_dir.parent / f"{artifact_dir.name}-{uuid.uuid4().hex[:6]}.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(artifact_dir, arcname="model")
    with session_scope(settings) as session:
        tenant = tenants.create_tenant(session, name=tenant_name or f"t-{uuid.uuid4().hex[:10]}")
        key = tenants.create_key(session, tenant_id=tenant.id)[1]
        model_id = new_id("mdl")
        blob = LocalBlobStore(settings.artifact_dir).put_file(f"{tenant.id}/models/{model_id}.tar", tar_path)
        catalog.create_model(session, model_id=model_id, tenant_id=tenant.id, name="student",
                             source=source, architecture="BartForConditionalGeneration",
                             layers={"encoder": 2, "decoder": 1}, parameters=0, blob=blob, task=task)
        return StoredModel(id=model_id, headers={"Authorization": f"Bearer {key}"}, tenant_id=tenant.id)


@pytest.fixture(scope="session")
def student_artifact(tiny_teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_student(tiny_teacher_dir, tmp_path_factory.mktemp("artifact") / "student")


@pytest.fixture(scope="session")
def diverse_teacher(tiny_teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny teacher whose greedy outputs depend on the input, so that answers can be told apart."""
    return make_diverse_teacher(tiny_teacher_dir, tmp_path_factory.mktemp("diverse-teacher"))


@pytest.fixture(scope="session")
def diverse_artifact(diverse_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_student(diverse_teacher, tmp_path_factory.mktemp("diverse-artifact") / "student")


@pytest.fixture(scope="session")
def serving_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(DATA_DIR=tmp_path_factory.mktemp("serving-data"))
    upgrade_database(settings)
    return settings


@pytest.fixture
def stored_model(serving_settings: Settings, student_artifact: Path) -> Callable[..., StoredModel]:
    return lambda **kwargs: store_artifact(serving_settings, student_artifact, **kwargs)



@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on shared cores: one intra-op thread is much faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
