"""The DQ-BART loss: task cross-entropy plus distillation from a frozen teacher
(method doc §4): MSE on logits, on mapped hidden states (the embedding output included)
and on mapped attention probabilities (encoder self, decoder self, cross).

With `mask_padding` (our default) every distillation term is a mean over real tokens only.
Without it the terms are the paper's plain `nn.MSELoss()` means over all positions, padding
included, and the released code's `L_enc_last` quirk is reproduced: a sum over the batch of
per-example MSEs of the final encoder output, i.e. about B times a term that already appears in
the encoder hidden-state sum. We keep it only in that mode, where it is needed to match the paper.

Beyond the paper (recipe options, measured in docs/results/quality-v4): KL divergence with a
temperature in place of the logits MSE, a separate weight for the attention terms, and
normalised terms (each MSE relative to the teacher tensor's mean square, layers averaged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import Seq2SeqLMOutput

from compression.data import LABEL_PAD
from compression.recipe import DistillationSpec

ATTENTION_TERMS = ("enc_attn", "dec_attn", "cross_attn")
_T = TypeVar("_T")


@dataclass
class LossResult:
    total: torch.Tensor  # what backward() runs on
    components: dict[str, float]  # each term unweighted, plus "total", for logging


def task_loss(student_out: Seq2SeqLMOutput) -> LossResult:
    """Cross-entropy only: teacher fine-tuning, or a run whose distillation weights are all 0."""
    loss = _given(student_out.loss, "loss")
    return LossResult(loss, {"task": loss.item(), "total": loss.item()})


def _given(value: _T | None, field: str) -> _T:
    """An output field a loss term needs; None when the forward pass was not asked for it."""
    if value is None:
        raise ValueError(f"the model outputs hold no {field}: the forward pass must be asked for it")
    return value


def distillation_loss(
    student_out: Seq2SeqLMOutput,
    teacher_out: Seq2SeqLMOutput,
    batch: Mapping[str, torch.Tensor],
    *,
    encoder_map: Sequence[int],
    decoder_map: Sequence[int],
    spec: DistillationSpec,
) -> LossResult:
    """w_task*CE + w_logits*L_logits + w_attention*(attention terms) + w_hidden*(hidden-state terms).

    `encoder_map[i]` / `decoder_map[i]` is the teacher layer that student layer i learns from.
    Only terms of non-zero weight are computed; the attention terms need both outputs made with
    `output_attentions=True`, the hidden-state terms with `output_hidden_states=True`.
    """
    enc_mask = batch["attention_mask"].float() if spec.mask_padding else None
    dec_mask = (batch["labels"] != LABEL_PAD).float() if spec.mask_padding else None
    terms: dict[str, torch.Tensor] = {}
    if spec.logits > 0:
        logits = _given(student_out.logits, "logits"), _given(teacher_out.logits, "logits")
        terms["logits"] = _logits_term(*logits, dec_mask, spec)
    if spec.attention_weight > 0:
        terms.update(_attention_terms(student_out, teacher_out, encoder_map, decoder_map,
                                      enc_mask, dec_mask, spec.normalize))
    if spec.hidden > 0:
        terms.update(_hidden_terms(student_out, teacher_out, encoder_map, decoder_map,
                                   enc_mask, dec_mask, spec.normalize))
    task = _given(student_out.loss, "loss")
    total = spec.task * task
    for name, value in terms.items():
        total = total + _weight(name, spec) * value
    components = {"task": task.item(), **{name: value.item() for name, value in terms.items()}}
    components["total"] = total.item()
    return LossResult(total, components)


def _weight(term: str, spec: DistillationSpec) -> float:
    if term == "logits":
        return spec.logits
    return spec.attention_weight if term in ATTENTION_TERMS else spec.hidden


def _logits_term(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None,
                 spec: DistillationSpec) -> torch.Tensor:
    if spec.logits_loss == "kl":
        return kl_divergence(student, teacher, mask, spec.temperature)
    return _mse(student, teacher, _token_mask(mask), spec.normalize)


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None,
                  temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over the vocabulary and averaged
    over the tokens where `mask` [B, T] is 1 (all tokens without one). The T^2 keeps the
    gradient's size independent of T (Hinton et al. 2015)."""
    log_s = F.log_softmax(student.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=-1)
    per_token = (log_t.exp() * (log_t - log_s)).sum(dim=-1)
    if mask is None:
        return per_token.mean() * temperature**2
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0) * temperature**2


def _attention_terms(
    student: Seq2SeqLMOutput, teacher: Seq2SeqLMOutput, encoder_map: Sequence[int],
    decoder_map: Sequence[int], enc_mask: torch.Tensor | None, dec_mask: torch.Tensor | None,
    normalize: bool,
) -> dict[str, torch.Tensor]:
    """MSE of the mapped post-softmax probabilities: encoder self, decoder self, cross."""
    return {
        "enc_attn": _attention_sum(student.encoder_attentions, teacher.encoder_attentions, encoder_map,
                                   enc_mask, enc_mask, normalize),
        "dec_attn": _attention_sum(student.decoder_attentions, teacher.decoder_attentions, decoder_map,
                                   dec_mask, dec_mask, normalize),
        "cross_attn": _attention_sum(student.cross_attentions, teacher.cross_attentions, decoder_map,
                                     dec_mask, enc_mask, normalize),
    }


def _hidden_terms(
    student: Seq2SeqLMOutput, teacher: Seq2SeqLMOutput, encoder_map: Sequence[int],
    decoder_map: Sequence[int], enc_mask: torch.Tensor | None, dec_mask: torch.Tensor | None,
    normalize: bool,
) -> dict[str, torch.Tensor]:
    """MSE of the mapped hidden states; without the padding mask also the paper's `L_enc_last`."""
    terms = {
        "enc_hidden": _hidden_sum(student.encoder_hidden_states, teacher.encoder_hidden_states, encoder_map,
                                  enc_mask, normalize),
        "dec_hidden": _hidden_sum(student.decoder_hidden_states, teacher.decoder_hidden_states, decoder_map,
                                  dec_mask, normalize),
    }
    if enc_mask is None:
        last = [_given(out.encoder_last_hidden_state, "the last encoder state") for out in (student, teacher)]
        terms["enc_last"] = _per_example_sum(*last)
    return terms


def _mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None,
         relative: bool = False) -> torch.Tensor:
    """Mean squared error over the positions where `mask` (broadcast to the inputs) is 1;
    `relative` divides it by the teacher's mean square over the same positions."""
    student, teacher = student.float(), teacher.float()
    weights = torch.ones_like(student) if mask is None else mask.expand_as(student)
    count = weights.sum().clamp(min=1.0)
    error = ((student - teacher) ** 2 * weights).sum() / count
    if not relative:
        return error
    return error / ((teacher**2 * weights).sum() / count).clamp(min=1e-12)


def _token_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else mask[:, :, None]  # [B, T] -> [B, T, 1] for [B, T, D]


def _attention_sum(
    student: Sequence[torch.Tensor] | None,
    teacher: Sequence[torch.Tensor] | None,
    layer_map: Sequence[int],
    query_mask: torch.Tensor | None,
    key_mask: torch.Tensor | None,
    normalize: bool = False,
) -> torch.Tensor:
    """Sum (mean when normalized) over student layers of MSE([B, H, Tq, Tk] probabilities)
    against the mapped teacher layer."""
    mask = None
    if query_mask is not None and key_mask is not None:
        mask = query_mask[:, None, :, None] * key_mask[:, None, None, :]
    student, teacher = _given(student, "attentions"), _given(teacher, "attentions")
    terms = torch.stack([_mse(student[i], teacher[t], mask, normalize) for i, t in enumerate(layer_map)])
    return terms.mean() if normalize else terms.sum()


def _hidden_sum(
    student: Sequence[torch.Tensor] | None,
    teacher: Sequence[torch.Tensor] | None,
    layer_map: Sequence[int],
    mask: torch.Tensor | None,
    normalize: bool = False,
) -> torch.Tensor:
    """Entry 0 is the embedding output (teacher entry 0); entry i is layer i-1's output (teacher m[i-1]+1).
    Summed over the entries, or averaged when normalized."""
    pairs = [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(layer_map)]
    student, teacher = _given(student, "hidden states"), _given(teacher, "hidden states")
    terms = torch.stack([_mse(student[s], teacher[t], _token_mask(mask), normalize) for s, t in pairs])
    return terms.mean() if normalize else terms.sum()


def _per_example_sum(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The released code's `L_enc_last`: zip over the batch, one MSE per example, summed."""
    pairs = zip(student, teacher, strict=True)
    return torch.stack([F.mse_loss(s.float(), t.float()) for s, t in pairs]).sum()
