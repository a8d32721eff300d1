"""Recipe validation: each validator names its field; YAML/JSON loading; lossless round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compression.errors import RecipeError
from compression.recipe import Recipe, StudentSpec, load_recipe, parse_recipe_text


def _recipe_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "teacher": {"path": "teacher"},
        "dataset": {"train": "train.jsonl", "validation": "validation.jsonl"},
    }
    data.update(overrides)
    return data


def test_weight_bits_outside_allowed_set_names_the_field() -> None:
    with pytest.raises(RecipeError, match="quantization.weight_bits"):
        Recipe.from_dict(_recipe_dict(quantization={"weight_bits": 5}))


def test_bits_given_as_a_string_are_rejected() -> None:
    with pytest.raises(RecipeError, match="quantization.embedding_bits"):
        Recipe.from_dict(_recipe_dict(quantization={"embedding_bits": "8"}))


def test_decoder_layers_deeper_than_teacher_names_the_field() -> None:
    with pytest.raises(RecipeError, match="student.decoder_layers"):
        StudentSpec(decoder_layers=7).check_against(6, 6)


def test_duplicate_layer_indices_name_the_field() -> None:
    with pytest.raises(RecipeError, match="student.encoder_layers"):
        Recipe.from_dict(_recipe_dict(student={"encoder_layers": [0, 2, 2]}))


def test_out_of_range_layer_index_names_the_field() -> None:
    with pytest.raises(RecipeError, match="student.encoder_layers"):
        StudentSpec(encoder_layers=[0, 6]).check_against(6, 6)


def test_negative_layer_index_names_the_field() -> None:
    with pytest.raises(RecipeError, match="student.decoder_layers"):
        Recipe.from_dict(_recipe_dict(student={"decoder_layers": [-1, 2]}))


def test_unknown_task_names_the_field() -> None:
    with pytest.raises(RecipeError, match="^task"):
        Recipe.from_dict(_recipe_dict(task="question_answering"))


@pytest.mark.parametrize("cap", [0, -1])
def test_a_validation_cap_below_one_record_is_rejected(cap: int) -> None:
    dataset = {"train": "train.jsonl", "max_validation_samples": cap}
    with pytest.raises(RecipeError, match="dataset.max_validation_samples"):
        Recipe.from_dict(_recipe_dict(dataset=dataset))


def test_unknown_field_is_rejected_with_its_path() -> None:
    with pytest.raises(RecipeError, match="training.learning_rate: unknown field"):
        Recipe.from_dict(_recipe_dict(training={"learning_rate": 1e-4}))


def test_loads_yaml_and_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "teacher: {path: ./teacher}\n"
        "dataset: {train: data/train.jsonl, source_field: text, target_field: title}\n"
        "quantization: {weight_bits: 2, embedding_bits: 2}\n",
        encoding="utf-8",
    )
    recipe = load_recipe(path)
    assert recipe.teacher.path == str((tmp_path / "teacher").resolve())
    assert recipe.dataset.train == str((tmp_path / "data" / "train.jsonl").resolve())
    assert recipe.quantization.weight_bits == 2


def test_loads_json_text() -> None:
    recipe = parse_recipe_text(json.dumps(_recipe_dict(task="translation", method="ptq")))
    assert (recipe.task, recipe.method) == ("translation", "ptq")


def test_round_trip_through_dict_is_lossless() -> None:
    recipe = Recipe.from_dict(
        _recipe_dict(
            student={"encoder_layers": [0, 5], "decoder_layers": 3}, teacher_training={"max_steps": 7}
        )
    )
    assert Recipe.from_dict(recipe.to_dict()).to_dict() == recipe.to_dict()


def test_round_trip_through_a_file_is_lossless(tmp_path: Path) -> None:
    recipe = Recipe.from_dict(_recipe_dict(distillation={"mask_padding": False, "logits": 0.5}))
    path = tmp_path / "recipe.json"
    path.write_text(recipe.to_json(), encoding="utf-8")
    assert Recipe.from_dict(json.loads(path.read_text(encoding="utf-8"))).to_dict() == recipe.to_dict()
