"""Students built from tiny teachers: depths 1..12, the copied layers, mBART, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel

from compression.errors import RecipeError
from compression.layer_map import LayerMap, default_layer_map
from compression.recipe import StudentSpec, TeacherSpec
from compression.student import build_student, teacher_key
from compression.teacher import load_teacher
from tests.tiny import make_tiny_teacher


@pytest.fixture(scope="module")
def teacher12(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedModel:
    path = make_tiny_teacher(tmp_path_factory.mktemp("t12"), 12, 12, d_model=16, vocab_size=300)
    return load_teacher(TeacherSpec(path=str(path)))[0]


@pytest.fixture(scope="module")
def teacher66(tiny_teacher_6x6_dir: Path) -> PreTrainedModel:
    return load_teacher(TeacherSpec(path=str(tiny_teacher_6x6_dir)))[0]


def _assert_copied(student: PreTrainedModel, teacher: PreTrainedModel, layer_map: LayerMap) -> None:
    source = teacher.state_dict()
    for key, value in student.state_dict().items():
        assert torch.equal(value, source[teacher_key(key, layer_map)]), key


@pytest.mark.parametrize("depth", range(1, 13))
def test_every_depth_from_1_to_12_builds_from_a_12_layer_teacher(
    teacher12: PreTrainedModel, depth: int
) -> None:
    student, layer_map = build_student(
        teacher12, StudentSpec(encoder_layers=depth, decoder_layers=13 - depth)
    )
    assert (student.config.encoder_layers, student.config.decoder_layers) == (depth, 13 - depth)
    assert layer_map == LayerMap(default_layer_map(12, depth), default_layer_map(12, 13 - depth))
    _assert_copied(student, teacher12, layer_map)


def test_six_three_student_copies_the_papers_layers(teacher66: PreTrainedModel) -> None:
    student, layer_map = build_student(teacher66, StudentSpec(encoder_layers=6, decoder_layers=3))
    assert layer_map == LayerMap(encoder=[0, 1, 2, 3, 4, 5], decoder=[0, 2, 5])
    assert torch.equal(
        student.model.decoder.layers[2].fc2.weight, teacher66.model.decoder.layers[5].fc2.weight
    )
    _assert_copied(student, teacher66, layer_map)


def test_student_is_the_same_class_with_eager_attention_and_a_tied_head(teacher66: PreTrainedModel) -> None:
    student, _ = build_student(teacher66, StudentSpec(encoder_layers=2, decoder_layers=1))
    assert type(student) is type(teacher66)
    assert student.config._attn_implementation == "eager"
    assert student.lm_head.weight is student.model.shared.weight
    assert student.training and not teacher66.training


def test_student_weights_are_its_own(teacher66: PreTrainedModel) -> None:
    student, _ = build_student(teacher66, StudentSpec(encoder_layers=2, decoder_layers=1))
    with torch.no_grad():
        student.model.shared.weight.add_(1.0)
    assert not torch.equal(student.model.shared.weight, teacher66.model.shared.weight)


def test_explicit_indices_and_full_depth(teacher66: PreTrainedModel) -> None:
    student, layer_map = build_student(teacher66, StudentSpec(encoder_layers=[4, 1], decoder_layers=None))
    assert layer_map == LayerMap(encoder=[4, 1], decoder=[0, 1, 2, 3, 4, 5])
    _assert_copied(student, teacher66, layer_map)


def test_mbart_student_keeps_its_final_layer_norms(tmp_path: Path) -> None:
    teacher = load_teacher(TeacherSpec(path=str(make_tiny_teacher(tmp_path, 3, 3, mbart=True))))[0]
    student, layer_map = build_student(teacher, StudentSpec(encoder_layers=1, decoder_layers=2))
    assert layer_map == LayerMap(encoder=[2], decoder=[0, 2])
    assert type(student) is type(teacher)
    _assert_copied(student, teacher, layer_map)


def test_a_student_deeper_than_the_teacher_is_refused(teacher66: PreTrainedModel) -> None:
    with pytest.raises(RecipeError) as info:
        build_student(teacher66, StudentSpec(decoder_layers=7))
    assert info.value.param == "student.decoder_layers"


def test_an_out_of_range_index_is_refused(teacher66: PreTrainedModel) -> None:
    with pytest.raises(RecipeError, match="out of range"):
        build_student(teacher66, StudentSpec(encoder_layers=[0, 6]))
