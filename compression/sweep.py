"""Sweeps: one base recipe over axes of bit widths, layer plans and methods; the rungs of
successive halving; the Pareto front of size against quality; the recommended point.

Pure planning on plain data, so the service (store.sweeps), the benchmark and the tests all
decide alike. The service keeps the state: which child job ran which point at which rung.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from compression.errors import RecipeError
from compression.recipe import ALLOWED_BITS, GateSpec, Recipe, StrictModel, error_at, fill_gate_metric

Method = Literal["dq", "ptq", "qat_only", "distill_only"]
MAX_POINTS = 64
BITS_PATTERN = r"^\d+-\d+-\d+$"  # weight-embedding-activation, as the paper's W-E-A
LAYERS_PATTERN = r"^\d+-\d+$"  # encoder-decoder


class SweepAxes(StrictModel):
    """Every combination is one point; distill_only trains a 32-bit student, so its bit widths
    collapse into one point per layer plan."""

    bits: list[str] = Field(min_length=1, max_length=8)
    layers: list[str] = Field(min_length=1, max_length=8)
    methods: list[Method] = Field(default=["dq"], min_length=1, max_length=4)

    @field_validator("bits")
    @classmethod
    def _bits(cls, values: list[str]) -> list[str]:
        for text in values:
            parts = text.split("-")
            if len(parts) != 3 or not all(p.isdigit() and int(p) in ALLOWED_BITS for p in parts):
                raise ValueError(f"{text!r} is not W-E-A bit widths such as '2-2-8' (each one of "
                                 f"{', '.join(map(str, ALLOWED_BITS))})")
        return _unique(values)

    @field_validator("layers")
    @classmethod
    def _layers(cls, values: list[str]) -> list[str]:
        for text in values:
            parts = text.split("-")
            if len(parts) != 2 or not all(p.isdigit() and 1 <= int(p) <= 1000 for p in parts):
                raise ValueError(f"{text!r} is not an encoder-decoder layer plan such as '6-3'")
        return _unique(values)

    @field_validator("methods")
    @classmethod
    def _methods(cls, values: list[Method]) -> list[Method]:
        return _unique(values)


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"lists a value twice: {values}")
    return values


class SweepBudget(StrictModel):
    max_parallel: int = Field(2, ge=1, le=64)  # children queued or running at once
    max_total_steps: int | None = Field(None, ge=1)  # training steps summed over every child


class SweepSpec(StrictModel):
    """What POST /v1/sweeps takes. The base recipe's `training.max_steps` is each point's budget
    (the last rung's, under successive halving); the sweep's gate judges every child."""

    recipe: Recipe
    axes: SweepAxes
    gate: GateSpec
    objective: Literal["smallest_passing", "pareto"] = "smallest_passing"
    strategy: Literal["grid", "successive_halving"] = "grid"
    eta: int = Field(2, ge=2, le=4)  # successive halving keeps ceil(n / eta) points per rung
    budget: SweepBudget = SweepBudget()

    @model_validator(mode="after")
    def _fits(self) -> SweepSpec:
        recipe = self.recipe
        if recipe.method == "finetune" or recipe.teacher_training is not None:
            raise error_at(("recipe", "method"), "a sweep compresses one teacher many ways: fine-tune the "
                           "teacher in its own job (method 'finetune'), then sweep over the model it makes",
                           recipe.method)
        if recipe.training.max_steps is None:
            raise error_at(("recipe", "training", "max_steps"), "a sweep counts steps: set each point's "
                           "budget in recipe.training.max_steps", None)
        if recipe.gate is not None:
            raise error_at(("recipe", "gate"), "the sweep's own `gate` judges every child: leave recipe.gate "
                           "out", recipe.gate.model_dump())
        fill_gate_metric(self.gate, recipe.task)
        if len(points(self)) > MAX_POINTS:
            raise error_at(("axes",), f"{len(points(self))} points; a sweep has at most {MAX_POINTS}", None)
        planned, limit = planned_steps(self), self.budget.max_total_steps
        if limit is not None and planned > limit:
            raise error_at(("budget", "max_total_steps"), f"the plan trains {planned} steps in all, over "
                           f"the budget of {limit}", limit)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecipeError.from_validation(exc) from None


@dataclass(frozen=True)
class Point:
    index: int
    method: str
    bits: str  # W-E-A
    layers: str  # encoder-decoder

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "method": self.method, "bits": self.bits, "layers": self.layers}


def points(spec: SweepSpec) -> list[Point]:
    """The sweep's points in a fixed order (methods, then bits, then layers)."""
    combos: dict[tuple[str, str, str], None] = {}
    for method in spec.axes.methods:
        for bits in spec.axes.bits:
            for layers in spec.axes.layers:
                combos[(method, "32-32-32" if method == "distill_only" else bits, layers)] = None
    return [Point(i, m, b, layer) for i, (m, b, layer) in enumerate(combos)]


def rung_steps(spec: SweepSpec) -> list[int]:
    """Training steps of each rung: one rung at the full budget for a grid; for successive halving,
    1 + floor(log_eta(n)) rungs whose budgets grow by eta up to the full one (Hyperband's rule)."""
    full = int(spec.recipe.training.max_steps or 1)
    if spec.strategy == "grid":
        return [full]
    count = 1 + int(math.floor(math.log(len(points(spec)), spec.eta) + 1e-9))
    return [max(1, full // spec.eta ** (count - 1 - rung)) for rung in range(count)]


def rung_sizes(spec: SweepSpec) -> list[int]:
    """Points trained at each rung: all at the first, then ceil(n / eta) of the previous rung's."""
    sizes = [len(points(spec))]
    for _ in rung_steps(spec)[1:]:
        sizes.append(math.ceil(sizes[-1] / spec.eta))
    return sizes


def point_steps(point: Point, steps: int) -> int:
    """ptq trains nothing: its steps cost nothing."""
    return 0 if point.method == "ptq" else steps


def planned_steps(spec: SweepSpec) -> int:
    """Training steps the sweep runs at most (every rung full of trained points; ptq points train
    nothing): the budget is checked against this."""
    trained = sum(p.method != "ptq" for p in points(spec))
    rungs = zip(rung_sizes(spec), rung_steps(spec), strict=True)
    return sum(min(size, trained) * steps for size, steps in rungs)


def grid_steps(spec: SweepSpec) -> int:
    """What a grid over the same points would train: the baseline of `steps_saved`."""
    return sum(point_steps(p, int(spec.recipe.training.max_steps or 0)) for p in points(spec))


def child_recipe(spec: SweepSpec, point: Point, steps: int) -> Recipe:
    """The base recipe at this point, with the rung's steps and the sweep's gate."""
    data = spec.recipe.to_dict()
    weight, embedding, activation = (int(b) for b in point.bits.split("-"))
    encoder, decoder = (int(n) for n in point.layers.split("-"))
    data["method"] = point.method
    data["quantization"].update(weight_bits=weight, embedding_bits=embedding, activation_bits=activation)
    data["student"] = {"encoder_layers": encoder, "decoder_layers": decoder}
    data["training"]["max_steps"] = steps
    data["gate"] = spec.gate.model_dump()
    return Recipe.from_dict(data)


@dataclass(frozen=True)
class Outcome:
    """A point's result at some rung: its artifact's bytes on disk and its score on the gate's metric."""

    point: int
    bytes: int
    metric: float


def dominates(a: Outcome, b: Outcome) -> bool:
    """a is no larger and no worse than b, and better in one of the two."""
    return a.bytes <= b.bytes and a.metric >= b.metric and (a.bytes < b.bytes or a.metric > b.metric)


def pareto_ranks(outcomes: list[Outcome]) -> dict[int, int]:
    """Non-dominated sorting: rank 0 is the front, rank 1 the front of the rest, and so on."""
    ranks: dict[int, int] = {}
    left, rank = list(outcomes), 0
    while left:
        front = [o for o in left if not any(dominates(other, o) for other in left)]
        ranks.update({o.point: rank for o in front})
        left, rank = [o for o in left if o.point not in ranks], rank + 1
    return ranks


def front(outcomes: list[Outcome]) -> list[Outcome]:
    """The Pareto front, smallest first."""
    ranks = pareto_ranks(outcomes)
    return sorted((o for o in outcomes if ranks[o.point] == 0), key=lambda o: (o.bytes, o.point))


def survivors(outcomes: list[Outcome], keep: int) -> list[int]:
    """Successive halving's cut: the `keep` points first by Pareto rank, then by metric, then by
    size; a dominated point goes before any point of the front. Points without an outcome (a failed
    child) are not in `outcomes` and so never continue."""
    ranks = pareto_ranks(outcomes)
    ordered = sorted(outcomes, key=lambda o: (ranks[o.point], -o.metric, o.bytes, o.point))
    return sorted(o.point for o in ordered[:keep])
