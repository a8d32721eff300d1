"""Check a submitted recipe against the tenant's catalog before anything is queued.

Errors are RecipeError(param, message), which the API answers as 400 naming the field.
"""

from __future__ import annotations

from typing import Any

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


def validate_job_recipe(session: Session, *, tenant_id: str, body: dict[str, Any]) -> Recipe:
    """The validated recipe; its teacher and datasets must be this tenant's uploads and fit it."""
    recipe = Recipe.from_dict(body)
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
