"""The DQ-BART loss: task cross-entropy plus distillation from a frozen teacher
(method doc §4): MSE on logits, on mapped hidden states (the embedding output included)
and on mapped attention probabilities (encoder self, decoder self, cross).

With `mask_padding` (our default) every distillation term is a mean over real tokens only.
Without it the terms are the paper's plain `nn.MSELoss()` means over all positions, padding
included, and the released code's `L_enc_last` quirk is reproduced: a sum over the batch of
per-example MSEs of the final encoder output, i.e. about B times a term that already appears in
the encoder hidden-state sum. We keep it only in that mode, where it is needed to match the paper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import Seq2SeqLMOutput

from compression.data import LABEL_PAD
from compression.recipe import DistillationSpec

HIDDEN_TERMS = ("enc_attn", "dec_attn", "cross_attn", "enc_hidden", "dec_hidden", "enc_last")


@dataclass
class LossResult:
    total: torch.Tensor  # what backward() runs on
    components: dict[str, float]  # each term unweighted, plus "total", for logging


def task_loss(student_out: Seq2SeqLMOutput) -> LossResult:
    """Cross-entropy only: teacher fine-tuning, or a run whose distillation weights are all 0."""
    loss = student_out.loss
    return LossResult(loss, {"task": loss.item(), "total": loss.item()})


def distillation_loss(
    student_out: Seq2SeqLMOutput,
    teacher_out: Seq2SeqLMOutput,
    batch: Mapping[str, torch.Tensor],
    *,
    encoder_map: Sequence[int],
    decoder_map: Sequence[int],
    spec: DistillationSpec,
) -> LossResult:
    """w_task*CE + w_logits*MSE(logits) + w_hidden*(attention and hidden-state MSE sums).

    `encoder_map[i]` / `decoder_map[i]` is the teacher layer that student layer i learns from.
    Both outputs need `output_attentions=True, output_hidden_states=True` on the same batch.
    """
    enc_mask = batch["attention_mask"].float() if spec.mask_padding else None
    dec_mask = (batch["labels"] != LABEL_PAD).float() if spec.mask_padding else None
    terms = {
        "logits": _mse(student_out.logits, teacher_out.logits, _token_mask(dec_mask)),
        "enc_attn": _attention_sum(
            student_out.encoder_attentions, teacher_out.encoder_attentions, encoder_map, enc_mask, enc_mask
        ),
        "dec_attn": _attention_sum(
            student_out.decoder_attentions, teacher_out.decoder_attentions, decoder_map, dec_mask, dec_mask
        ),
        "cross_attn": _attention_sum(
            student_out.cross_attentions, teacher_out.cross_attentions, decoder_map, dec_mask, enc_mask
        ),
        "enc_hidden": _hidden_sum(
            student_out.encoder_hidden_states, teacher_out.encoder_hidden_states, encoder_map, enc_mask
        ),
        "dec_hidden": _hidden_sum(
            student_out.decoder_hidden_states, teacher_out.decoder_hidden_states, decoder_map, dec_mask
        ),
    }
    if not spec.mask_padding:
        terms["enc_last"] = _per_example_sum(
            student_out.encoder_last_hidden_state, teacher_out.encoder_last_hidden_state
        )
    task = student_out.loss
    hidden = sum((terms[name] for name in HIDDEN_TERMS if name in terms), start=torch.zeros_like(task))
    total = spec.task * task + spec.logits * terms["logits"] + spec.hidden * hidden
    components = {"task": task.item(), **{name: value.item() for name, value in terms.items()}}
    components["total"] = total.item()
    return LossResult(total, components)


def _mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over the positions where `mask` (broadcast to the inputs) is 1."""
    student, teacher = student.float(), teacher.float()
    if mask is None:
        return F.mse_loss(student, teacher)
    weights = mask.expand_as(student)
    return ((student - teacher) ** 2 * weights).sum() / weights.sum().clamp(min=1.0)


def _token_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else mask[:, :, None]  # [B, T] -> [B, T, 1] for [B, T, D]


def _attention_sum(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    layer_map: Sequence[int],
    query_mask: torch.Tensor | None,
    key_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Sum over student layers of MSE([B, H, Tq, Tk] probabilities) against the mapped teacher layer."""
    mask = None
    if query_mask is not None and key_mask is not None:
        mask = query_mask[:, None, :, None] * key_mask[:, None, None, :]
    return torch.stack([_mse(student[i], teacher[t], mask) for i, t in enumerate(layer_map)]).sum()


def _hidden_sum(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    layer_map: Sequence[int],
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """Entry 0 is the embedding output (teacher entry 0); entry i is layer i-1's output (teacher m[i-1]+1)."""
    pairs = [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(layer_map)]
    return torch.stack([_mse(student[s], teacher[t], _token_mask(mask)) for s, t in pairs]).sum()


def _per_example_sum(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The released code's `L_enc_last`: zip over the batch, one MSE per example, summed."""
    pairs = zip(student, teacher, strict=True)
    return torch.stack([F.mse_loss(s.float(), t.float()) for s, t in pairs]).sum()
