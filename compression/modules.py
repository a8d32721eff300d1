"""Fake-quantized layers: they hold quantizer settings and parameters and call quantizers.py.

`QuantLinear` and `QuantEmbedding` subclass the torch layers, share the source's weight tensor
(`from_linear` / `to_linear`, `from_embedding` / `to_embedding`), and keep its state_dict keys;
only a learned step adds `*.weight_quantizer.step`. Attention activations (scaled Q, K, V and the
probabilities before P.V) are quantized by `quantized_eager_attention`, an eager attention
function registered with transformers' AttentionInterface that finds its quantizers on the
attention module.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_utils import AttentionInterface

from compression.quantizers import (
    FULL_PRECISION_BITS,
    Granularity,
    QuantizedTensor,
    Scheme,
    code_step,
    codes_at_scale,
    dequantize,
    fake_quantize,
    fake_quantize_activation,
    lsq_initial_step,
    quantize_tensor,
    quantize_to_codes,
)

QUANTIZED_ATTENTION = "dqbart_eager"


class WeightQuantizer(nn.Module):
    """Fake quantization of one weight matrix (fixed clip, or a learned step initialised from it).

    Per group: each row's columns in groups of `group_size`, one scale per group (per row on a
    [rows, groups, size] view). A matrix whose width is not a whole number of groups falls back
    to one scale per row.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bits: int,
        granularity: Granularity,
        clip_val: float,
        learned_scale: bool,
        group_size: int | None = None,
        ternary: bool = True,
    ) -> None:
        super().__init__()
        if granularity == "per_group" and (group_size is None or weight.shape[-1] % group_size):
            granularity = "per_row"
        self.bits = bits
        self.ternary = ternary  # 2 bits: TWN ternary (the paper's), else the symmetric grid
        self.granularity: Granularity = granularity
        self.group_size = group_size if granularity == "per_group" else None
        self.clip_val = clip_val
        self.step: nn.Parameter | None = None
        if learned_scale:
            initial = lsq_initial_step(self._grouped(weight.detach()), bits, clip_val, self._per_row, ternary)
            self.step = nn.Parameter(initial if self._per_row else initial.reshape(()))
        # A loaded artifact fixes each grid to its stored scale (see `freeze`).
        self.frozen_scheme: Scheme | None = None
        self.register_buffer("frozen_scale", None, persistent=False)

    @property
    def _per_row(self) -> bool:
        return self.granularity != "per_tensor"

    @property
    def _statistics(self) -> Granularity:
        """The granularity of the statistics on the (grouped) view."""
        return "per_row" if self.group_size is not None else self.granularity

    def _grouped(self, weight: torch.Tensor) -> torch.Tensor:
        """[rows, columns] -> [rows, groups, group_size] per group; as it is otherwise."""
        if self.group_size is None:
            return weight
        return weight.reshape(*weight.shape[:-1], -1, self.group_size)

    def freeze(self, scale: torch.Tensor, scheme: Scheme) -> None:
        """Round onto this stored grid from now on: stored values then come back bit-exact (no gradient)."""
        self.frozen_scale = scale.detach()
        self.frozen_scheme = scheme

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.frozen_scheme is not None:
            return self.quantize(weight).values().to(weight.dtype)
        values = fake_quantize(self._grouped(weight), self.bits, self._statistics, self.clip_val, self.step,
                               self.ternary)
        return values.reshape(weight.shape)

    def codes(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float codes and the value of one code (see `quantize_to_codes`), as `forward` rounds."""
        if self.group_size is not None:
            raise ValueError("a per-group weight has no one code step per output; multiply its values")
        if self.frozen_scheme is not None:
            codes = codes_at_scale(weight.detach(), self.frozen_scale, self.frozen_scheme, self.bits)
            return codes, code_step(self.frozen_scale, self.frozen_scheme)
        return quantize_to_codes(weight, self.bits, self.granularity, self.clip_val, self.step, self.ternary)

    def quantize_rows(self, rows: torch.Tensor, ids: torch.Tensor, padding_idx: int | None) -> torch.Tensor:
        """Per-row quantization of looked-up rows: the same values as quantizing the whole matrix."""
        if self.granularity != "per_row":
            raise ValueError(f"row lookup needs granularity 'per_row', not {self.granularity!r}")
        if self.frozen_scheme is not None:
            scale = F.embedding(ids, self.frozen_scale)
            codes = codes_at_scale(rows.detach(), scale, self.frozen_scheme, self.bits)
            return dequantize(codes, scale, self.frozen_scheme).to(rows.dtype)
        step = None if self.step is None else F.embedding(ids, self.step, padding_idx)
        return fake_quantize(rows, self.bits, "per_row", self.clip_val, step, self.ternary)

    def quantize(self, weight: torch.Tensor) -> QuantizedTensor:
        """Integer codes and scale, exactly as the forward pass rounds them (a per-group scale
        as [rows, groups])."""
        if self.frozen_scheme is not None:
            codes = codes_at_scale(weight.detach(), self.frozen_scale, self.frozen_scheme, self.bits)
            return QuantizedTensor(
                codes.to(torch.int8), self.frozen_scale, self.frozen_scheme, self.bits, self.granularity
            )
        view = self._grouped(weight)
        quantized = quantize_tensor(view, self.bits, self._statistics, self.clip_val, self.step, self.ternary)
        if self.group_size is None:
            return quantized
        codes, scale = quantized.codes.reshape(weight.shape), quantized.scale.reshape(view.shape[:-1])
        return QuantizedTensor(codes, scale, quantized.scheme, self.bits, "per_group")

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.group_size else ""
        return f"bits={self.bits}, granularity={self.granularity}{group}, learned={self.step is not None}"


class ActivationQuantizer(nn.Module):
    """Dynamic per-tensor fake quantization of an activation; a learned step starts from the first batch."""

    initialized: torch.Tensor  # a buffer, with a learned step only

    def __init__(
        self, bits: int, clip_val: float, learned_scale: bool, device: torch.device | None = None
    ) -> None:
        super().__init__()
        self.bits = bits
        self.clip_val = clip_val
        self.step: nn.Parameter | None = None
        if learned_scale:
            self.step = nn.Parameter(torch.ones((), device=device))
            self.register_buffer("initialized", torch.zeros((), dtype=torch.bool, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._initialize(x)
        return fake_quantize_activation(x, self.bits, self.clip_val, self.step)

    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float codes and the value of one code (see `quantize_to_codes`), as `forward` rounds."""
        self._initialize(x)
        return quantize_to_codes(x, self.bits, "per_tensor", self.clip_val, self.step)

    def _initialize(self, x: torch.Tensor) -> None:
        if self.step is not None and not bool(self.initialized):
            with torch.no_grad():
                self.step.copy_(lsq_initial_step(x, self.bits, self.clip_val, per_row=False).reshape(()))
                self.initialized.fill_(True)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, clip_val={self.clip_val}, learned={self.step is not None}"


def make_activation_quantizer(
    bits: int, clip_val: float, learned_scale: bool, device: torch.device | None = None
) -> ActivationQuantizer | None:
    return None if bits == FULL_PRECISION_BITS else ActivationQuantizer(bits, clip_val, learned_scale, device)


def multiplies_codes(x: torch.Tensor) -> bool:
    """Products of codes are formed for fp32 and bf16 inputs; fp16 (max 65504) would overflow."""
    return x.dtype != torch.float16


class QuantLinear(nn.Linear):
    """nn.Linear with fake-quantized input activation and weight (bias stays full precision).

    With both quantized, it multiplies the integer codes and scales the product once: the fake-
    quantized product up to float rounding, and exact, so integer kernels reproduce it bit for bit.
    """

    weight_quantizer: WeightQuantizer | None
    activation_quantizer: ActivationQuantizer | None

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        weight_bits: int,
        act_bits: int,
        granularity: Granularity = "per_tensor",
        clip_val: float = 2.5,
        learned_scale: bool = False,
        weight_quantizer: WeightQuantizer | None = None,
        group_size: int | None = None,
        ternary: bool = True,
    ) -> QuantLinear:
        """Wrap `linear`, sharing its weight and bias; `weight_quantizer` shares one (the tied head's)."""
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight = linear.weight
        new.bias = linear.bias
        if weight_quantizer is None and weight_bits != FULL_PRECISION_BITS:
            weight_quantizer = WeightQuantizer(
                linear.weight, weight_bits, granularity, clip_val, learned_scale, group_size, ternary
            )
        new.weight_quantizer = weight_quantizer
        new.activation_quantizer = make_activation_quantizer(
            act_bits, clip_val, learned_scale, linear.weight.device
        )
        return new.train(linear.training)

    def to_linear(self) -> nn.Linear:
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        linear.weight = self.weight
        linear.bias = self.bias
        return linear.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act, weights = self.activation_quantizer, self.weight_quantizer
        if act is not None and weights is not None and multiplies_codes(x) and weights.group_size is None:
            x_codes, x_step = act.codes(x)
            w_codes, w_step = weights.codes(self.weight)
            out = torch.matmul(x_codes, w_codes.t()) * (x_step * w_step.reshape(-1))
            return (out if self.bias is None else out + self.bias).to(x.dtype)
        if self.activation_quantizer is not None:
            x = self.activation_quantizer(x)
        weight = self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)
        return F.linear(x, weight, self.bias)


class QuantEmbedding(nn.Embedding):
    """Token embedding with a per-row fake-quantized weight; keeps the source's embed_scale (BART)."""

    weight_quantizer: WeightQuantizer | None
    embed_scale: float | torch.Tensor

    @classmethod
    def from_embedding(
        cls,
        embedding: nn.Embedding,
        bits: int,
        clip_val: float = 2.5,
        learned_scale: bool = False,
        weight_quantizer: WeightQuantizer | None = None,
    ) -> QuantEmbedding:
        """Wrap `embedding`, sharing its weight; tied copies pass the first one's `weight_quantizer`."""
        new = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx, device="meta")
        new.weight = embedding.weight
        scale = getattr(embedding, "embed_scale", 1.0)  # BART's scaled embedding: sqrt(d_model)
        assert isinstance(scale, float | torch.Tensor), f"embed_scale is a {type(scale).__name__}"
        new.embed_scale = scale
        if weight_quantizer is None and bits != FULL_PRECISION_BITS:
            weight_quantizer = WeightQuantizer(embedding.weight, bits, "per_row", clip_val, learned_scale)
        new.weight_quantizer = weight_quantizer
        # The source module (e.g. BartScaledWordEmbedding) comes back on to_embedding; a plain
        # attribute, not a child, so it adds no state_dict keys.
        new.__dict__["source"] = embedding
        return new.train(embedding.training)

    def to_embedding(self) -> nn.Embedding:
        source: nn.Embedding = self.__dict__["source"]
        source.weight = self.weight
        return source.train(self.training)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.weight, self.padding_idx)
        if self.weight_quantizer is not None:
            rows = self.weight_quantizer.quantize_rows(rows, ids, self.padding_idx)
        return rows * self.embed_scale


class QuantizedPoints(NamedTuple):
    query: ActivationQuantizer
    key: ActivationQuantizer
    value: ActivationQuantizer
    probs: ActivationQuantizer


class AttentionQuantizers(nn.Module):
    """The four activation points inside attention that the paper quantizes."""

    def __init__(
        self, bits: int, clip_val: float, learned_scale: bool, device: torch.device | None = None
    ) -> None:
        super().__init__()
        self.query = make_activation_quantizer(bits, clip_val, learned_scale, device)
        self.key = make_activation_quantizer(bits, clip_val, learned_scale, device)
        self.value = make_activation_quantizer(bits, clip_val, learned_scale, device)
        self.probs = make_activation_quantizer(bits, clip_val, learned_scale, device)

    def points(self) -> QuantizedPoints | None:
        """The four quantizers; None at full precision, where all four are None."""
        if self.query is None or self.key is None or self.value is None or self.probs is None:
            return None
        return QuantizedPoints(self.query, self.key, self.value, self.probs)


def attention_quantizers(module: nn.Module) -> AttentionQuantizers:
    """The quantizers `quantize_model` hung on an attention module."""
    quantizers = module.attention_quantizers
    if not isinstance(quantizers, AttentionQuantizers):
        raise TypeError(f"{type(module).__name__} has no quantized attention")
    return quantizers


def quantized_eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BART's eager attention with Q (after scaling), K, V and P.V's probabilities fake-quantized.

    Q.K^T and P.V multiply the codes and scale each product once, as `QuantLinear` does.
    Returns the softmax probabilities before dropout and quantization, as the paper's code
    returns them for the attention loss.
    """
    points = attention_quantizers(module).points()
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    codes = points is not None and multiplies_codes(query)
    if points is None:  # eager's own order of operations, so that 32 bits is bit-identical
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    elif codes:
        scores = _code_product(points.query, query * scaling, points.key, key.transpose(2, 3))
    else:
        scores = torch.matmul(points.query(query * scaling), points.key(key).transpose(2, 3))
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.softmax(scores, dim=-1)
    dropped = F.dropout(probs, p=dropout, training=module.training)
    if points is None:
        output = torch.matmul(dropped, value)
    elif codes:
        output = _code_product(points.probs, dropped, points.value, value)
    else:
        output = torch.matmul(points.probs(dropped), points.value(value))
    return output.to(query.dtype).transpose(1, 2).contiguous(), probs


def _code_product(left: ActivationQuantizer, a: torch.Tensor, right: ActivationQuantizer,
                  b: torch.Tensor) -> torch.Tensor:
    """a @ b on the two quantizers' codes, scaled once by their steps."""
    a_codes, a_step = left.codes(a)
    b_codes, b_step = right.codes(b)
    return torch.matmul(a_codes, b_codes) * (a_step * b_step)


AttentionInterface.register(QUANTIZED_ATTENTION, quantized_eager_attention)
