"""Quality gates: the recipe's `gate` and the verdict on a teacher's and a student's scores."""

from __future__ import annotations

from typing import Any

import pytest

from compression.errors import RecipeError
from compression.gate import judge
from compression.recipe import GateSpec, Recipe


def _recipe(task: str = "summarization", method: str = "dq", **gate: Any) -> Recipe:
    return Recipe.from_dict({"task": task, "method": method, "teacher": {"path": "teacher"},
                             "dataset": {"train": "train.jsonl"}, "gate": gate})


def _gate(**fields: Any) -> GateSpec:
    gate = _recipe(**fields).gate
    assert gate is not None
    return gate


def test_the_metric_defaults_to_the_task_metric_and_round_trips() -> None:
    assert _gate(max_drop=0.02).metric == "rougeLsum"
    assert _gate(task="translation", max_drop=0.02).metric == "bleu"
    recipe = _recipe(max_drop=1.5, drop="absolute", on_fail="reject")
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert recipe.to_dict()["gate"] == {"metric": "rougeLsum", "max_drop": 1.5, "drop": "absolute",
                                        "on_fail": "reject"}


def test_a_recipe_without_a_gate_has_none() -> None:
    data = _recipe(max_drop=0.1).to_dict()
    del data["gate"]
    assert Recipe.from_dict(data).gate is None


@pytest.mark.parametrize(("fields", "param"), [
    ({"max_drop": -0.1}, "gate.max_drop"),
    ({"max_drop": 1.5}, "gate.max_drop"),  # relative: a fraction of the teacher's score
    ({}, "gate.max_drop"),
    ({"max_drop": 0.1, "on_fail": "delete"}, "gate.on_fail"),
    ({"max_drop": 0.1, "metric": "bleu"}, "gate.metric"),  # not a summarization metric
    ({"max_drop": 0.1, "metric": "meteor"}, "gate.metric"),
    ({"max_drop": 0.1, "method": "finetune"}, "gate"),  # finetune makes no student to judge
])
def test_a_bad_gate_names_its_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(RecipeError) as caught:
        _recipe(**fields)
    assert caught.value.param == param


def test_a_student_within_the_relative_drop_passes() -> None:
    result = judge(_gate(max_drop=0.02), {"rougeLsum": 40.0}, {"rougeLsum": 39.6})
    assert result.verdict == "passed" and result.passed
    assert result.drop == pytest.approx(0.4) and result.relative_drop == pytest.approx(0.01)


def test_a_student_exactly_on_the_bound_passes_despite_float_rounding() -> None:
    assert judge(_gate(max_drop=0.02), {"rougeLsum": 30.0}, {"rougeLsum": 29.4}).passed
    assert judge(_gate(max_drop=0.6, drop="absolute"), {"rougeLsum": 30.0}, {"rougeLsum": 29.4}).passed


def test_a_student_beyond_the_relative_drop_is_flagged_or_rejected_as_the_gate_says() -> None:
    scores = {"rougeLsum": 40.0}, {"rougeLsum": 38.0}  # 5% below
    assert judge(_gate(max_drop=0.02), *scores).verdict == "flagged"
    rejected = judge(_gate(max_drop=0.02, on_fail="reject"), *scores)
    assert rejected.verdict == "rejected" and not rejected.passed
    assert rejected.relative_drop == pytest.approx(0.05)


def test_an_absolute_drop_is_in_metric_points() -> None:
    gate = _gate(task="translation", max_drop=1.0, drop="absolute")
    assert judge(gate, {"bleu": 30.0}, {"bleu": 29.0}).verdict == "passed"
    assert judge(gate, {"bleu": 30.0}, {"bleu": 28.9}).verdict == "flagged"


def test_the_gate_judges_its_own_metric() -> None:
    gate = _gate(metric="rouge2", max_drop=0.0)
    teacher, student = {"rougeLsum": 40.0, "rouge2": 10.0}, {"rougeLsum": 10.0, "rouge2": 10.0}
    assert judge(gate, teacher, student).verdict == "passed"


def test_a_student_above_its_teacher_passes_a_zero_drop() -> None:
    result = judge(_gate(max_drop=0.0), {"rougeLsum": 20.0}, {"rougeLsum": 25.0})
    assert result.passed and result.drop == -5.0


def test_a_teacher_scoring_zero_cannot_be_undercut() -> None:
    assert judge(_gate(max_drop=0.0), {"rougeLsum": 0.0}, {"rougeLsum": 0.0}).passed


def test_the_verdict_as_json_carries_both_scores_the_drop_and_a_message() -> None:
    gate = _gate(max_drop=0.02, on_fail="reject")
    as_dict = judge(gate, {"rougeLsum": 40.0}, {"rougeLsum": 30.0}).to_dict()
    assert as_dict | {"message": ""} == {
        "verdict": "rejected", "passed": False, "metric": "rougeLsum", "teacher": 40.0, "student": 30.0,
        "drop": 10.0, "relative_drop": 0.25, "max_drop": 0.02, "drop_kind": "relative",
        "on_fail": "reject", "message": ""}
    assert "rougeLsum 30.00" in as_dict["message"] and "25.0%" in as_dict["message"]
