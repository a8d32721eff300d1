"""Turn a service recipe's references ({model: id}, {dataset: id}) into local paths for compress.

Only uploaded ids are accepted here: a recipe through the service must not name files on the
worker's disk. Model archives are unpacked once into DATA_DIR/cache/models/<id>.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from compression.errors import RecipeError
from compression.recipe import Recipe
from store import catalog
from store.blobs import BlobStore, unpack_tar_once
from store.models import Artifact
from store.settings import Settings


def resolve_recipe(recipe: Recipe, *, session: Session, tenant_id: str, settings: Settings,
                   blobs: BlobStore) -> Recipe:
    """A copy of the recipe whose teacher and dataset are local paths."""
    data = recipe.to_dict()
    teacher, dataset = data["teacher"], data["dataset"]
    if not teacher.get("model"):
        raise RecipeError("teacher", "through the service the teacher must be an uploaded model: {model: id}")
    if not dataset.get("dataset"):
        raise RecipeError("dataset", "through the service the dataset must be an upload: {dataset: id}")
    model_dir = model_directory(session, tenant_id=tenant_id, model_id=teacher["model"], settings=settings,
                                blobs=blobs)
    data["teacher"] = {"path": str(model_dir)}
    train = _dataset_file(session, tenant_id, dataset.pop("dataset"), blobs, "dataset.dataset")
    dataset["train"] = str(train)
    if dataset.get("validation"):
        dataset["validation"] = str(_dataset_file(session, tenant_id, dataset["validation"], blobs,
                                                  "dataset.validation"))
    return Recipe.from_dict(data)


def _artifact(session: Session, tenant_id: str, artifact_id: str) -> Artifact | None:
    return catalog.get_artifact(session, tenant_id=tenant_id, artifact_id=artifact_id)


def _dataset_file(session: Session, tenant_id: str, dataset_id: str, blobs: BlobStore, param: str) -> Path:
    row = catalog.get_dataset(session, tenant_id=tenant_id, dataset_id=dataset_id)
    artifact = _artifact(session, tenant_id, row.artifact_id) if row is not None else None
    if artifact is None or not blobs.exists(artifact.path):
        raise RecipeError(param, f"no dataset {dataset_id!r}")
    return blobs.path_of(artifact.path)


def model_directory(session: Session, *, tenant_id: str, model_id: str, settings: Settings,
                    blobs: BlobStore) -> Path:
    """The model's HF directory, unpacked from its .tar on first use."""
    row = catalog.get_model(session, tenant_id=tenant_id, model_id=model_id)
    artifact = _artifact(session, tenant_id, row.artifact_id) if row is not None else None
    if artifact is None or not blobs.exists(artifact.path):
        raise RecipeError("teacher.model", f"no model {model_id!r}")
    with blobs.open(artifact.path) as tar:
        return unpack_tar_once(tar, settings.cache_dir / "models" / model_id, stamp=artifact.sha256)
