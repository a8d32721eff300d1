"""Distillation loss components (method doc §4)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BartForConditionalGeneration
from transformers.modeling_outputs import Seq2SeqLMOutput

from compression.data import Example, collate
from compression.losses import distillation_loss, kl_divergence, task_loss
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


def _maps() -> dict[str, list[int]]:
    return {"encoder_map": [0, 1, 2], "decoder_map": [0, 1, 2]}


def test_kl_term_equals_its_definition_on_a_tiny_example() -> None:
    student = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]])
    teacher = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    temperature = 2.0
    expected = 0.0
    for s_row, t_row in zip(student[0], teacher[0], strict=True):
        p = torch.softmax(t_row / temperature, -1)
        q = torch.softmax(s_row / temperature, -1)
        expected += float((p * (p / q).log()).sum()) / 2
    got = kl_divergence(student, teacher, torch.ones(1, 2), temperature)
    assert got.item() == pytest.approx(expected * temperature**2, rel=1e-5)
    only_first = kl_divergence(student, teacher, torch.tensor([[1.0, 0.0]]), temperature)
    assert only_first.item() != pytest.approx(got.item())


def test_kl_logits_term_is_zero_for_an_exact_copy(teacher: BartForConditionalGeneration) -> None:
    batch = _padded_batch()
    out = _run(teacher, batch)
    spec = DistillationSpec(logits_loss="kl", temperature=2)
    result = distillation_loss(out, out, batch, **_maps(), spec=spec)
    assert result.components["logits"] == pytest.approx(0.0, abs=1e-6)


def test_terms_of_weight_zero_are_not_computed(teacher: BartForConditionalGeneration) -> None:
    batch, student = _padded_batch(), _perturbed(teacher)
    s_out, t_out = _run(student, batch), _run(teacher, batch)
    none = distillation_loss(s_out, t_out, batch, **_maps(), spec=DistillationSpec(logits=0, hidden=0))
    assert set(none.components) == {"task", "total"} and none.total.item() == s_out.loss.item()
    no_attention = distillation_loss(s_out, t_out, batch, **_maps(), spec=DistillationSpec(attention=0))
    assert set(no_attention.components) == {"task", "total", "logits", "enc_hidden", "dec_hidden"}


def test_attention_weight_applies_to_the_attention_terms_alone(teacher: BartForConditionalGeneration) -> None:
    batch, student = _padded_batch(), _perturbed(teacher)
    spec = DistillationSpec(task=1.0, logits=0.5, hidden=2.0, attention=7.0)
    result = distillation_loss(_run(student, batch), _run(teacher, batch), batch, **_maps(), spec=spec)
    c = result.components
    attention = c["enc_attn"] + c["dec_attn"] + c["cross_attn"]
    expected = c["task"] + 0.5 * c["logits"] + 7.0 * attention + 2.0 * (c["enc_hidden"] + c["dec_hidden"])
    assert result.total.item() == pytest.approx(expected, rel=1e-5)


def _scaled_hidden(out: Seq2SeqLMOutput, factor: float) -> Seq2SeqLMOutput:
    return Seq2SeqLMOutput(
        loss=out.loss,
        logits=out.logits * factor,
        encoder_hidden_states=tuple(h * factor for h in out.encoder_hidden_states),
        decoder_hidden_states=tuple(h * factor for h in out.decoder_hidden_states),
    )


def test_normalized_terms_do_not_depend_on_the_scale_of_the_tensors(
    teacher: BartForConditionalGeneration,
) -> None:
    batch, student = _padded_batch(), _perturbed(teacher)
    s_out, t_out = _run(student, batch), _run(teacher, batch)
    spec = DistillationSpec(attention=0, normalize=True)
    plain = distillation_loss(s_out, t_out, batch, **_maps(), spec=spec)
    s_big, t_big = _scaled_hidden(s_out, 10.0), _scaled_hidden(t_out, 10.0)
    scaled = distillation_loss(s_big, t_big, batch, **_maps(), spec=spec)
    for name in ("logits", "enc_hidden", "dec_hidden"):
        assert scaled.components[name] == pytest.approx(plain.components[name], rel=1e-4), name
    raw_spec = DistillationSpec(attention=0, normalize=False)
    raw = distillation_loss(s_out, t_out, batch, **_maps(), spec=raw_spec)
    assert raw.components["enc_hidden"] > plain.components["enc_hidden"]
