"""Quantizer math: pure functions on tensors, and the straight-through autograd Functions.

Three schemes, each split into "codes" (small integers) and a scale, so that the packed artifact
stores exactly what the fake-quantized forward computes:
- symmetric (DQ-BART's SymQuantizer): clamp to [-clip, clip], scale = (2^(b-1)-1) / max|x|,
  codes = round(x * scale), value = codes / scale;
- ternary (TWN, the paper's 2-bit): delta = 0.7 * mean|w|, alpha = mean of |w| over |w| > delta,
  codes = sign(w) * [|w| > delta], value = codes * alpha;
- lsq (learned step size): codes = round(clamp(x / step, -q, q)), value = codes * step.

Granularity: per tensor, or per row (statistics along the last dimension, one scale per row).
Per group (one scale per `group_size` columns of a row) is per row on a [rows, groups, size]
view (modules.WeightQuantizer); its scale is stored as [rows, groups] and `expand_scale` widens
it to the codes' columns.
Gradients follow the clipped straight-through estimator of the paper: the input gradient passes
where |x| < clip and is zero outside; fixed scales get none. LSQ gets the LSQ gradient on its step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

Scheme = Literal["symmetric", "ternary", "lsq"]
Granularity = Literal["per_tensor", "per_row", "per_group"]

FULL_PRECISION_BITS = 32
# Below this a maximum counts as zero: the paper's code divides by it and yields NaN.
ZERO_RANGE = 1e-30
_MIN_STEP = 1e-8


def max_level(bits: int) -> int:
    """Largest code of a symmetric b-bit grid: 127 for 8 bits, 7 for 4, 1 for 2 (ternary)."""
    return 2 ** (bits - 1) - 1


def _reduce_dims(x: torch.Tensor, per_row: bool) -> tuple[int, ...]:
    return (x.dim() - 1,) if per_row else tuple(range(x.dim()))


def _peak(x: torch.Tensor, per_row: bool) -> torch.Tensor:
    """max|x| per tensor (0-dim) or per row (keepdim), in one pass."""
    low, high = torch.aminmax(x.detach(), dim=-1, keepdim=True) if per_row else torch.aminmax(x.detach())
    return torch.maximum(-low, high)


def symmetric_scale(x: torch.Tensor, bits: int, clip: float, per_row: bool) -> torch.Tensor:
    """Levels per unit, (2^(b-1)-1) / max|clamp(x)|.

    All-zero guard: the range is floored at 1e-30, so zeros give codes 0 where the paper's
    code divides by zero (the scale stays finite in fp32 for every bit width used here).
    """
    return max_level(bits) / _peak(x, per_row).clamp_(min=ZERO_RANGE, max=clip)


def symmetric_codes(x: torch.Tensor, scale: torch.Tensor, clip: float) -> torch.Tensor:
    return x.detach().clamp(-clip, clip).mul_(scale).round_()


def _excess(w: torch.Tensor, delta: torch.Tensor, clip: float) -> torch.Tensor:
    """max(|clamp(w)| - delta, 0): positive exactly where TWN keeps a weight."""
    return (w.detach().abs().clamp_(max=clip) - delta).relu_()


def _ternary_parts(
    w: torch.Tensor, clip: float, per_row: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TWN: delta = 0.7*mean|w|, the excess over delta, and alpha = mean |w| over |w| > delta.

    Float arithmetic only (sums of the excess), no boolean masks: several times faster on CPU.
    """
    dims = _reduce_dims(w, per_row)
    delta = 0.7 * w.detach().abs().clamp_(max=clip).mean(dim=dims, keepdim=True)
    excess = _excess(w, delta, clip)
    count = torch.count_nonzero(excess, dim=dims).reshape(delta.shape).to(w.dtype)
    # sum over kept |w| = sum of excess + delta per kept weight; all-zero guard: alpha = 0, not 0/0
    alpha = (excess.sum(dim=dims, keepdim=True) + delta * count) / count.clamp(min=1.0)
    if not per_row:  # one scale per tensor is a 0-dim tensor, as for the symmetric scheme
        return delta.reshape(()), excess, alpha.reshape(())
    return delta, excess, alpha


def ternary_params(w: torch.Tensor, clip: float, per_row: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """TWN threshold delta = 0.7*mean|w| and value alpha = mean(|w| over |w| > delta)."""
    delta, _, alpha = _ternary_parts(w, clip, per_row)
    return delta, alpha


def _ternary_signs(excess: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # Dropped negative weights give -0.0: equal to the stored code 0 in value.
    return torch.sign(excess).mul_(torch.sign(w.detach()))


def ternary_codes(w: torch.Tensor, delta: torch.Tensor, clip: float) -> torch.Tensor:
    return _ternary_signs(_excess(w, delta, clip), w)


def lsq_step(step: torch.Tensor) -> torch.Tensor:
    """The step actually used: kept positive so that a step driven to zero cannot divide by zero."""
    return step.clamp(min=_MIN_STEP)


def lsq_codes(x: torch.Tensor, step: torch.Tensor, bits: int) -> torch.Tensor:
    level = max_level(bits)
    return (x.detach() / step).clamp_(-level, level).round_()


def lsq_initial_step(
    x: torch.Tensor, bits: int, clip: float, per_row: bool, ternary: bool = True
) -> torch.Tensor:
    """Start the learned step where the paper's fixed quantizer stands on this data."""
    if bits == 2 and ternary:
        return ternary_params(x, clip, per_row)[1].clamp(min=_MIN_STEP)
    return 1.0 / symmetric_scale(x, bits, clip, per_row)


def expand_scale(scale: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A per-group scale [rows, groups] repeated over each group's columns, so that it broadcasts
    against codes of `shape`; per-tensor and per-row scales broadcast as they are."""
    if scale.dim() < 2 or scale.shape[-1] in (1, shape[-1]):
        return scale
    return scale.repeat_interleave(shape[-1] // scale.shape[-1], dim=-1)


def codes_at_scale(x: torch.Tensor, scale: torch.Tensor, scheme: Scheme, bits: int) -> torch.Tensor:
    """Codes of `x` on a given grid; on values already on that grid they are the original codes."""
    level = max_level(bits)
    scale = expand_scale(scale, x.shape)
    # A zero step is an all-zero row (e.g. the pad embedding at 2 bits): codes 0, not 0/0.
    step = torch.where(scale == 0, torch.ones_like(scale), scale)
    ratio = x * scale if scheme == "symmetric" else x / step
    return torch.round(ratio.clamp(-level, level))


def dequantize(codes: torch.Tensor, scale: torch.Tensor, scheme: Scheme) -> torch.Tensor:
    """Codes back to values; the symmetric scheme divides (levels per unit), the others multiply."""
    codes, scale = codes.to(scale.dtype), expand_scale(scale, codes.shape)
    return codes / scale if scheme == "symmetric" else codes * scale


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer codes (int8, same shape as the source) and the fp32 scale that restores them."""

    codes: torch.Tensor
    scale: torch.Tensor
    scheme: Scheme
    bits: int
    granularity: Granularity

    def values(self) -> torch.Tensor:
        return dequantize(self.codes, self.scale, self.scheme)


def quantize_tensor(
    x: torch.Tensor, bits: int, granularity: Granularity, clip: float, step: torch.Tensor | None = None,
    ternary: bool = True,
) -> QuantizedTensor:
    """Codes and scale of `x` under the scheme its bits select (LSQ when a learned step is given;
    2 bits are ternary unless `ternary` is False, then the symmetric grid {-1, 0, 1} * max|x|)."""
    x = x.detach()
    per_row = granularity == "per_row"
    if step is not None:
        used = lsq_step(step.detach())
        return QuantizedTensor(lsq_codes(x, used, bits).to(torch.int8), used, "lsq", bits, granularity)
    if bits == 2 and ternary:
        delta, alpha = ternary_params(x, clip, per_row)
        return QuantizedTensor(
            ternary_codes(x, delta, clip).to(torch.int8), alpha, "ternary", bits, granularity
        )
    scale = symmetric_scale(x, bits, clip, per_row)
    return QuantizedTensor(
        symmetric_codes(x, scale, clip).to(torch.int8), scale, "symmetric", bits, granularity
    )


class SymmetricFakeQuant(torch.autograd.Function):
    """Symmetric uniform fake quantization with the clipped straight-through gradient."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, bits: int, clip: float, per_row: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip = clip
        scale = symmetric_scale(x, bits, clip, per_row)
        return symmetric_codes(x, scale, clip).div_(scale)  # = dequantize(codes, scale, "symmetric")

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        return _clipped_pass(grad, x, ctx.clip), None, None, None


class TernaryFakeQuant(torch.autograd.Function):
    """TWN ternary fake quantization with the clipped straight-through gradient."""

    @staticmethod
    def forward(
        ctx: Any, w: torch.Tensor, clip: float, per_row: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(w)
        ctx.clip = clip
        _, excess, alpha = _ternary_parts(w, clip, per_row)
        return _ternary_signs(excess, w).mul_(alpha)  # = dequantize(codes, alpha, "ternary")

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        (w,) = ctx.saved_tensors
        return _clipped_pass(grad, w, ctx.clip), None, None


class LsqFakeQuant(torch.autograd.Function):
    """LSQ (Esser et al. 2020): straight-through inside the grid, and a gradient on the step.

    d value / d step = round(x/s) - x/s inside the grid and +-q outside, scaled by
    1/sqrt(n*q) with n the number of elements sharing one step.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, step: torch.Tensor, bits: int
    ) -> torch.Tensor:
        used = lsq_step(step)
        ctx.save_for_backward(x, used)
        ctx.bits = bits
        return lsq_codes(x, used, bits).mul_(used)  # = dequantize(codes, step, "lsq")

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, step = ctx.saved_tensors
        level = max_level(ctx.bits)
        ratio = x / step
        # hardtanh's backward keeps what lies strictly inside (-q, q): the STE mask, in one pass
        inside_ratio = torch.ops.aten.hardtanh_backward(ratio, ratio, -level, level)
        local = ratio.clamp(-level, level).round_().sub_(inside_ratio)  # round(r) - r inside, +-q outside
        per_step = x.numel() // step.numel()
        step_grad = _sum_to_shape(local.mul_(grad), step.shape) / math.sqrt(per_step * level)
        return torch.ops.aten.hardtanh_backward(grad, ratio, -level, level), step_grad, None


def code_step(scale: torch.Tensor, scheme: Scheme) -> torch.Tensor:
    """The value of one code: the symmetric scale counts levels per unit, the others are steps."""
    return 1.0 / scale if scheme == "symmetric" else scale


class SymmetricCodes(torch.autograd.Function):
    """Symmetric codes with the clipped straight-through gradient of `SymmetricFakeQuant`."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, scale: torch.Tensor, clip: float
    ) -> torch.Tensor:
        ctx.save_for_backward(x, scale)
        ctx.clip = clip
        return symmetric_codes(x, scale, clip)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, scale = ctx.saved_tensors
        return _clipped_pass(grad * scale, x, ctx.clip), None, None


class TernaryCodes(torch.autograd.Function):
    """Ternary codes with the clipped straight-through gradient of `TernaryFakeQuant`."""

    @staticmethod
    def forward(
        ctx: Any,
        w: torch.Tensor,
        excess: torch.Tensor,
        alpha: torch.Tensor,
        clip: float,
    ) -> torch.Tensor:
        ctx.save_for_backward(w, alpha)
        ctx.clip = clip
        return _ternary_signs(excess, w)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        w, alpha = ctx.saved_tensors
        # An all-zero row (alpha 0) has no value to pass a gradient through.
        per_code = torch.where(alpha == 0, torch.zeros_like(alpha), 1.0 / alpha.clamp(min=ZERO_RANGE))
        return _clipped_pass(grad * per_code, w, ctx.clip), None, None, None


class LsqCodes(torch.autograd.Function):
    """LSQ codes round(clamp(x / s)): straight-through inside the grid, d code / d s = -x / s^2 there."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, step: torch.Tensor, bits: int
    ) -> torch.Tensor:
        ctx.save_for_backward(x, step)
        ctx.bits = bits
        return lsq_codes(x, step, bits)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, step = ctx.saved_tensors
        level = max_level(ctx.bits)
        ratio = x / step
        inside = torch.ops.aten.hardtanh_backward(grad / step, ratio, -level, level)
        step_grad = _sum_to_shape(-(inside * ratio), step.shape)
        return inside, step_grad, None


class _ScaleGradient(torch.autograd.Function):
    """The identity, with its gradient multiplied by `factor` (LSQ's step-gradient scale)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        return grad * ctx.factor, None


def quantize_to_codes(
    x: torch.Tensor, bits: int, granularity: Granularity, clip: float, step: torch.Tensor | None = None,
    ternary: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-valued float codes of `x` and the value of one code (0-dim, or one per row).

    codes * step are `fake_quantize`'s values up to float rounding, and the gradients of x (and
    of a learned step) are `fake_quantize`'s. A product of codes is exact in fp32 (sums below 2^24),
    so a layer that multiplies codes and scales the result once computes the same float on any
    kernel: the integer kernels of the served form reproduce it bit for bit.
    """
    if x.dtype in (torch.float16, torch.bfloat16):  # as fake_quantize: codes of half inputs in fp32
        x = x.float()
    per_row = granularity == "per_row"
    if step is not None:
        level = max_level(bits)
        used = _ScaleGradient.apply(lsq_step(step), 1.0 / math.sqrt(x.numel() // step.numel() * level))
        return LsqCodes.apply(x, used, bits), used
    if bits == 2 and ternary:
        _, excess, alpha = _ternary_parts(x, clip, per_row)
        return TernaryCodes.apply(x, excess, alpha, clip), alpha
    scale = symmetric_scale(x, bits, clip, per_row)
    return SymmetricCodes.apply(x, scale, clip), code_step(scale, "symmetric")


def _clipped_pass(grad: torch.Tensor, x: torch.Tensor, clip: float) -> torch.Tensor:
    """grad where -clip < x < clip, else 0: hardtanh's backward is exactly this mask, in one pass."""
    return torch.ops.aten.hardtanh_backward(grad, x, -clip, clip)


def _sum_to_shape(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back onto the step's shape (a scalar, or one per row)."""
    if len(shape) == 0:
        return t.sum()
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    return t.sum(dim=dims, keepdim=True).reshape(shape)


def fake_quantize(
    x: torch.Tensor, bits: int, granularity: Granularity, clip: float, step: torch.Tensor | None = None,
    ternary: bool = True,
) -> torch.Tensor:
    """Quantize-dequantize `x` with the straight-through gradient; bits 32 is the identity.

    Half-precision inputs (autocast, fp16 inference) are quantized in fp32: a 127/max scale
    overflows fp16 once max|x| < 0.002.
    """
    if bits == FULL_PRECISION_BITS:
        return x
    if x.dtype in (torch.float16, torch.bfloat16):
        return fake_quantize(x.float(), bits, granularity, clip, step, ternary).to(x.dtype)
    if step is not None:
        return LsqFakeQuant.apply(x, step, bits)
    per_row = granularity == "per_row"
    if bits == 2 and ternary:
        return TernaryFakeQuant.apply(x, clip, per_row)
    return SymmetricFakeQuant.apply(x, bits, clip, per_row)


def fake_quantize_activation(
    x: torch.Tensor, bits: int, clip: float, step: torch.Tensor | None = None
) -> torch.Tensor:
    """Dynamic per-tensor activation fake quantization (symmetric), or LSQ with a learned step."""
    return fake_quantize(x, bits, "per_tensor", clip, step)
