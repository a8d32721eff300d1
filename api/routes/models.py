"""Models: upload a Hugging Face teacher, list, read, download as one .tar."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.deps import BlobsDep, SessionsDep, SettingsDep, TenantDep, UploadRateDep
from api.downloads import blob_download
from api.exports import ctranslate2_export
from api.ingest import ingest_model
from api.schemas import (
    ERROR_RESPONSES,
    ErrorResponse,
    ModelObject,
    Page,
    UploadedModelObject,
    cursor,
    model_object,
    multipart_body,
)
from api.uploads import receive_upload
from store import catalog
from store.models import Artifact, Model
from web.errors import not_found

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)
TAR: dict[str, Any] = {"content": {"application/x-tar": {}}}
DownloadFormat = Literal["artifact", "ctranslate2"]
_FORMATS = ("artifact: the packed model as stored; ctranslate2: a folder that ctranslate2.Translator "
            "loads as is, with the tokenizer files (docs/ctranslate2.md)")


@router.post("", status_code=201, response_model=UploadedModelObject,
             openapi_extra=multipart_body("a .tar, .tar.gz or .zip of a Hugging Face BART/mBART directory"))
async def upload_model(request: Request, tenant: TenantDep, sessions: SessionsDep, settings: SettingsDep,
                       blobs: BlobsDep, _rate: UploadRateDep) -> UploadedModelObject:
    upload = await receive_upload(request, tmp_dir=settings.tmp_dir,
                                  max_bytes=settings.MAX_UPLOAD_BYTES)
    try:
        model, dropped = await run_in_threadpool(ingest_model, upload, sessions=sessions, settings=settings,
                                                 blobs=blobs, tenant=tenant)
    finally:
        upload.discard()
    return UploadedModelObject(**model_object(model).model_dump(), dropped_files=dropped)


@router.get("", response_model=Page[ModelObject])
def list_models(tenant: TenantDep, sessions: SessionsDep, after: Annotated[str | None, cursor("mdl")] = None,
                limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Page[ModelObject]:
    with sessions() as session:
        rows, has_more = catalog.list_models(session, tenant_id=tenant.id, after=after, limit=limit)
    return Page[ModelObject](data=[model_object(r) for r in rows], has_more=has_more)


@router.get("/{model_id}", response_model=ModelObject)
def get_model(model_id: str, tenant: TenantDep, sessions: SessionsDep) -> ModelObject:
    with sessions() as session:
        model = catalog.get_model(session, tenant_id=tenant.id, model_id=model_id)
    if model is None:
        raise not_found("model", model_id)
    return model_object(model)


def model_with_artifact(sessions: sessionmaker[Session], tenant_id: str,
                        model_id: str) -> tuple[Model, Artifact]:
    """The tenant's model and its stored artifact, or 404 `not_found`."""
    with sessions() as session:
        model = catalog.get_model(session, tenant_id=tenant_id, model_id=model_id)
        artifact = None if model is None else catalog.get_artifact(session, tenant_id=tenant_id,
                                                                   artifact_id=model.artifact_id)
    if model is None or artifact is None:
        raise not_found("model", model_id)
    return model, artifact


@router.get("/{model_id}/download", response_class=Response,
            responses={200: TAR, 206: TAR, 416: {"model": ErrorResponse}})
def download_model(model_id: str, tenant: TenantDep, sessions: SessionsDep, blobs: BlobsDep,
                   settings: SettingsDep,
                   format: Annotated[DownloadFormat, Query(description=_FORMATS)] = "artifact",
                   range: Annotated[str | None, Header()] = None,
                   if_range: Annotated[str | None, Header()] = None,
                   if_none_match: Annotated[str | None, Header()] = None) -> Response:
    model, artifact = model_with_artifact(sessions, tenant.id, model_id)
    if format == "ctranslate2":
        export = ctranslate2_export(settings, blobs, artifact_key=artifact.path, sha256=artifact.sha256)
        return blob_download(export.blobs, key=export.key, sha256=export.sha256,
                             filename=f"{model.id}-ctranslate2.tar", media_type="application/x-tar",
                             range_header=range, if_range=if_range, if_none_match=if_none_match)
    return blob_download(blobs, key=artifact.path, sha256=artifact.sha256, filename=f"{model.id}.tar",
                         media_type="application/x-tar", range_header=range, if_range=if_range,
                         if_none_match=if_none_match)
