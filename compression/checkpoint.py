"""Resumable training checkpoints: a directory of safetensors (tensors) and JSON (the rest).

No pickle. Layout of one checkpoint directory:
  model.safetensors       the model's latent weights, buffers and learned quantizer scales
  best_model.safetensors  the best-so-far weights by the task metric (when there is one)
  optimizer.safetensors   optimizer state tensors, named "state.<param index>.<key>"
  rng.safetensors         torch CPU (and CUDA) generator states
  state.json              step, data position, best metric, optimizer groups, scheduler, python/numpy
                          RNG, plus the caller's metadata (layer map, full recipe, stage...)
A checkpoint is written to a temporary sibling directory and renamed into place, so a reader
never sees half of one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from compression.data import LoaderPosition

FORMAT_VERSION = 1
STATE_FILE = "state.json"


@dataclass
class TrainingState:
    """What the training loop carries from step to step, besides tensors."""

    step: int = 0
    loader: LoaderPosition = field(default_factory=LoaderPosition)
    best_metric: float | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    stale_evals: int = 0  # evaluations in a row since the best one (for early stopping)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "loader": self.loader.to_dict(),
            "best_metric": self.best_metric,
            "best_metrics": self.best_metrics,
            "stale_evals": self.stale_evals,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingState:
        loader = LoaderPosition(**data["loader"])
        stale = data.get("stale_evals", 0)  # absent in checkpoints written before early stopping
        return cls(data["step"], loader, data["best_metric"], data["best_metrics"], stale)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the state dict; tied tensors stay tied (one copy, several names)."""
    copies: dict[tuple[Any, ...], torch.Tensor] = {}
    state = {}
    for name, tensor in model.state_dict().items():
        key = _identity(tensor)
        if key not in copies:
            copies[key] = tensor.detach().to("cpu", copy=True)
        state[name] = copies[key]
    return state


def save_checkpoint(
    directory: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainingState,
    best_model: dict[str, torch.Tensor] | None,
    metadata: dict[str, Any],
) -> Path:
    """Write everything needed to continue the run exactly; atomic (temp dir, then rename)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    aliases = {"model": _save_state(snapshot(model), tmp / "model.safetensors")}
    if best_model is not None:
        aliases["best_model"] = _save_state(best_model, tmp / "best_model.safetensors")
    optimizer_json = _save_optimizer(optimizer.state_dict(), tmp / "optimizer.safetensors")
    save_file(_torch_rng(), str(tmp / "rng.safetensors"))
    document = {
        "format_version": FORMAT_VERSION,
        "training": state.to_dict(),
        "aliases": aliases,
        "optimizer": optimizer_json,
        "scheduler": scheduler.state_dict(),
        "rng": _host_rng(),
        "metadata": metadata,
    }
    (tmp / STATE_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


def read_metadata(directory: Path) -> dict[str, Any]:
    """The caller's metadata (recipe, layer map, stage...) without loading any tensor."""
    return _read_state(directory)["metadata"]


def restore_checkpoint(
    directory: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[TrainingState, dict[str, torch.Tensor] | None]:
    """Load weights, optimizer, scheduler and every RNG; return the loop state and the best weights."""
    directory = Path(directory)
    document = _read_state(directory)
    model.load_state_dict(_load_state(directory / "model.safetensors", document["aliases"]["model"]))
    optimizer.load_state_dict(_load_optimizer(document["optimizer"], directory / "optimizer.safetensors"))
    scheduler.load_state_dict(document["scheduler"])
    best = None
    if "best_model" in document["aliases"]:
        best = _load_state(directory / "best_model.safetensors", document["aliases"]["best_model"])
    _restore_rng(load_file(str(directory / "rng.safetensors")), document["rng"])
    return TrainingState.from_dict(document["training"]), best


def latest_checkpoint(checkpoint_dir: Path, prefix: str = "") -> Path | None:
    """The most recently written checkpoint under `checkpoint_dir` whose name starts with `prefix`.

    By write time, not step: a distillation checkpoint at step 20 is newer than the teacher
    fine-tuning checkpoint at step 100 that preceded it.
    """
    found = [p for p in Path(checkpoint_dir).glob(f"{prefix}*-step-*") if (p / STATE_FILE).is_file()]
    return max(
        found,
        key=lambda p: ((p / STATE_FILE).stat().st_mtime_ns, int(p.name.rsplit("-", 1)[1])),
        default=None,
    )


def _read_state(directory: Path) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a checkpoint (no {STATE_FILE})")
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{directory}: checkpoint format {document.get('format_version')}, "
            f"this build reads {FORMAT_VERSION}"
        )
    return document


def _identity(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Same key = the same tensor under another name (tied weights), not merely a shared buffer."""
    return tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride())


def _save_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, str]:
    """safetensors refuses shared storage: store each tensor once, return {alias: stored name}."""
    stored: dict[tuple[Any, ...], str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, tensor in state.items():
        key = _identity(tensor)
        if key in stored:
            aliases[name] = stored[key]
        else:
            stored[key] = name
            unique[name] = tensor.detach().to("cpu").contiguous()
    save_file(unique, str(path))
    return aliases


def _load_state(path: Path, aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    state = load_file(str(path))
    state.update({alias: state[name] for alias, name in aliases.items()})
    return state


def _save_optimizer(state_dict: dict[str, Any], path: Path) -> dict[str, Any]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                plain.setdefault(str(index), {})[key] = value
    save_file(tensors, str(path))
    return {"param_groups": state_dict["param_groups"], "plain_state": plain}


def _load_optimizer(document: dict[str, Any], path: Path) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in load_file(str(path)).items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in document["plain_state"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": document["param_groups"]}


def _torch_rng() -> dict[str, torch.Tensor]:
    states = {"torch.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states |= {f"torch.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return states


def _host_rng() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state = np.random.get_state(legacy=True)
    assert isinstance(state, tuple)  # the legacy form: ("MT19937", keys, pos, has_gauss, cached)
    name, keys, pos, has_gauss, cached = state
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def _restore_rng(tensors: dict[str, torch.Tensor], host: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch.cpu"])
    cuda = [tensors[f"torch.cuda.{i}"] for i in range(len(tensors) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = host["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = host["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


@dataclass
class Checkpointer:
    """Saves `<directory>/<prefix>-step-NNNNNN` and keeps only the newest `keep` of that prefix."""

    directory: Path
    prefix: str
    metadata: dict[str, Any]
    keep: int = 2

    def save(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        state: TrainingState,
        best_model: dict[str, torch.Tensor] | None,
    ) -> Path:
        path = save_checkpoint(
            Path(self.directory) / f"{self.prefix}-step-{state.step:06d}",
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            state=state,
            best_model=best_model,
            metadata=self.metadata,
        )
        older = sorted(Path(self.directory).glob(f"{self.prefix}-step-*"))[: -self.keep]
        for old in older:
            shutil.rmtree(old, ignore_errors=True)
        return path
