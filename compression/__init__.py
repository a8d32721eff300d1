"""DQ-BART: joint distillation and quantization of BART-family seq2seq models."""

from compression.errors import Cancelled, DatasetError, ModelError, RecipeError, UserInputError
from compression.progress import ProgressCallback, ProgressEvent
from compression.recipe import Recipe, load_recipe, parse_recipe_text

__all__ = [
    "Cancelled",
    "DatasetError",
    "ModelError",
    "ProgressCallback",
    "ProgressEvent",
    "Recipe",
    "RecipeError",
    "UserInputError",
    "load_recipe",
    "parse_recipe_text",
]
