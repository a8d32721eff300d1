"""Datasets: upload a JSONL or CSV file, list, read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import BlobsDep, SessionsDep, SettingsDep, TenantDep, UploadRateDep
from api.ingest import ingest_dataset
from api.schemas import ERROR_RESPONSES, DatasetObject, Page, cursor, dataset_object, multipart_body
from api.uploads import receive_upload
from store import catalog
from web.errors import not_found

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=DatasetObject,
             openapi_extra=multipart_body("a .jsonl (one JSON object per line) or .csv (with a header) file"))
async def upload_dataset(request: Request, tenant: TenantDep, sessions: SessionsDep, settings: SettingsDep,
                         blobs: BlobsDep, _rate: UploadRateDep) -> DatasetObject:
    upload = await receive_upload(request, tmp_dir=settings.tmp_dir,
                                  max_bytes=settings.MAX_UPLOAD_BYTES)
    try:
        dataset = await run_in_threadpool(ingest_dataset, upload, sessions=sessions, settings=settings,
                                          blobs=blobs, tenant=tenant)
    finally:
        upload.discard()
    return dataset_object(dataset)


@router.get("", response_model=Page[DatasetObject])
def list_datasets(tenant: TenantDep, sessions: SessionsDep, after: Annotated[str | None, cursor("ds")] = None,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Page[DatasetObject]:
    with sessions() as session:
        rows, has_more = catalog.list_datasets(session, tenant_id=tenant.id, after=after, limit=limit)
    return Page[DatasetObject](data=[dataset_object(r) for r in rows], has_more=has_more)


@router.get("/{dataset_id}", response_model=DatasetObject)
def get_dataset(dataset_id: str, tenant: TenantDep, sessions: SessionsDep) -> DatasetObject:
    with sessions() as session:
        dataset = catalog.get_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    return dataset_object(dataset)
