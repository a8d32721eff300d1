"""A result model's report: what its job measured (teacher and student metrics, sizes, examples)."""

from __future__ import annotations

import json
import tarfile
from typing import Any

from fastapi import APIRouter

from api.deps import BlobsDep, SessionsDep, TenantDep
from api.routes.models import model_with_artifact
from api.schemas import ERROR_RESPONSES
from store.blobs import BlobStore
from web.errors import ApiError

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)
REPORT_FILE = "report.json"  # at the root of every artifact a job packs (compression/artifact.py)


def read_report(blobs: BlobStore, key: str) -> dict[str, Any] | None:
    """report.json out of a stored model tar, or None where it has none. The tar is plain (not
    compressed), so reading one member skips over the weights instead of reading them."""
    with blobs.open(key) as f, tarfile.open(fileobj=f, mode="r:") as tar:
        for member in tar:
            if member.name == REPORT_FILE and member.isfile():
                report = json.load(tar.extractfile(member))  # type: ignore[arg-type]
                return report if isinstance(report, dict) else None
    return None


def no_report(model_id: str) -> ApiError:
    return ApiError(404, "no_report", f"model {model_id!r} was uploaded, not made by a job: it has no report",
                    "id")


@router.get("/{model_id}/report", response_model=dict[str, Any])
def get_report(model_id: str, tenant: TenantDep, sessions: SessionsDep, blobs: BlobsDep) -> dict[str, Any]:
    """The report.json of a model a job made: `teacher_metrics` and `student_metrics` on the
    validation split, `teacher_bytes`, `student_bytes`, `compression_ratio`, parameters, latency
    and example outputs (a fine-tuned teacher's: `metrics` and `parameters`). An uploaded model
    has none: 404 `no_report`."""
    model, artifact = model_with_artifact(sessions, tenant.id, model_id)
    report = read_report(blobs, artifact.path) if model.source == "compression" else None
    if report is None:
        raise no_report(model_id)
    return report
