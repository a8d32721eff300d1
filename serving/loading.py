"""From a model row to a model ready to generate: checksum, unpack, load, fast form.

The artifact .tar is hashed on every load and must match the sha256 recorded in the store; it is
unpacked once per checksum into the cache folder (a marker file names the checksum unpacked).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from compression.artifact import QUANTIZATION_FILE, load
from compression.ct2 import Quantization
from compression.errors import ModelError
from compression.recipe import TeacherSpec
from compression.runtime import Form, RuntimeInfo, model_bytes, optimize_for_inference, resolve_device
from compression.teacher import load_teacher
from compression.tokenizer import id_token
from serving.engines import (
    Ct2Runtime,
    Engine,
    EngineChoice,
    choose_engine,
    converted,
    fallback,
    open_translator,
)
from store import catalog
from store.blobs import BlobStore, sha256_file, unpack_tar_once

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
    quality_gate: str | None = None  # the gate's verdict (passed | flagged); None: an ungated model


@dataclass
class LoadedModel:
    record: ModelRecord
    model: PreTrainedModel | None  # None where CTranslate2 serves it
    tokenizer: PreTrainedTokenizerBase
    runtime: RuntimeInfo
    max_source_length: int
    max_positions: int  # the position table's length: no generation may run past it
    generation_defaults: dict[str, Any]
    bytes: int
    load_seconds: float
    extra_generate_kwargs: dict[str, Any] = field(default_factory=dict)
    engine: EngineChoice | None = None
    ct2: Ct2Runtime | None = None

    @property
    def torch_model(self) -> PreTrainedModel:
        """The model our own torch forms run; None only where CTranslate2 serves it."""
        assert self.model is not None, f"model {self.record.id} is served by CTranslate2"
        return self.model

    @property
    def target_prefix(self) -> str | None:
        """The token HF generate forces first (mBART's target language, BART's forced BOS)."""
        forced = self.extra_generate_kwargs.get("forced_bos_token_id")
        if forced is not None:
            return id_token(self.tokenizer, forced)
        return self.ct2.info["decoding"]["target_prefix"] if self.ct2 else None


def find_model(session: Session, *, tenant_id: str, model_id: str) -> ModelRecord | None:
    """The tenant's model and where its artifact lies; None if the tenant has no such model."""
    model = catalog.get_model(session, tenant_id=tenant_id, model_id=model_id)
    if model is None:
        return None
    artifact = catalog.get_artifact(session, tenant_id=tenant_id, artifact_id=model.artifact_id)
    if artifact is None:
        return None
    return ModelRecord(id=model.id, tenant_id=tenant_id, source=model.source, task=model.task,
                       blob_key=artifact.path, sha256=artifact.sha256,
                       quality_gate=model.quality_gate["verdict"] if model.quality_gate else None)


def unpack_artifact(tar_path: Path, expected_sha256: str, cache_root: Path) -> Path:
    """Check the .tar's checksum, unpack it under cache_root (once) and return the model folder."""
    actual = sha256_file(tar_path)
    if actual != expected_sha256:
        raise ArtifactCorrupt(f"artifact checksum {actual} differs from the recorded {expected_sha256}")
    with open(tar_path, "rb") as tar:
        root = unpack_tar_once(tar, cache_root / expected_sha256, stamp=expected_sha256)
    return _model_folder(root)


def _model_folder(root: Path) -> Path:
    """The folder holding config.json: the tar's root or its single top folder."""
    if (root / "config.json").is_file():
        return root
    candidates = [p.parent for p in root.glob("*/config.json")]
    if len(candidates) != 1:
        raise ArtifactCorrupt("the artifact holds no single model folder with a config.json")
    return candidates[0]


@dataclass(frozen=True)
class EngineSettings:
    """How loaded models are served (DQB_SERVING_ENGINE, DQB_SERVING_FAITHFULNESS_BUDGET)."""

    engine: Engine = "auto"
    budget: float = 0.5
    streams: int = 1  # batches run at once
    cores: int = 0  # threads they share; 0: the engine's default


def load_model(record: ModelRecord, blobs: BlobStore, cache_root: Path, *, device: str = "auto",
               form: Form = "auto", engines: EngineSettings | None = None) -> LoadedModel:
    """The stored model, ready to generate on the engine the settings choose (serving.engines).
    `form`: our own torch form, where that serves it. CTranslate2's form is cached in
    `cache_root`'s sibling folder `ctranslate2`."""
    started = time.perf_counter()
    engines = engines or EngineSettings()
    folder = unpack_artifact(blobs.path_of(record.blob_key), record.sha256, cache_root)
    packed = (folder / QUANTIZATION_FILE).is_file()
    if packed:
        model, tokenizer = load(folder)
    else:
        # An uploaded or fine-tuned teacher: a plain HF directory, served in full precision so
        # that users can compare it with its compressed students through the same endpoint.
        model, tokenizer = load_teacher(TeacherSpec(path=str(folder)))
        # No quantized layers to run on int8 kernels: fp32 on the CPU, fp16 on CUDA.
        form = "fp16" if resolve_device(device).startswith("cuda") else "reference"
    recipe = _recipe(folder)
    engine = choose_engine(engines.engine, folder, packed=packed, budget=engines.budget)
    loaded = LoadedModel(
        record=record,
        model=model,
        tokenizer=tokenizer,
        runtime=RuntimeInfo(resolve_device(device), "unloaded", 0, 0, "", 0),
        max_source_length=_max_source_length(model, recipe),
        max_positions=int(getattr(model.config, "max_position_embeddings", 1024)),
        generation_defaults=_generation_defaults(model, recipe),
        bytes=0,
        load_seconds=0.0,
        extra_generate_kwargs=_language_kwargs(tokenizer, recipe),
        engine=engine,
    )
    if engine.engine == "ctranslate2":
        try:
            _on_ctranslate2(loaded, folder, cache_root.parent / "ctranslate2", engines, packed)
        except (ModelError, ValueError, RuntimeError) as exc:
            if engines.engine != "auto":
                raise ModelError("artifact", f"CTranslate2 cannot serve it: {exc}") from None
            loaded.engine = engine = fallback(engine, packed, exc)
    if loaded.ct2 is None:
        loaded.model, loaded.runtime = optimize_for_inference(model, device=device, form=_torch_form(
            engine.engine, form))
        loaded.bytes = model_bytes(loaded.model)
    loaded.load_seconds = time.perf_counter() - started
    return loaded


def _torch_form(engine: str, form: Form) -> Form:
    return "reference" if engine == "reference" else form


def _on_ctranslate2(loaded: LoadedModel, folder: Path, cache: Path, engines: EngineSettings,
                    packed: bool) -> None:
    """Serve `loaded` from its CTranslate2 form (the torch model is dropped)."""
    device = loaded.runtime.device
    quantization: Quantization = "int8" if packed else "float32"
    model_dir = converted(folder, loaded.record.sha256, cache, quantization)
    ct2 = open_translator(model_dir, device=device, packed=packed, streams=engines.streams,
                          cores=engines.cores)
    threads = max(1, engines.cores // engines.streams) if engines.cores else 0
    loaded.ct2, loaded.model, loaded.bytes = ct2, None, ct2.bytes
    loaded.runtime = RuntimeInfo(
        device=device, form=f"ctranslate2_{ct2.compute_type}", int8_layers=ct2.info["exact_int8_weights"],
        float_layers=0, threads=threads,
        kernel=f"ctranslate2 {ct2.info['ctranslate2_version']} {ct2.compute_type}: {engines.streams} "
               f"batch(es) at once x {threads or 'default'} thread(s)")


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
