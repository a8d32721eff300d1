"""Models, datasets and their artifacts (the blobs' rows), scoped by tenant.

Every read takes the tenant id and returns None for another tenant's object, so the API can
answer 404 without telling "not yours" from "not there". Lists are newest first, paged by id:
`after` is the last id of the previous page (ids sort by creation time).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.blobs import StoredBlob
from store.ids import new_id
from store.models import Artifact, Dataset, Model

_Row = TypeVar("_Row", Model, Dataset)

_ARTIFACT_KIND = {"upload": "model_upload", "compression": "compressed_model"}


def _new_artifact(*, tenant_id: str, kind: str, blob: StoredBlob) -> Artifact:
    return Artifact(id=new_id("art"), tenant_id=tenant_id, kind=kind, path=blob.key, bytes=blob.bytes,
                    sha256=blob.sha256)


def create_model(session: Session, *, model_id: str, tenant_id: str, name: str, source: str,
                 architecture: str, layers: dict[str, int], parameters: int, blob: StoredBlob,
                 job_id: str | None = None, task: str | None = None,
                 quality_gate: dict[str, Any] | None = None, engines: dict[str, Any] | None = None,
                 commit: bool = True) -> Model:
    """The model row and its artifact row, committed together; `blob` is the stored .tar.
    With commit=False both are only flushed, joining the caller's transaction. `quality_gate` is
    the verdict of the job's gate (compression.gate), where its recipe had one; `engines` the
    packing-time checks of the serving engines (report.json's `engines`)."""
    artifact = _new_artifact(tenant_id=tenant_id, kind=_ARTIFACT_KIND[source], blob=blob)
    model = Model(id=model_id, tenant_id=tenant_id, name=name, source=source, architecture=architecture,
                  layers=layers, parameters=parameters, bytes=blob.bytes, sha256=blob.sha256,
                  artifact_id=artifact.id, job_id=job_id, task=task, quality_gate=quality_gate,
                  engines=engines)
    session.add(artifact)
    session.flush()  # the artifact row must exist before the model's foreign key points at it
    session.add(model)
    if commit:
        session.commit()
    else:
        session.flush()
    return model


def create_dataset(session: Session, *, dataset_id: str, tenant_id: str, name: str, format: str, rows: int,
                   columns: list[str], preview: list[dict[str, Any]], blob: StoredBlob) -> Dataset:
    artifact = _new_artifact(tenant_id=tenant_id, kind="dataset", blob=blob)
    dataset = Dataset(id=dataset_id, tenant_id=tenant_id, name=name, format=format, rows=rows,
                      columns=columns, preview=preview, bytes=blob.bytes, sha256=blob.sha256,
                      artifact_id=artifact.id)
    session.add(artifact)
    session.flush()
    session.add(dataset)
    session.commit()
    return dataset


def get_model(session: Session, *, tenant_id: str, model_id: str) -> Model | None:
    return session.scalar(select(Model).where(Model.id == model_id, Model.tenant_id == tenant_id))


def get_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id))


def get_artifact(session: Session, *, tenant_id: str, artifact_id: str) -> Artifact | None:
    return session.scalar(select(Artifact).where(Artifact.id == artifact_id, Artifact.tenant_id == tenant_id))


def _page(session: Session, row: type[_Row], *, tenant_id: str, after: str | None,
          limit: int) -> tuple[list[_Row], bool]:
    query = select(row).where(row.tenant_id == tenant_id)
    if after:
        query = query.where(row.id < after)
    rows = list(session.scalars(query.order_by(row.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def list_models(session: Session, *, tenant_id: str, after: str | None = None,
                limit: int = 20) -> tuple[list[Model], bool]:
    """(models, has_more), newest first."""
    return _page(session, Model, tenant_id=tenant_id, after=after, limit=limit)


def list_datasets(session: Session, *, tenant_id: str, after: str | None = None,
                  limit: int = 20) -> tuple[list[Dataset], bool]:
    """(datasets, has_more), newest first."""
    return _page(session, Dataset, tenant_id=tenant_id, after=after, limit=limit)


def storage_bytes(session: Session, *, tenant_id: str) -> int:
    """Bytes of every artifact the tenant holds (the storage quota counts these)."""
    total = select(func.coalesce(func.sum(Artifact.bytes), 0)).where(Artifact.tenant_id == tenant_id)
    return int(session.scalar(total) or 0)
