"""Which teacher layer each student layer is copied from (and distilled against)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# DQ-BART's maps for a 6-layer teacher, as in the authors' code (dqbart-method.md section 3).
PAPER_SIX_LAYER_MAPS: dict[int, list[int]] = {
    1: [5],
    2: [0, 5],
    3: [0, 2, 5],
    4: [0, 2, 3, 5],
    5: [0, 1, 3, 4, 5],
    6: [0, 1, 2, 3, 4, 5],
}


def default_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Maximally spaced teacher layers, first and last kept; the paper's table for 6 layers.

    Other depths round i*(T-1)/(S-1) half up (distilbart's 12->3 [0, 6, 11], 12->6
    [0, 2, 4, 7, 9, 11]); one student layer takes the last teacher layer, as the paper does.
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"student_layers must be in [1, {teacher_layers}], got {student_layers}")
    if teacher_layers == 6:
        return list(PAPER_SIX_LAYER_MAPS[student_layers])
    if student_layers == 1:
        return [teacher_layers - 1]
    span, gaps = teacher_layers - 1, student_layers - 1
    return [(2 * i * span + gaps) // (2 * gaps) for i in range(student_layers)]


def resolve_layer_plan(plan: int | list[int] | None, teacher_layers: int) -> list[int]:
    """A recipe's plan (None = keep depth, int = default map, list = explicit indices) as indices."""
    if plan is None:
        return list(range(teacher_layers))
    if isinstance(plan, int):
        return default_layer_map(teacher_layers, plan)
    return list(plan)


@dataclass(frozen=True)
class LayerMap:
    """Teacher layer index for each student layer, per stack."""

    encoder: list[int]
    decoder: list[int]

    def to_dict(self) -> dict[str, list[int]]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerMap:
        return cls(encoder=[int(i) for i in data["encoder"]], decoder=[int(i) for i in data["decoder"]])
