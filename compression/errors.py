"""Errors that callers (CLI, worker, API) tell apart."""

from __future__ import annotations

from pydantic import ValidationError


class UserInputError(ValueError):
    """Bad input from the user (recipe, dataset, model files); `param` names the culprit."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


class RecipeError(UserInputError):
    """A recipe that fails validation."""

    @classmethod
    def from_validation(cls, exc: ValidationError) -> RecipeError:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or "recipe"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        return cls(param, message)


class TrainingDiverged(RecipeError):
    """The loss or the gradients became NaN or infinite: the recipe's settings do not train."""


class DatasetError(UserInputError):
    """A dataset that cannot be used as asked (missing column, empty, not UTF-8...)."""


class ModelError(UserInputError):
    """A teacher or artifact directory that is not a usable BART/mBART model."""


class Cancelled(Exception):
    """The progress callback asked the run to stop."""
