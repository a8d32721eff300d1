"""Which engine serves a loaded model, and the CTranslate2 form it needs.

`ctranslate2` serves every model it can load, unless the faithfulness check of the packing job
(report.json `engines.ctranslate2`) found that its form surely loses more of the task metric than
the budget (the low end of the loss's bootstrap interval is above it): then our own int8 form
serves it (the reference path for a plain teacher), and the model says why. A setting other than
`auto` is obeyed as is. The converted form is cached in its own folder beside the unpacked
artifacts, keyed by the artifact's checksum and the converter's version: the artifact keeps its
packed footprint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ctranslate2

from compression.artifact import REPORT_FILE
from compression.ct2 import (
    CONVERTER_VERSION,
    FAITHFULNESS_BUDGET,
    INFO_FILE,
    Quantization,
    convert,
    over_budget,
)

Engine = Literal["auto", "ctranslate2", "int8", "reference"]
DEFAULT_BUDGET = FAITHFULNESS_BUDGET


@dataclass(frozen=True)
class EngineChoice:
    engine: Literal["ctranslate2", "int8", "reference"]
    reason: str
    faithfulness: dict[str, Any] | None  # report.json's check of the CTranslate2 form, if any


def choose_engine(setting: Engine, folder: Path, *, packed: bool, budget: float) -> EngineChoice:
    """The engine the setting asks for; under `auto`, CTranslate2 unless its check failed."""
    faithfulness = _faithfulness(folder)
    if setting != "auto":
        return EngineChoice(setting, "set by DQB_SERVING_ENGINE", faithfulness)
    loss, low = _loss(faithfulness)
    if faithfulness is not None and loss is not None and low is not None and over_budget(low, budget):
        reason = (f"the CTranslate2 form loses {loss:.2f} {faithfulness['metric']} points on validation "
                  f"(at least {low:.2f}), more than the budget of {budget:g}")
        return EngineChoice("int8" if packed else "reference", reason, faithfulness)
    return EngineChoice("ctranslate2", "the fastest engine (default)", faithfulness)


def _loss(faithfulness: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """The check's loss and the low end of its interval; a check written before the interval was
    recorded has only the point estimate, which then stands for both."""
    if faithfulness is None or not isinstance(faithfulness.get("metric_loss"), int | float):
        return None, None
    interval = faithfulness.get("loss_interval")
    low = interval.get("low") if isinstance(interval, dict) else None
    loss = float(faithfulness["metric_loss"])
    return loss, float(low) if isinstance(low, int | float) else loss


def fallback(choice: EngineChoice, packed: bool, error: Exception) -> EngineChoice:
    """What `auto` serves when CTranslate2 cannot take the model."""
    return EngineChoice("int8" if packed else "reference", f"CTranslate2 cannot load it: {error}",
                        choice.faithfulness)


def _faithfulness(folder: Path) -> dict[str, Any] | None:
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = (report.get("engines") or {}).get("ctranslate2") if isinstance(report, dict) else None
    return found if isinstance(found, dict) else None


def converted(folder: Path, sha256: str, cache_root: Path, quantization: Quantization) -> Path:
    """The CTranslate2 form of the unpacked model `folder`, converted once per checksum."""
    target = cache_root / f"{sha256}-{quantization}-v{CONVERTER_VERSION}-ct2-{ctranslate2.__version__}"
    if (target / INFO_FILE).is_file():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_root, prefix=".convert-"))
    try:
        convert(folder, staging, quantization=quantization)
        try:
            staging.rename(target)
        except OSError:  # another process converted it first
            if not (target / INFO_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass(frozen=True)
class Ct2Runtime:
    translator: ctranslate2.Translator
    compute_type: str
    info: dict[str, Any]  # INFO_FILE: what was converted, and the decoding settings
    bytes: int


def open_translator(model_dir: Path, *, device: str, packed: bool, streams: int, cores: int) -> Ct2Runtime:
    """A translator running `streams` batches at once, each on its share of the cores (as our own
    streams do, see serving.service.stream_threads)."""
    cuda = device.startswith("cuda")
    compute_type = ("int8_float16" if cuda else "int8") if packed else ("float16" if cuda else "float32")
    translator = ctranslate2.Translator(
        str(model_dir), device="cuda" if cuda else "cpu", compute_type=compute_type,
        inter_threads=streams, intra_threads=max(1, cores // streams) if cores else 0)
    info = json.loads((model_dir / INFO_FILE).read_text(encoding="utf-8"))
    return Ct2Runtime(translator, compute_type, info, os.path.getsize(model_dir / "model.bin"))
