"""DQ-BART: joint distillation and quantization of BART-family seq2seq models.

The light parts (recipe, errors, progress) import eagerly. The entry points that need torch and
transformers (`compress`, `finetune`, `load`, `evaluate_model`, `CompressResult`) import on first
use, so that `import compression.recipe` (e.g. in the API) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from compression.errors import Cancelled, DatasetError, ModelError, RecipeError, UserInputError
from compression.progress import ProgressCallback, ProgressEvent
from compression.recipe import Recipe, load_recipe, parse_recipe_text

if TYPE_CHECKING:
    from compression.artifact import load
    from compression.evaluate import evaluate_model
    from compression.pipeline import CompressResult, compress, finetune

_LAZY = {
    "CompressResult": "compression.pipeline",
    "compress": "compression.pipeline",
    "finetune": "compression.pipeline",
    "evaluate_model": "compression.evaluate",
    "load": "compression.artifact",
}

__all__ = [
    "Cancelled",
    "CompressResult",
    "DatasetError",
    "ModelError",
    "ProgressCallback",
    "ProgressEvent",
    "Recipe",
    "RecipeError",
    "UserInputError",
    "compress",
    "evaluate_model",
    "finetune",
    "load",
    "load_recipe",
    "parse_recipe_text",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'compression' has no attribute {name!r}")
