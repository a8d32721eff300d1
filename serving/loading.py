"""From a model row to a model ready to generate: checksum, unpack, load, fast form.

The artifact .tar is hashed on every load and must match the sha256 recorded in the store; it is
unpacked once per checksum into the cache folder (a marker file names the checksum unpacked).
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from compression.artifact import QUANTIZATION_FILE, load
from compression.recipe import TeacherSpec
from compression.runtime import Form, RuntimeInfo, model_bytes, optimize_for_inference, resolve_device
from compression.teacher import load_teacher
from store import catalog
from store.blobs import BlobStore, sha256_file

_MARKER = ".sha256"
_GENERATION_KEYS = ("num_beams", "max_length", "max_new_tokens", "min_length", "min_new_tokens",
                    "length_penalty", "no_repeat_ngram_size")


class ArtifactCorrupt(Exception):
    """The artifact's bytes do not hash to the checksum the store recorded."""


@dataclass(frozen=True)
class ModelRecord:
    """What serving needs from the store about one model."""

    id: str
    tenant_id: str
    source: str
    task: str | None
    blob_key: str
    sha256: str


@dataclass
class LoadedModel:
    record: ModelRecord
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    runtime: RuntimeInfo
    max_source_length: int
    generation_defaults: dict[str, Any]
    bytes: int
    load_seconds: float
    extra_generate_kwargs: dict[str, Any] = field(default_factory=dict)


def find_model(session: Session, *, tenant_id: str, model_id: str) -> ModelRecord | None:
    """The tenant's model and where its artifact lies; None if the tenant has no such model."""
    model = catalog.get_model(session, tenant_id=tenant_id, model_id=model_id)
    if model is None:
        return None
    artifact = catalog.get_artifact(session, tenant_id=tenant_id, artifact_id=model.artifact_id)
    if artifact is None:
        return None
    return ModelRecord(id=model.id, tenant_id=tenant_id, source=model.source, task=model.task,
                       blob_key=artifact.path, sha256=artifact.sha256)


def unpack_artifact(tar_path: Path, expected_sha256: str, cache_root: Path) -> Path:
    """Check the .tar's checksum, unpack it under cache_root (once) and return the model folder."""
    actual = sha256_file(tar_path)
    if actual != expected_sha256:
        raise ArtifactCorrupt(f"artifact checksum {actual} differs from the recorded {expected_sha256}")
    target = cache_root / expected_sha256
    marker = target / _MARKER
    if not (marker.is_file() and marker.read_text() == expected_sha256):
        cache_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache_root, prefix=".unpack-"))
        try:
            with tarfile.open(tar_path) as tar:
                tar.extractall(staging, filter="data")  # refuses links and paths that leave the folder
            (staging / _MARKER).write_text(expected_sha256)
            shutil.rmtree(target, ignore_errors=True)
            try:
                staging.rename(target)
            except OSError:  # another process unpacked the same artifact first
                if not marker.is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _model_folder(target)


def _model_folder(root: Path) -> Path:
    """The folder holding config.json: the tar's root or its single top folder."""
    if (root / "config.json").is_file():
        return root
    candidates = [p.parent for p in root.glob("*/config.json")]
    if len(candidates) != 1:
        raise ArtifactCorrupt("the artifact holds no single model folder with a config.json")
    return candidates[0]


def load_model(record: ModelRecord, blobs: BlobStore, cache_root: Path, *, device: str = "auto",
               form: Form = "auto") -> LoadedModel:
    started = time.perf_counter()
    folder = unpack_artifact(blobs.path_of(record.blob_key), record.sha256, cache_root)
    if (folder / QUANTIZATION_FILE).is_file():
        model, tokenizer = load(folder)
    else:
        # An uploaded or fine-tuned teacher: a plain HF directory, served in full precision so
        # that users can compare it with its compressed students through the same endpoint.
        model, tokenizer = load_teacher(TeacherSpec(path=str(folder)))
        # No quantized layers to run on int8 kernels: fp32 on the CPU, fp16 on CUDA.
        form = "fp16" if resolve_device(device).startswith("cuda") else "reference"
    model, runtime = optimize_for_inference(model, device=device, form=form)
    recipe = _recipe(folder)
    return LoadedModel(
        record=record,
        model=model,
        tokenizer=tokenizer,
        runtime=runtime,
        max_source_length=_max_source_length(model, recipe),
        generation_defaults=_generation_defaults(model, recipe),
        bytes=model_bytes(model),
        load_seconds=time.perf_counter() - started,
        extra_generate_kwargs=_language_kwargs(tokenizer, recipe),
    )


def _recipe(folder: Path) -> dict[str, Any]:
    if not (folder / QUANTIZATION_FILE).is_file():
        return {}
    manifest = json.loads((folder / QUANTIZATION_FILE).read_text(encoding="utf-8"))
    recipe = manifest.get("recipe")
    return recipe if isinstance(recipe, dict) else {}


def _max_source_length(model: PreTrainedModel, recipe: dict[str, Any]) -> int:
    # BART's learned positions cap the source; the recipe's training length is what it saw.
    limit = int(getattr(model.config, "max_position_embeddings", 1024))
    trained = (recipe.get("training") or {}).get("max_source_length")
    return min(limit, int(trained)) if trained else limit


def _generation_defaults(model: PreTrainedModel, recipe: dict[str, Any]) -> dict[str, Any]:
    """The model's generation config, overridden by the settings it was evaluated with."""
    config = model.generation_config.to_dict()
    defaults = {key: config.get(key) for key in _GENERATION_KEYS if config.get(key) is not None}
    evaluation = recipe.get("evaluation") or {}
    defaults.update({key: evaluation[key] for key in _GENERATION_KEYS if evaluation.get(key) is not None})
    return defaults


def _language_kwargs(tokenizer: PreTrainedTokenizerBase, recipe: dict[str, Any]) -> dict[str, Any]:
    """mBART translation: the source language on the tokenizer, the target forced as first token."""
    if recipe.get("src_lang") and hasattr(tokenizer, "src_lang"):
        tokenizer.src_lang = recipe["src_lang"]
    target = recipe.get("tgt_lang")
    if not target:
        return {}
    token_id = tokenizer.convert_tokens_to_ids(target)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return {}
    return {"forced_bos_token_id": token_id}
