"""Uploaded weights against the architecture their config builds: every tensor's name, shape and
dtype, and every value finite, checked before anything is stored.

The model is built on the meta device (shapes without memory), so the check costs no more than
reading the file once; a teacher that passes loads without a missing or surplus tensor and
trains on numbers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors import SafetensorError, safe_open
from transformers import PretrainedConfig, PreTrainedModel

from compression.errors import ModelError

FLOAT_DTYPES = ("F32", "F16", "BF16")  # what from_pretrained casts to float32 without loss of meaning
_BASE_PREFIX = "model."  # BartModel's weights saved alone lack it; from_pretrained adds it


def check_against_architecture(weights: Path, header: dict[str, Any], model: PreTrainedModel) -> None:
    """Raise ModelError naming the first tensor that does not fit `model` (built on the meta device)."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    names = {_canonical(name, expected): name for name in header}
    ignored = getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []
    for canonical, name in names.items():
        info = header[name]
        if canonical not in expected:
            if any(re.search(pattern, canonical) for pattern in ignored):
                continue
            raise ModelError("file", f"model.safetensors has a tensor {name!r} that this config.json's "
                                     f"{type(model).__name__} does not have")
        if info["dtype"] not in FLOAT_DTYPES:
            raise ModelError("file", f"model.safetensors: {name!r} is {info['dtype']}; weights must be one "
                                     f"of {', '.join(FLOAT_DTYPES)}")
        if tuple(info["shape"]) != expected[canonical]:
            raise ModelError("file", f"model.safetensors: {name!r} has shape {info['shape']}, config.json "
                                     f"makes it {list(expected[canonical])}")
    _check_complete(set(names), model)
    _check_finite(weights)


def build_on_meta(config: PretrainedConfig, architecture: str) -> PreTrainedModel:
    """The model `config` describes (e.g. BartForConditionalGeneration), with shapes and no memory."""
    try:
        with torch.device("meta"):
            return getattr(transformers, architecture)(config)
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError) as exc:
        raise ModelError("file", f"config.json does not build a {architecture}: {exc}") from None


def _canonical(name: str, expected: dict[str, tuple[int, ...]]) -> str:
    if name not in expected and _BASE_PREFIX + name in expected:
        return _BASE_PREFIX + name
    return name


def _check_complete(present: set[str], model: PreTrainedModel) -> None:
    """Every parameter and persistent buffer is in the file, once per group of tied names."""
    optional = getattr(model, "_keys_to_ignore_on_load_missing", None) or []
    groups: dict[int, list[str]] = {}
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *_persistent_buffers(model)]:
        groups.setdefault(id(tensor), []).append(name)
    for names in groups.values():
        if present.isdisjoint(names) and not any(re.search(p, n) for p in optional for n in names):
            raise ModelError("file", f"model.safetensors lacks the tensor {names[0]!r}")


def _persistent_buffers(model: PreTrainedModel) -> list[tuple[str, torch.Tensor]]:
    state = model.state_dict(keep_vars=True)
    return [(name, buffer) for name, buffer in model.named_buffers() if name in state]


def _check_finite(weights: Path) -> None:
    """NaN or infinite weights would train NaN students; one tensor at a time, memory-mapped."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if not torch.isfinite(f.get_tensor(name)).all():
                    raise ModelError("file", f"model.safetensors: {name!r} holds NaN or infinite values")
    except SafetensorError as exc:
        raise ModelError("file", f"model.safetensors cannot be read: {exc}") from None
