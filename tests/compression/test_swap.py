"""quantize_model / dequantize_model on tiny BART and mBART models."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close
from transformers import BartForConditionalGeneration, MBartForConditionalGeneration, PreTrainedModel

from compression.modules import QuantEmbedding, QuantLinear
from compression.recipe import QuantizationSpec
from compression.swap import dequantize_model, quantize_model, quantized_weights
from tests.tiny import tiny_bart_config

SEED = 123
SPECS = [
    QuantizationSpec(weight_bits=8, embedding_bits=8, activation_bits=8),
    QuantizationSpec(weight_bits=2, embedding_bits=2, activation_bits=8, granularity="per_row"),
    QuantizationSpec(weight_bits=4, embedding_bits=8, activation_bits=8, learned_scale=True),
]
FULL_PRECISION = QuantizationSpec(weight_bits=32, embedding_bits=32, activation_bits=32)


def _model(mbart: bool = False) -> PreTrainedModel:
    torch.manual_seed(SEED)
    config = tiny_bart_config(120, 2, 2, mbart=mbart)
    config._attn_implementation = "eager"
    cls = MBartForConditionalGeneration if mbart else BartForConditionalGeneration
    return cls(config).eval()


def _batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(SEED)
    ids = torch.randint(3, 120, (2, 9))
    ids[1, 6:] = 1
    return {"input_ids": ids, "attention_mask": (ids != 1).long(), "labels": torch.randint(3, 120, (2, 5))}


def _outputs(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**_batch(), output_attentions=True, output_hidden_states=True)
    return {
        "logits": out.logits,
        "encoder_attentions": torch.stack(out.encoder_attentions),
        "cross_attentions": torch.stack(out.cross_attentions),
        "decoder_hidden_states": torch.stack(out.decoder_hidden_states),
    }


@pytest.mark.parametrize("mbart", [False, True])
def test_all_bits_32_leave_outputs_identical(mbart: bool) -> None:
    model = _model(mbart)
    before = _outputs(model)
    after = _outputs(quantize_model(model, FULL_PRECISION))
    for name, value in before.items():
        assert_close(after[name], value, atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("spec", SPECS, ids=["8-8-8", "2-2-8-row", "4-8-8-lsq"])
def test_dequantize_restores_types_values_and_keys(spec: QuantizationSpec) -> None:
    model = _model()
    types = {name: type(m) for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    dequantize_model(quantize_model(model, spec))
    assert {name: type(m) for name, m in model.named_modules()} == types
    assert list(model.state_dict()) == list(state)
    for key, value in model.state_dict().items():
        assert_close(value, state[key], atol=0, rtol=0, msg=key)
    assert model.lm_head.weight is model.model.shared.weight


def test_quantized_model_swaps_exactly_the_papers_layers() -> None:
    model = quantize_model(_model(), SPECS[0])
    linears = {n for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    assert linears == {n for n, m in model.named_modules() if n.endswith(("_proj", "fc1", "fc2"))} | {
        "lm_head"
    }
    assert isinstance(model.model.shared, QuantEmbedding)
    assert type(model.model.encoder.embed_positions) is not QuantEmbedding
    assert all(type(m) is nn.LayerNorm for n, m in model.named_modules() if "norm" in n)


def test_tied_head_reads_the_embedding_through_its_quantizer() -> None:
    model = quantize_model(_model(), SPECS[1])
    shared = model.model.shared
    assert model.lm_head.weight is shared.weight
    assert model.lm_head.weight_quantizer is shared.weight_quantizer
    assert model.model.encoder.embed_tokens.weight_quantizer is shared.weight_quantizer
    assert model.lm_head.activation_quantizer is None


def test_each_weight_is_listed_once_for_packing() -> None:
    model = quantize_model(_model(), SPECS[0])
    names = set(quantized_weights(model))
    assert "model.shared.weight" in names and "lm_head.weight" not in names
    assert "model.encoder.embed_tokens.weight" not in names
    assert len(names) == 1 + 2 * 6 + 2 * 10


@pytest.mark.parametrize("spec", SPECS, ids=["8-8-8", "2-2-8-row", "4-8-8-lsq"])
def test_quantization_changes_outputs_and_still_returns_attentions(spec: QuantizationSpec) -> None:
    model = _model()
    before = _outputs(model)
    after = _outputs(quantize_model(model, spec))
    assert not torch.equal(after["logits"], before["logits"])
    assert_close(after["encoder_attentions"].sum(-1), torch.ones_like(after["encoder_attentions"].sum(-1)))


@pytest.mark.parametrize("spec", SPECS, ids=["8-8-8", "2-2-8-row", "4-8-8-lsq"])
def test_training_step_reaches_latent_weights_and_steps(spec: QuantizationSpec) -> None:
    model = quantize_model(_model(), spec).train()
    model(**_batch()).loss.backward()
    assert model.model.encoder.layers[0].fc1.weight.grad.abs().sum() > 0
    assert model.model.shared.weight.grad.abs().sum() > 0
    steps = [p for n, p in model.named_parameters() if n.endswith(".step")]
    assert bool(steps) == spec.learned_scale
    assert all(p.grad is not None for p in steps)


def test_quantized_model_generates_with_the_cache() -> None:
    model = quantize_model(_model(), SPECS[1])
    ids = _batch()["input_ids"]
    out = model.generate(input_ids=ids, max_new_tokens=6, min_new_tokens=6, num_beams=1, do_sample=False)
    assert out.shape == (2, 7)


def test_quantizing_twice_is_refused() -> None:
    model = quantize_model(_model(), SPECS[0])
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(model, SPECS[0])
