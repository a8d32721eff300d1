"""Module surgery: put fake-quantized layers into a BART/mBART model and take them out again.

What is quantized (the paper, dqbart-method.md section 2.5): every Linear inside the encoder and
decoder layers (q, k, v, out, fc1, fc2) at W bits with A-bit inputs; the shared token embedding at
E bits per row; the attention activations (scaled Q, K, V, probabilities) at A bits. Positional
embeddings, LayerNorms, biases and final_logits_bias stay full precision.

The tied LM head keeps no copy of its own: it reads the embedding through the embedding's
quantizer (no input quantization). The paper runs the head on the latent fp32 embedding, but
then the packed artifact, which stores the embedding once at E bits, could not reproduce the
trained student; here training sees what the artifact serves.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn
from transformers import PreTrainedModel

from compression.modules import (
    QUANTIZED_ATTENTION,
    AttentionQuantizers,
    QuantEmbedding,
    QuantLinear,
    WeightQuantizer,
)
from compression.quantizers import FULL_PRECISION_BITS
from compression.recipe import QuantizationSpec

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
_M = TypeVar("_M", bound=nn.Module)


def _everywhere(module: nn.Module, name: str) -> bool:
    return True


def swap_modules(
    model: nn.Module,
    kind: type[_M],
    handler: Callable[[_M, str], nn.Module],
    filter_fn: Callable[[_M, str], bool] = _everywhere,
) -> nn.Module:
    """Replace every `kind` module where `filter_fn(module, name)` holds with `handler(module, name)`."""
    chosen = [
        (name, module)
        for name, module in model.named_modules(remove_duplicate=False)
        if name and isinstance(module, kind) and filter_fn(module, name)
    ]
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, handler(module, name))
    return model


def _is_layer_linear(module: nn.Module, name: str) -> bool:
    return type(module) is nn.Linear and ".layers." in name


def _is_attention(module: nn.Module) -> bool:
    return all(hasattr(module, p) for p in _PROJECTIONS) and hasattr(module, "config")


def _token_embedding_names(model: PreTrainedModel) -> list[str]:
    """The shared embedding and its tied aliases (encoder/decoder embed_tokens), not positions."""
    weight = model.get_input_embeddings().weight
    return [
        name
        for name, module in model.named_modules(remove_duplicate=False)
        if isinstance(module, nn.Embedding) and module.weight is weight
    ]


def quantize_model(model: PreTrainedModel, spec: QuantizationSpec) -> PreTrainedModel:
    """Swap in fake-quantized layers in place (and return the model); bits 32 leave a point exact."""
    if any(isinstance(m, (QuantLinear, QuantEmbedding)) for m in model.modules()):
        raise ValueError("model is already quantized; call dequantize_model first")
    # Attention masks must be built for eager attention, which the quantized attention extends.
    model.set_attn_implementation("eager")
    clip, learned = spec.clip_val, spec.learned_scale
    swap_modules(
        model,
        nn.Linear,
        lambda m, _: QuantLinear.from_linear(
            m, spec.weight_bits, spec.activation_bits, spec.granularity, clip, learned,
            group_size=spec.group_size, ternary=spec.two_bit_scheme == "ternary",
        ),
        _is_layer_linear,
    )
    _quantize_embeddings(model, spec)
    for module in model.modules():
        if _is_attention(module):
            device = next(module.get_submodule("q_proj").parameters()).device
            module.attention_quantizers = AttentionQuantizers(spec.activation_bits, clip, learned, device)
            # Its own config (a plain attribute, not a submodule), so the rest of the model keeps eager.
            config = copy.copy(module.__dict__["config"])
            config._attn_implementation = QUANTIZED_ATTENTION
            module.__dict__["config"] = config
    return model


def _quantize_embeddings(model: PreTrainedModel, spec: QuantizationSpec) -> None:
    names = _token_embedding_names(model)
    first = model.get_input_embeddings()
    assert isinstance(first, nn.Embedding), f"the input embedding is a {type(first).__name__}"
    quantizer = _row_quantizer(first.weight, spec)
    swap_modules(
        model,
        nn.Embedding,
        lambda m, _: QuantEmbedding.from_embedding(
            m, spec.embedding_bits, spec.clip_val, spec.learned_scale, weight_quantizer=quantizer
        ),
        lambda _, name: name in names,
    )
    head = model.get_output_embeddings()
    if head is None or type(head) is not nn.Linear:
        return
    if head.weight is not first.weight:  # an untied head is a matrix of its own, also at E bits per row
        quantizer = _row_quantizer(head.weight, spec)
    if quantizer is not None:
        model.set_output_embeddings(
            QuantLinear.from_linear(
                head, FULL_PRECISION_BITS, FULL_PRECISION_BITS, weight_quantizer=quantizer
            )
        )


def _row_quantizer(weight: torch.Tensor, spec: QuantizationSpec) -> WeightQuantizer | None:
    if spec.embedding_bits == FULL_PRECISION_BITS:
        return None
    return WeightQuantizer(weight, spec.embedding_bits, "per_row", spec.clip_val, spec.learned_scale,
                           ternary=spec.two_bit_scheme == "ternary")


def dequantize_model(model: PreTrainedModel) -> PreTrainedModel:
    """Undo quantize_model in place: plain layer types, the same tensors, the same state_dict keys."""
    swap_modules(model, QuantLinear, lambda m, _: m.to_linear())
    swap_modules(model, QuantEmbedding, lambda m, _: m.to_embedding())
    for module in model.modules():
        if hasattr(module, "attention_quantizers"):
            del module.attention_quantizers
            module.__dict__["config"] = model.config
    return model


def quantized_weights(model: nn.Module) -> dict[str, WeightQuantizer]:
    """Weight name (state_dict key) -> its quantizer, each tensor once (tied aliases skipped)."""
    found: dict[str, WeightQuantizer] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        quantizer = getattr(module, "weight_quantizer", None)
        if quantizer is not None and id(module.weight) not in seen:
            seen.add(id(module.weight))
            found[f"{name}.weight"] = quantizer
    return found
