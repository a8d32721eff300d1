"""Integer-code attention: the quantized attention's Q.K^T and P.V on the codes, for inference."""

from __future__ import annotations

import threading
import weakref

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig
from transformers.modeling_utils import AttentionInterface

from compression.modules import (
    QUANTIZED_ATTENTION,
    ActivationQuantizer,
    QuantizedPoints,
    attention_quantizers,
    quantized_eager_attention,
)
from compression.quantizers import (
    lsq_step,
)
from compression.runtime.codes import activation_codes, symmetric_codes_at, symmetric_scale_and_step
from compression.runtime.kernels import kernel_is_usable
from compression.runtime.scratch import SCRATCH


def _cached_codes(module: nn.Module, name: str, quantizer: ActivationQuantizer,
                  x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Codes of a key or value tensor; a tensor that comes back (the cross-attention's, at every
    decoding step) is quantized once. An entry lives as long as its tensor; each inference
    thread has its own, as generate calls on several threads share the module."""
    cache: dict[tuple[str, int], tuple[weakref.ref[torch.Tensor], torch.Tensor, float]] = (
        module.__dict__.setdefault("_code_cache", {}))
    slot = (name, threading.get_ident())
    entry = cache.get(slot)
    if entry is not None and entry[0]() is x:
        return entry[1], entry[2]
    codes, step = activation_codes(quantizer, x)

    def forget(ref: weakref.ref[torch.Tensor]) -> None:
        if slot in cache and cache[slot][0] is ref:
            del cache[slot]

    cache[slot] = (weakref.ref(x, forget), codes, step)
    return codes, step


# From this many queries on (the encoder, a prompt), Q.K^T and P.V run on int8 codes, one head
# at a time; a decoding step (one query) is cheaper as one batched fp32 product.
INT8_ATTENTION_MIN_QUERIES = 16


def integer_code_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`quantized_eager_attention` at inference on CPU: the same codes, in fewer passes.

    Q.K^T and P.V multiply the integer codes and scale each product once by its two steps: the
    reference's products up to float rounding (sums of code products are exact in int32, and in
    fp32 up to 2^24 / 127^2 = 1040 terms). Like SDPA, it returns no attention probabilities.
    Training, fp16 and unquantized attention take the reference path.
    """
    quantizers = attention_quantizers(module).points()
    if quantizers is None or module.training or query.dtype != torch.float32 or _unset(quantizers):
        return quantized_eager_attention(module, query, key, value, attention_mask, scaling, dropout,
                                         **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    int8 = quantizers.probs.bits > 2 and kernel_is_usable("int_mm")
    if query.shape[2] >= INT8_ATTENTION_MIN_QUERIES and int8:
        return _int8_attention(quantizers, query, key, value, attention_mask, scaling), None
    q_codes, q_step = activation_codes(quantizers.query, query * scaling, owned=True)
    k_codes, k_step = _cached_codes(module, "key", quantizers.key, key)
    v_codes, v_step = _cached_codes(module, "value", quantizers.value, value)
    scores = torch.matmul(q_codes, k_codes.transpose(2, 3)).mul_(q_step * k_step)
    if attention_mask is not None:
        scores.add_(attention_mask)
    p_codes, p_step = activation_codes(quantizers.probs, F.softmax(scores, dim=-1), owned=True)
    output = torch.matmul(p_codes, v_codes).mul_(p_step * v_step)
    return output.transpose(1, 2).contiguous(), None


def _int8_attention(quantizers: QuantizedPoints, query: torch.Tensor, key: torch.Tensor,
                    value: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float) -> torch.Tensor:
    """Integer-code attention on int8 kernels (`torch._int_mm`, exact int32 sums), one batch row at
    a time so that its scores stay in cache; the probabilities' per-tensor range is gathered on
    the way, and they are rounded in a second pass over the rows."""
    batch, heads, queries, head_dim = query.shape
    keys = key.shape[2]
    q, q_step = _int8(activation_codes(quantizers.query, query * scaling, owned=True))
    k, k_step = _int8(activation_codes(quantizers.key, key))
    v, v_step = _int8(activation_codes(quantizers.value, value))
    masks = None if attention_mask is None else attention_mask.expand(batch, *attention_mask.shape[1:])
    probs = SCRATCH.take("attention_probs", (batch, heads, queries, keys))
    products = torch.empty((heads, queries, keys), dtype=torch.int32)
    scores = query.new_empty((heads, queries, keys))
    peak = query.new_zeros(())
    for row in range(batch):
        for head in range(heads):
            torch._int_mm(q[row, head], k[row, head].t(), out=products[head])
        scores.copy_(products).mul_(q_step * k_step)
        if masks is not None:
            scores.add_(masks[row])
        torch._softmax(scores, -1, False, out=probs[row])
        low, high = torch.aminmax(probs[row])
        peak = torch.maximum(peak, torch.maximum(-low, high))
    probs_quantizer = quantizers.probs
    if probs_quantizer.step is None:  # the scale the reference takes from the whole tensor
        scale, p_step = symmetric_scale_and_step(float(peak), probs_quantizer.bits, probs_quantizer.clip_val)
    else:
        p_step = float(lsq_step(probs_quantizer.step.detach()))
    output = query.new_empty((batch, queries, heads, head_dim))
    products = torch.empty((heads, queries, head_dim), dtype=torch.int32)
    for row in range(batch):
        if probs_quantizer.step is None:
            p = symmetric_codes_at(probs_quantizer, probs[row], scale, probs[row]).to(torch.int8)
        else:
            p = activation_codes(probs_quantizer, probs[row], owned=True)[0].to(torch.int8)
        for head in range(heads):
            torch._int_mm(p[head], v[row, head], out=products[head])
        output[row].copy_(products.transpose(0, 1)).mul_(p_step * v_step)
    return output


def _unset(quantizers: QuantizedPoints) -> bool:
    """A learned step not yet set from data: the reference sets it on its first call."""
    return any(q.step is not None and not bool(q.initialized) for q in quantizers)


def _int8(codes: tuple[torch.Tensor, float]) -> tuple[torch.Tensor, float]:
    return codes[0].to(torch.int8), codes[1]


INTEGER_CODE_ATTENTION = "dqbart_integer_codes"


AttentionInterface.register(INTEGER_CODE_ATTENTION, integer_code_attention)


def to_integer_code_attention(model: nn.Module) -> None:
    """Point every quantized attention (each has its own config, see swap.py) at `integer_code_attention`."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if hasattr(module, "attention_quantizers") and isinstance(config, PreTrainedConfig) \
                and config._attn_implementation == QUANTIZED_ATTENTION:
            config._attn_implementation = INTEGER_CODE_ATTENTION
