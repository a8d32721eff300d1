"""A finished run's artifact directory becomes one .tar in the blob store and a models row.

The blob is written first; its rows and the job's success are committed in one transaction, so
a job is never succeeded without its model, and a model never appears without its blob.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from compression.recipe import Recipe
from store import catalog, jobs
from store.blobs import BlobStore, write_tar
from store.ids import new_id


@dataclass(frozen=True)
class ModelSummary:
    architecture: str
    layers: dict[str, int]
    parameters: int


def summarize_artifact(artifact_dir: Path, report: dict[str, Any]) -> ModelSummary:
    config = json.loads((artifact_dir / "config.json").read_text(encoding="utf-8"))
    architectures = config.get("architectures") or [config.get("model_type", "unknown")]
    layers = {"encoder": int(config["encoder_layers"]), "decoder": int(config["decoder_layers"])}
    return ModelSummary(architecture=str(architectures[0]), layers=layers, parameters=parameter_count(report))


def parameter_count(report: dict[str, Any]) -> int:
    """compress reports `student_parameters`; finetune reports the teacher's `parameters`."""
    return int(report.get("student_parameters", report.get("parameters", 0)))


def job_result(report: dict[str, Any]) -> dict[str, Any]:
    """What the student measured, kept on the job (a sweep reads its points from these)."""
    return {"bytes": int(report["student_bytes"]), "compression_ratio": float(report["compression_ratio"]),
            "metrics": report["student_metrics"], "teacher_metrics": report["teacher_metrics"],
            "teacher_metrics_source": report.get("teacher_metrics_source"),
            "training_steps": int(report.get("training_steps", 0))}


def model_name(recipe: Recipe, teacher_name: str) -> str:
    if recipe.method == "finetune":
        return f"{teacher_name}-finetuned"[:200]
    q = recipe.quantization
    return f"{teacher_name}-{recipe.method}-w{q.weight_bits}e{q.embedding_bits}a{q.activation_bits}"[:200]


def store_result(session: Session, *, blobs: BlobStore, job_id: str, tenant_id: str, worker_id: str,
                 artifact_dir: Path, report: dict[str, Any], name: str, task: str | None,
                 tar_path: Path) -> str | None:
    """Store the artifact and finish the job as succeeded; the new model id, or None (and nothing
    kept) when this worker no longer holds the job. A gate's verdict (passed or flagged) goes on
    both the model and the job."""
    gate = report.get("quality_gate")
    summary = summarize_artifact(artifact_dir, report)
    model_id = new_id("mdl")
    write_tar(artifact_dir, tar_path)
    blob = blobs.put_file(f"{tenant_id}/models/{model_id}.tar", tar_path)
    try:
        catalog.create_model(session, model_id=model_id, tenant_id=tenant_id, name=name, source="compression",
                             architecture=summary.architecture, layers=summary.layers,
                             parameters=summary.parameters, blob=blob, job_id=job_id, task=task,
                             quality_gate=gate, engines=report.get("engines"), commit=False)
        if not jobs.finish_job(session, job_id=job_id, worker_id=worker_id, status="succeeded",
                               result_model_id=model_id, quality_gate=gate, commit=False,
                               result=job_result(report) if "student_bytes" in report else None):
            session.rollback()
            blobs.delete(blob.key)
            return None
        session.commit()
    except BaseException:
        session.rollback()
        blobs.delete(blob.key)
        raise
    return model_id
