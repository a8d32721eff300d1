"""Trained benchmark teachers carried in the repository (data/teachers/<name>/), so that a new
machine restores one in seconds instead of training it for hours: the user cache does not move
with the machine, and our sessions get a fresh machine each time.

The weights are stored in float16, half of float32's bytes. `round_to_half` rounds a teacher to
float16's values before it is scored, so the restored float32 teacher is the scored one, bit for
bit (float32 -> float16 -> float32 is exact once rounded).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

SNAPSHOT_ROOT = Path(__file__).resolve().parent.parent / "data" / "teachers"
WEIGHTS = "model.safetensors"
# What the teacher's run leaves beside its model directory that a restored teacher keeps.
RUN_FILES = ("plan.json", "report.json", "report.md", "curve.jsonl")


Convert = Callable[[np.ndarray], np.ndarray]


def _half(t: np.ndarray) -> np.ndarray:
    return t.astype(np.float16)


def _single(t: np.ndarray) -> np.ndarray:
    return t.astype(np.float32)


def _rounded(t: np.ndarray) -> np.ndarray:
    return _single(_half(t))


def _rewrite_weights(source: Path, dest: Path, convert: Convert) -> None:
    """`convert` applied to every float tensor of a safetensors file; written beside, then renamed."""
    with safe_open(str(source), framework="np") as handle:
        metadata = handle.metadata()
    tensors = {name: convert(t) if np.issubdtype(t.dtype, np.floating) else t
               for name, t in load_file(source).items()}
    partial = dest.with_name(dest.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(dest)


def round_to_half(model_dir: Path) -> None:
    """Round every float weight of a Hugging Face directory to float16's values, kept in float32."""
    _rewrite_weights(model_dir / WEIGHTS, model_dir / WEIGHTS, _rounded)


def save_snapshot(run_dir: Path, dest: Path) -> Path:
    """The finished teacher of `run_dir` (bench.teacher's --out) as a snapshot folder: its model
    directory with float16 weights in `teacher/`, and the run's plan, report and curve."""
    teacher = run_dir / "teacher"
    if not (run_dir / "report.json").is_file():
        raise SystemExit(f"{run_dir} holds no scored teacher yet: run `python -m bench.teacher` to the end")
    with tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.is_dir() else None) as work:
        tmp = Path(work) / "snapshot"
        shutil.copytree(teacher, tmp / "teacher", ignore=shutil.ignore_patterns(WEIGHTS))
        _rewrite_weights(teacher / WEIGHTS, tmp / "teacher" / WEIGHTS, _half)
        for name in RUN_FILES:
            shutil.copyfile(run_dir / name, tmp / name)
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp, dest)
    return dest


def restore_snapshot(snapshot: Path, run_dir: Path, plan: dict[str, Any] | None = None) -> Path | None:
    """Restore `snapshot` into `run_dir` (float32 weights) when `run_dir` holds no teacher and no
    training of its own, and the snapshot was trained to the same plan (`plan`, else the one
    `run_dir` started, if any); the restored model directory, or None."""
    if ((run_dir / "teacher").exists() or (run_dir / "teacher.checkpoints").exists()
            or not (snapshot / "teacher" / WEIGHTS).is_file()):
        return None
    started = run_dir / "plan.json"
    wanted = plan if plan is not None else json.loads(started.read_text()) if started.is_file() else None
    if wanted is not None and wanted != json.loads((snapshot / "plan.json").read_text()):
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=run_dir) as work:
        tmp = Path(work) / "teacher"
        shutil.copytree(snapshot / "teacher", tmp, ignore=shutil.ignore_patterns(WEIGHTS))
        _rewrite_weights(snapshot / "teacher" / WEIGHTS, tmp / WEIGHTS, _single)
        for name in RUN_FILES:
            shutil.copyfile(snapshot / name, run_dir / name)
        tmp.rename(run_dir / "teacher")
    return run_dir / "teacher"
