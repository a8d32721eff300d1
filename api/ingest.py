"""Turn a received upload into stored blobs and catalog rows, all or nothing.

Runs in a worker thread (archive checks and hashing are blocking work). Temp files live under
DATA_DIR/tmp as locked scratch entries (a crash leaves them to the sweep) and are removed whatever
happens; a blob whose row could not be committed is deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from api.archives import extract_archive
from api.contents import check_model_dir, find_model_root, kept_in_model, summarize_dataset
from api.uploads import Upload
from store import catalog
from store.blobs import BlobStore, StoredBlob, write_tar
from store.ids import new_id
from store.models import Dataset, Model, Tenant
from store.scratch import scratch_dir
from store.settings import Settings
from web.errors import ApiError

_NAME_CHARS = 200
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".jsonl", ".csv")

_Row = TypeVar("_Row", Model, Dataset)


def upload_name(upload: Upload, fallback: str) -> str:
    """The `name` form field, else the file name without its archive suffix."""
    name = upload.fields.get("name", "").strip()
    if not name:
        name = upload.filename
        for suffix in _ARCHIVE_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
    return (name or fallback)[:_NAME_CHARS]


def _check_quota(session: Session, settings: Settings, tenant: Tenant, extra_bytes: int) -> None:
    limit = tenant.storage_limit_bytes
    if limit is None:
        limit = settings.STORAGE_LIMIT_BYTES
    if limit is None:
        return
    used = catalog.storage_bytes(session, tenant_id=tenant.id)
    if used + extra_bytes > limit:
        raise ApiError(413, "storage_limit_exceeded",
                       f"storing {extra_bytes} more bytes would pass the tenant's limit of {limit} bytes "
                       f"({used} in use)", "file")


def _store(blobs: BlobStore, key: str, source: Path, create_row: Callable[[StoredBlob], _Row]) -> _Row:
    blob = blobs.put_file(key, source)
    try:
        return create_row(blob)
    except BaseException:
        blobs.delete(key)
        raise


def ingest_model(upload: Upload, *, sessions: sessionmaker[Session], settings: Settings, blobs: BlobStore,
                 tenant: Tenant) -> tuple[Model, list[str]]:
    """Check an uploaded HF archive, repack what it keeps as a plain .tar, and store it as a model;
    also the archive's files left out (`contents.kept_in_model`)."""
    with scratch_dir(upload.path.parent, "model-") as work:
        unpacked = work / "unpacked"
        unpacked.mkdir()
        dropped = extract_archive(upload.path, unpacked, max_bytes=settings.MAX_UPLOAD_BYTES,
                                  keep=kept_in_model)
        root = find_model_root(unpacked)
        summary = check_model_dir(root)
        tar = work / "model.tar"
        write_tar(root, tar)
        model_id = new_id("mdl")
        with sessions() as session:
            _check_quota(session, settings, tenant, tar.stat().st_size)

            def create_row(blob: StoredBlob) -> Model:
                return catalog.create_model(
                    session, model_id=model_id, tenant_id=tenant.id, name=upload_name(upload, model_id),
                    source="upload", architecture=summary.architecture, layers=summary.layers,
                    parameters=summary.parameters, blob=blob)

            return _store(blobs, f"{tenant.id}/models/{model_id}.tar", tar, create_row), dropped


def ingest_dataset(upload: Upload, *, sessions: sessionmaker[Session], settings: Settings, blobs: BlobStore,
                   tenant: Tenant) -> Dataset:
    """Check an uploaded JSONL/CSV file and store it as a dataset."""
    summary = summarize_dataset(upload.path, upload.filename)
    dataset_id = new_id("ds")
    with sessions() as session:
        _check_quota(session, settings, tenant, upload.bytes)

        def create_row(blob: StoredBlob) -> Dataset:
            return catalog.create_dataset(
                session, dataset_id=dataset_id, tenant_id=tenant.id, name=upload_name(upload, dataset_id),
                format=summary.format, rows=summary.rows, columns=summary.columns, preview=summary.preview,
                blob=blob)

        return _store(blobs, f"{tenant.id}/datasets/{dataset_id}.{summary.format}", upload.path, create_row)
