"""Default layer maps: the paper's for 6 layers, maximally spaced for any depth 1..12."""

from __future__ import annotations

import pytest

from compression.layer_map import LayerMap, default_layer_map, resolve_layer_plan

PAIRS = [(t, s) for t in range(1, 13) for s in range(1, t + 1)]


@pytest.mark.parametrize(
    ("student", "expected"),
    [(1, [5]), (2, [0, 5]), (3, [0, 2, 5]), (4, [0, 2, 3, 5]), (5, [0, 1, 3, 4, 5]), (6, [0, 1, 2, 3, 4, 5])],
)
def test_six_layer_maps_are_the_papers(student: int, expected: list[int]) -> None:
    assert default_layer_map(6, student) == expected


@pytest.mark.parametrize(("student", "expected"), [(3, [0, 6, 11]), (6, [0, 2, 4, 7, 9, 11]), (1, [11])])
def test_twelve_layer_maps_are_maximally_spaced(student: int, expected: list[int]) -> None:
    assert default_layer_map(12, student) == expected


@pytest.mark.parametrize(("teacher", "student"), PAIRS)
def test_every_map_is_increasing_in_range_and_keeps_the_ends(teacher: int, student: int) -> None:
    layers = default_layer_map(teacher, student)
    assert len(layers) == student
    assert layers == sorted(set(layers))
    assert layers[0] >= 0 and layers[-1] == teacher - 1
    if student >= 2:
        assert layers[0] == 0


@pytest.mark.parametrize("teacher", range(1, 13))
def test_full_depth_is_the_identity(teacher: int) -> None:
    assert default_layer_map(teacher, teacher) == list(range(teacher))


@pytest.mark.parametrize("student", [0, 7])
def test_impossible_depth_is_refused(student: int) -> None:
    with pytest.raises(ValueError, match="student_layers"):
        default_layer_map(6, student)


def test_plans_resolve_to_indices() -> None:
    assert resolve_layer_plan(None, 4) == [0, 1, 2, 3]
    assert resolve_layer_plan(3, 6) == [0, 2, 5]
    assert resolve_layer_plan([4, 1], 6) == [4, 1]


def test_layer_map_round_trips_through_a_dict() -> None:
    layer_map = LayerMap(encoder=[0, 2, 5], decoder=[5])
    assert LayerMap.from_dict(layer_map.to_dict()) == layer_map
    assert layer_map.to_dict() == {"encoder": [0, 2, 5], "decoder": [5]}
