"""The recipes the README points at stay valid and point at files that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from compression.recipe import load_recipe

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", ["recipe.yaml", "finetune-teacher.yaml"])
def test_example_recipe_loads_and_its_data_files_exist(name: str) -> None:
    recipe = load_recipe(EXAMPLES / name)
    assert Path(recipe.dataset.train).is_file()
    assert Path(recipe.dataset.validation).is_file()
