"""Check a submitted recipe against the tenant's catalog before anything is queued.

Errors are RecipeError(param, message), which the API answers as 400 naming the field; so are
the typed body's validation errors inside the recipe (`recipe_error`, used by the jobs route).
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from compression.errors import RecipeError
from compression.recipe import Recipe
from store import catalog


def _check_columns(session: Session, *, tenant_id: str, param: str, dataset_id: str, recipe: Recipe) -> None:
    dataset = catalog.get_dataset(session, tenant_id=tenant_id, dataset_id=dataset_id)
    if dataset is None:
        raise RecipeError(param, f"no dataset with id {dataset_id!r}")
    for field in ("source_field", "target_field"):
        column = getattr(recipe.dataset, field)
        if column not in dataset.columns:
            raise RecipeError(f"dataset.{field}", f"dataset {dataset_id} has no column {column!r} "
                                                 f"(its columns: {', '.join(dataset.columns)})")


def recipe_error(exc: RequestValidationError) -> RecipeError | None:
    """A typed recipe body's first error inside the recipe, as the RecipeError that names its field
    (400, like the checks below); None for a body that is not a JSON object at all (422)."""
    first = exc.errors()[0] if exc.errors() else {}
    loc = tuple(first.get("loc", ()))
    if len(loc) < 2 or loc[0] != "body" or first.get("type") == "json_invalid":  # its loc is a position
        return None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    return RecipeError(".".join(str(part) for part in loc[1:]), message)


def check_job_recipe(session: Session, *, tenant_id: str, recipe: Recipe) -> Recipe:
    """The recipe (parsed once, by the route), checked against this tenant's uploads."""
    if recipe.teacher.model is None:
        raise RecipeError("teacher", "through the service the teacher is an uploaded model: {\"model\": ID}")
    if recipe.dataset.dataset is None:
        raise RecipeError("dataset", "through the service the data is an uploaded dataset: {\"dataset\": ID}")
    model = catalog.get_model(session, tenant_id=tenant_id, model_id=recipe.teacher.model)
    if model is None:
        raise RecipeError("teacher.model", f"no model with id {recipe.teacher.model!r}")
    recipe.student.check_against(model.layers["encoder"], model.layers["decoder"])
    _check_columns(session, tenant_id=tenant_id, param="dataset.dataset", dataset_id=recipe.dataset.dataset,
                   recipe=recipe)
    if recipe.dataset.validation is not None:
        _check_columns(session, tenant_id=tenant_id, param="dataset.validation",
                       dataset_id=recipe.dataset.validation, recipe=recipe)
    return recipe
