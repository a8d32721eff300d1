"""The library's user cache: results that depend only on a model's weights, some texts and some
settings (a teacher's outputs, its scores), kept across runs so every student of one teacher
reuses them. Keys are digests of all three; entries are plain JSON."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock


def cache_root() -> Path:
    """$DQB_CACHE_DIR, else dqbart/ under the XDG user cache."""
    if os.environ.get("DQB_CACHE_DIR"):
        return Path(os.environ["DQB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dqbart"


def digest(model: torch.nn.Module, texts: Sequence[str], settings: dict[str, Any]) -> str:
    """What decides a cached result: the model's weights, the texts, the settings."""
    hasher = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        hasher.update(name.encode())
        hasher.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for text in texts:
        hasher.update(text.encode() + b"\0")
    return hasher.hexdigest()[:24]


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or torn: computed again


def write_json(path: Path, value: Any) -> None:
    """Written to a temporary sibling, then renamed: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(value, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(path)


def lock(path: Path) -> FileLock:
    """One process at a time computes the entry at `path`: concurrent runs of one teacher (a sweep's
    children on one host) wait for the first and then read its result instead of repeating it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(f".{path.name}.lock"))
