"""A temporary service installation (SQLite, blob folder) holding a tiny teacher and dataset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from store import catalog, jobs
from store.blobs import LocalBlobStore, write_tar
from store.db import session_scope
from store.ids import new_id
from store.settings import Settings
from store.tenants import create_tenant
from tests.services import migrated_database


@dataclass(frozen=True)
class Installation:
    settings: Settings
    tenant_id: str
    model_id: str
    train_id: str
    validation_id: str

    def recipe(self, **overrides: Any) -> dict[str, Any]:
        """A job small enough to finish in seconds on a CPU."""
        recipe: dict[str, Any] = {
            "task": "summarization",
            "teacher": {"model": self.model_id},
            "dataset": {"dataset": self.train_id, "validation": self.validation_id,
                        "source_field": "document", "target_field": "summary", "max_validation_samples": 4},
            "student": {"encoder_layers": 1, "decoder_layers": 1},
            "quantization": {"weight_bits": 8, "embedding_bits": 8, "activation_bits": 8},
            "training": {"max_steps": 2, "batch_size": 4, "max_source_length": 32, "max_target_length": 16,
                         "checkpoint_every": 1, "log_every": 1},
            "evaluation": {"num_beams": 1, "max_length": 8, "batch_size": 8},
        }
        for section, values in overrides.items():
            recipe[section] = {**recipe.get(section, {}), **values} if isinstance(values, dict) else values
        return recipe

    def submit(self, recipe: dict[str, Any]) -> str:
        with session_scope(self.settings) as session:
            return jobs.create_job(session, tenant_id=self.tenant_id, recipe=recipe)[0].id


def _upload_dataset(settings: Settings, tenant_id: str, records: list[dict[str, str]], work: Path) -> str:
    path = work / f"{new_id('tmp')}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    dataset_id = new_id("ds")
    blob = LocalBlobStore(settings.artifact_dir).put_file(f"{tenant_id}/datasets/{dataset_id}.jsonl", path)
    with session_scope(settings) as session:
        catalog.create_dataset(session, dataset_id=dataset_id, tenant_id=tenant_id, name=path.name,
                               format="jsonl", rows=len(records), columns=sorted(records[0]),
                               preview=records[:3], blob=blob)
    return dataset_id


def _upload_model(settings: Settings, tenant_id: str, model_dir: Path, work: Path) -> str:
    tar = work / "teacher.tar"
    write_tar(model_dir, tar)
    model_id = new_id("mdl")
    blob = LocalBlobStore(settings.artifact_dir).put_file(f"{tenant_id}/models/{model_id}.tar", tar)
    with session_scope(settings) as session:
        catalog.create_model(session, model_id=model_id, tenant_id=tenant_id, name="tiny-teacher",
                             source="upload", architecture="BartForConditionalGeneration",
                             layers={"encoder": 2, "decoder": 2}, parameters=0, blob=blob)
    return model_id


def make_installation(settings: Settings, teacher_dir: Path, records: list[dict[str, str]],
                      work: Path) -> Installation:
    with session_scope(settings) as session:
        tenant_id = create_tenant(session, name=new_id("tenant")).id
    return Installation(
        settings=settings, tenant_id=tenant_id,
        model_id=_upload_model(settings, tenant_id, teacher_dir, work),
        train_id=_upload_dataset(settings, tenant_id, records[:32], work),
        validation_id=_upload_dataset(settings, tenant_id, records[32:40], work),
    )


@pytest.fixture
def backend() -> str:
    """The database of a test; parametrize `backend` to run a test on PostgreSQL as well."""
    return "sqlite"


ON_BOTH_DATABASES = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]
)


@pytest.fixture
def fast_settings(backend: str, tmp_path: Path) -> Iterator[Settings]:
    """Heartbeats and staleness in fractions of a second, so tests need not wait."""
    with migrated_database(backend, tmp_path / "data") as base:
        yield base.model_copy(update={"HEARTBEAT_SECONDS": 0.1, "STALE_AFTER_SECONDS": 0.5})


@pytest.fixture
def installation(fast_settings: Settings, tiny_teacher_dir: Path, sample_records: list[dict[str, str]],
                 tmp_path: Path) -> Installation:
    return make_installation(fast_settings, tiny_teacher_dir, sample_records, tmp_path)
