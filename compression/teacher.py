"""Load a BART or mBART teacher with its tokenizer: safetensors only, eager attention."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BartForConditionalGeneration,
    MBartForConditionalGeneration,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from compression.errors import ModelError
from compression.finite import require_finite
from compression.recipe import TeacherSpec

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "bart": BartForConditionalGeneration,
    "mbart": MBartForConditionalGeneration,
}
WEIGHTS_FILE = "model.safetensors"
# Pickle-based weight formats: never opened, since loading them can run arbitrary code.
PICKLE_PATTERNS = ("*.bin", "*.pkl", "*.pickle", "*.pt", "*.pth", "*.ckpt")


def check_model_dir(path: Path, param: str = "teacher.path") -> None:
    """Refuse a directory that is not a safetensors Hugging Face model."""
    if not path.is_dir():
        raise ModelError(param, f"{path} is not a directory")
    pickles = sorted(p.name for pattern in PICKLE_PATTERNS for p in path.glob(pattern))
    if pickles:
        raise ModelError(
            param, f"pickle weight files are not accepted (safetensors only): {', '.join(pickles)}"
        )
    for name in ("config.json", WEIGHTS_FILE):
        if not (path / name).is_file():
            raise ModelError(param, f"{path} has no {name}")


def model_class(config: PretrainedConfig, param: str) -> type[PreTrainedModel]:
    try:
        return MODEL_CLASSES[config.model_type]
    except KeyError:
        raise ModelError(
            param, f"model type {config.model_type!r} is not supported (one of {sorted(MODEL_CLASSES)})"
        ) from None


def load_teacher(
    spec: TeacherSpec, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The teacher model (fp32, eval mode, eager attention) and its tokenizer.

    `spec.path` is a local directory; `spec.hf` a hub id (with `spec.revision`). A service
    `spec.model` id must have been resolved to a path by the caller.
    """
    if spec.model is not None:
        raise ModelError("teacher.model", "a model id must be resolved to a local path before loading")
    if spec.path is not None:
        source, param, revision = spec.path, "teacher.path", "main"  # a local folder has no revisions
        check_model_dir(Path(source), param)
    else:
        source, param, revision = str(spec.hf), "teacher.hf", spec.revision or "main"
    try:
        config = AutoConfig.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as exc:
        raise ModelError(param, f"cannot read the model config: {exc}") from None
    cls = model_class(config, param)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        model = cls.from_pretrained(
            source, attn_implementation="eager", use_safetensors=True, dtype=torch.float32, revision=revision
        )
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: weights that do not fit the config
        raise ModelError(param, f"cannot load the model: {exc}") from None
    require_finite(model.state_dict(), param, "the teacher's weights")
    return model.to(device).eval(), tokenizer  # type: ignore[arg-type]  # transformers types its wrapped `to` without self


def teacher_fingerprint(path: str | Path) -> str:
    """SHA-256 over config.json then model.safetensors: the teacher's identity in the artifact."""
    path = Path(path)
    digest = hashlib.sha256()
    for name in ("config.json", WEIGHTS_FILE):
        digest.update(name.encode() + b"\0")
        with open(path / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
