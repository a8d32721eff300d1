"""Distillation loss components (method doc §4)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BartForConditionalGeneration

from compression.data import Example, collate
from compression.losses import distillation_loss, task_loss
from compression.recipe import DistillationSpec, QuantizationSpec, StudentSpec
from compression.student import build_student
from compression.swap import quantize_model
from tests.tiny import tiny_bart_config

DISTILL_TERMS = ("logits", "enc_attn", "dec_attn", "cross_attn", "enc_hidden", "dec_hidden")


@pytest.fixture(scope="module")
def teacher() -> BartForConditionalGeneration:
    torch.manual_seed(0)
    model = BartForConditionalGeneration(tiny_bart_config(64, encoder_layers=3, decoder_layers=3))
    model.set_attn_implementation("eager")
    return model.eval()


def _padded_batch() -> dict[str, torch.Tensor]:
    return collate(
        [Example([0, 5, 6, 7, 8, 2], [0, 9, 10, 2]), Example([0, 11, 2], [0, 12, 13, 14, 15, 2])],
        pad_token_id=1,
    )


def _run(model: BartForConditionalGeneration, batch: dict[str, torch.Tensor]) -> object:
    return model(**batch, output_attentions=True, output_hidden_states=True)


def _perturbed(model: BartForConditionalGeneration) -> BartForConditionalGeneration:
    student = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return student


@pytest.mark.parametrize("mask_padding", [True, False])
def test_every_distillation_term_is_zero_for_an_exact_copy(
    teacher: BartForConditionalGeneration, mask_padding: bool
) -> None:
    batch = _padded_batch()
    student = copy.deepcopy(teacher)
    result = distillation_loss(
        _run(student, batch),
        _run(teacher, batch),
        batch,
        encoder_map=[0, 1, 2],
        decoder_map=[0, 1, 2],
        spec=DistillationSpec(mask_padding=mask_padding),
    )
    for name in (*DISTILL_TERMS, *(() if mask_padding else ("enc_last",))):
        assert result.components[name] == 0.0, name


def test_mask_changes_the_value_when_there_is_padding(teacher: BartForConditionalGeneration) -> None:
    batch, student = _padded_batch(), _perturbed(teacher)
    s_out, t_out = _run(student, batch), _run(teacher, batch)
    maps = {"encoder_map": [0, 1, 2], "decoder_map": [0, 1, 2]}
    masked = distillation_loss(s_out, t_out, batch, **maps, spec=DistillationSpec(mask_padding=True))
    plain = distillation_loss(s_out, t_out, batch, **maps, spec=DistillationSpec(mask_padding=False))
    for name in DISTILL_TERMS:
        assert masked.components[name] != pytest.approx(plain.components[name], rel=1e-3), name


def test_masked_terms_ignore_extra_padding(teacher: BartForConditionalGeneration) -> None:
    student = _perturbed(teacher)
    alone = collate([Example([0, 11, 2], [0, 12, 2])], pad_token_id=1)
    padded = collate(
        [Example([0, 11, 2], [0, 12, 2]), Example([0, 5, 6, 7, 8, 9, 2], [0, 9, 10, 11, 2])], pad_token_id=1
    )
    first = {k: v[:1] for k, v in padded.items()}  # the same example, padded to the longer one's width
    maps = {"encoder_map": [0, 1, 2], "decoder_map": [0, 1, 2], "spec": DistillationSpec()}
    short = distillation_loss(_run(student, alone), _run(teacher, alone), alone, **maps)
    wide = distillation_loss(_run(student, first), _run(teacher, first), first, **maps)
    for name in DISTILL_TERMS:
        assert wide.components[name] == pytest.approx(short.components[name], rel=1e-4), name


def test_total_is_the_weighted_sum_of_components(teacher: BartForConditionalGeneration) -> None:
    batch, student = _padded_batch(), _perturbed(teacher)
    spec = DistillationSpec(task=1.0, logits=0.8, hidden=3.0)
    result = distillation_loss(
        _run(student, batch),
        _run(teacher, batch),
        batch,
        encoder_map=[0, 1, 2],
        decoder_map=[0, 1, 2],
        spec=spec,
    )
    c = result.components
    hidden = sum(c[name] for name in DISTILL_TERMS if name != "logits")
    assert result.total.item() == pytest.approx(c["task"] + 0.8 * c["logits"] + 3.0 * hidden, rel=1e-5)


def test_mapped_layers_compare_against_the_chosen_teacher(teacher: BartForConditionalGeneration) -> None:
    batch = _padded_batch()
    t_out = _run(teacher, batch)
    # A "student" whose outputs are the teacher's own: mapping layer 0 to teacher layer 2 must cost,
    # mapping each layer to itself must not.
    right = distillation_loss(
        t_out, t_out, batch, encoder_map=[0, 1, 2], decoder_map=[0, 1, 2], spec=DistillationSpec()
    )
    wrong = distillation_loss(
        t_out, t_out, batch, encoder_map=[2, 1, 2], decoder_map=[0, 1, 2], spec=DistillationSpec()
    )
    assert right.components["enc_hidden"] == 0.0
    assert wrong.components["enc_hidden"] > 0.0 and wrong.components["enc_attn"] > 0.0


def test_task_loss_is_the_students_cross_entropy(teacher: BartForConditionalGeneration) -> None:
    out = _run(teacher, _padded_batch())
    result = task_loss(out)
    assert result.components == {"task": out.loss.item(), "total": out.loss.item()}


def test_terms_are_zero_for_a_full_depth_student_quantized_at_32_bits(
    teacher: BartForConditionalGeneration,
) -> None:
    batch = _padded_batch()
    student, layer_map = build_student(teacher, StudentSpec())
    quantize_model(student, QuantizationSpec(weight_bits=32, embedding_bits=32, activation_bits=32))
    student.eval()
    result = distillation_loss(
        _run(student, batch),
        _run(teacher, batch),
        batch,
        encoder_map=layer_map.encoder,
        decoder_map=layer_map.decoder,
        spec=DistillationSpec(),
    )
    assert all(result.components[name] == 0.0 for name in DISTILL_TERMS)


def test_paper_mode_adds_the_batch_summed_final_encoder_term(teacher: BartForConditionalGeneration) -> None:
    batch = collate([Example([0, 5, 6, 2], [0, 9, 2]), Example([0, 7, 8, 2], [0, 10, 2])], pad_token_id=1)
    student = _perturbed(teacher)
    s_out, t_out = _run(student, batch), _run(teacher, batch)
    maps = {"encoder_map": [0, 1, 2], "decoder_map": [0, 1, 2]}
    paper = distillation_loss(s_out, t_out, batch, **maps, spec=DistillationSpec(mask_padding=False))
    masked = distillation_loss(s_out, t_out, batch, **maps, spec=DistillationSpec(mask_padding=True))
    last = torch.nn.functional.mse_loss(s_out.encoder_last_hidden_state, t_out.encoder_last_hidden_state)
    assert paper.components["enc_last"] == pytest.approx(2 * last.item(), rel=1e-5)  # about B x the MSE
    assert "enc_last" not in masked.components
