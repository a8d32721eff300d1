"""Sweep planning: points, rungs, budgets, the Pareto front and successive halving's cut."""

from __future__ import annotations

from typing import Any

import pytest

from compression.errors import RecipeError
from compression.sweep import (
    Outcome,
    SweepSpec,
    child_recipe,
    front,
    grid_steps,
    pareto_ranks,
    planned_steps,
    points,
    rung_sizes,
    rung_steps,
    survivors,
)

BASE = {"teacher": {"path": "teacher"}, "dataset": {"train": "train.jsonl"}, "training": {"max_steps": 400}}


def spec(**changes: Any) -> SweepSpec:
    data: dict[str, Any] = {"recipe": BASE, "axes": {"bits": ["8-8-8", "2-2-8"], "layers": ["6-3", "3-1"]},
                            "gate": {"max_drop": 0.02}, **changes}
    return SweepSpec.from_dict(data)


def test_every_combination_of_the_axes_is_one_point_in_a_fixed_order() -> None:
    made = [(p.method, p.bits, p.layers) for p in points(spec())]
    assert made == [("dq", "8-8-8", "6-3"), ("dq", "8-8-8", "3-1"),
                    ("dq", "2-2-8", "6-3"), ("dq", "2-2-8", "3-1")]


def test_distill_only_points_collapse_to_one_32_bit_point_per_layer_plan() -> None:
    axes = {"bits": ["8-8-8", "2-2-8"], "layers": ["6-3"], "methods": ["dq", "distill_only"]}
    made = [(p.method, p.bits) for p in points(spec(axes=axes))]
    assert made == [("dq", "8-8-8"), ("dq", "2-2-8"), ("distill_only", "32-32-32")]


def test_a_child_recipe_is_the_base_at_the_point_with_the_rungs_steps_and_the_sweeps_gate() -> None:
    sweep = spec()
    recipe = child_recipe(sweep, points(sweep)[3], steps=100)
    assert (recipe.quantization.weight_bits, recipe.quantization.embedding_bits,
            recipe.quantization.activation_bits) == (2, 2, 8)
    assert (recipe.student.encoder_layers, recipe.student.decoder_layers) == (3, 1)
    assert recipe.training.max_steps == 100
    assert recipe.gate is not None and recipe.gate.metric == "rougeLsum" and recipe.gate.max_drop == 0.02


def test_a_grid_trains_every_point_once_at_the_full_budget() -> None:
    assert rung_steps(spec()) == [400] and rung_sizes(spec()) == [4]
    assert planned_steps(spec()) == grid_steps(spec()) == 1600


def test_successive_halving_grows_each_rungs_budget_by_eta_while_keeping_one_in_eta() -> None:
    halving = spec(strategy="successive_halving")
    assert rung_steps(halving) == [100, 200, 400] and rung_sizes(halving) == [4, 2, 1]
    assert planned_steps(halving) == 4 * 100 + 2 * 200 + 400 < grid_steps(halving)


def test_nine_points_at_eta_three_make_three_rungs() -> None:
    nine = spec(strategy="successive_halving", eta=3,
                axes={"bits": ["8-8-8", "4-4-8", "2-2-8"], "layers": ["6-6", "6-3", "3-1"]})
    assert rung_steps(nine) == [44, 133, 400] and rung_sizes(nine) == [9, 3, 1]


def test_ptq_points_train_no_steps() -> None:
    assert grid_steps(spec(axes={"bits": ["8-8-8"], "layers": ["6-3"], "methods": ["dq", "ptq"]})) == 400


@pytest.mark.parametrize(("changes", "param"), [
    ({"budget": {"max_total_steps": 1000}}, "budget.max_total_steps"),
    ({"recipe": {**BASE, "training": {"epochs": 2}}}, "recipe.training.max_steps"),
    ({"recipe": {**BASE, "gate": {"max_drop": 0.1}}}, "recipe.gate"),
    ({"recipe": {**BASE, "method": "finetune"}}, "recipe.method"),
    ({"gate": {"max_drop": 0.02, "metric": "bleu"}}, "gate.metric"),
    ({"axes": {"bits": ["3-3-8"], "layers": ["6-3"]}}, "axes.bits"),
    ({"axes": {"bits": ["8-8-8"], "layers": ["6"]}}, "axes.layers"),
    ({"axes": {"bits": ["8-8-8", "8-8-8"], "layers": ["6-3"]}}, "axes.bits"),
])
def test_a_sweep_that_cannot_run_as_asked_is_refused_naming_the_field(changes: dict[str, Any],
                                                                       param: str) -> None:
    with pytest.raises(RecipeError) as refused:
        spec(**changes)
    assert refused.value.param == param


def test_the_spec_round_trips_through_json() -> None:
    sweep = spec(strategy="successive_halving")
    assert SweepSpec.from_dict(sweep.to_dict()) == sweep


def test_the_front_holds_the_points_no_other_beats_on_both_size_and_score() -> None:
    outcomes = [Outcome(0, 100, 30.0), Outcome(1, 50, 28.0), Outcome(2, 60, 27.0), Outcome(3, 20, 10.0)]
    assert [o.point for o in front(outcomes)] == [3, 1, 0]
    assert pareto_ranks(outcomes) == {0: 0, 1: 0, 3: 0, 2: 1}


def test_halving_drops_a_dominated_point_before_any_point_of_the_front() -> None:
    # Point 2 is larger and worse than point 1: it goes first, though it outscores point 3.
    outcomes = [Outcome(0, 100, 30.0), Outcome(1, 50, 28.0), Outcome(2, 60, 27.0), Outcome(3, 20, 10.0)]
    assert survivors(outcomes, keep=3) == [0, 1, 3]
    assert survivors(outcomes, keep=2) == [0, 1]


def test_a_point_without_an_outcome_never_continues() -> None:
    assert survivors([Outcome(0, 100, 30.0)], keep=2) == [0]
