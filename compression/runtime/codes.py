"""Activation codes exactly as the reference computes them (`ActivationQuantizer.codes`), in
fewer passes; `symmetric_scale_and_step` is `quantizers.symmetric_scale` in Python floats
(tests/serving/test_runtime.py holds the two to the same fp32 values)."""

from __future__ import annotations

import struct

import torch

from compression.modules import (
    ActivationQuantizer,
)
from compression.quantizers import (
    ZERO_RANGE,
    lsq_step,
    max_level,
    quantize_tensor,
)


def activation_codes(quantizer: ActivationQuantizer, x: torch.Tensor, owned: bool = False,
                     out: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """The reference's codes of `x` (integer-valued floats) and the value of one code, exactly as
    `ActivationQuantizer.codes` computes them (the step is an fp32 value).

    `owned`: `x` is the caller's temporary and may be overwritten; else the codes go to `out`
    (a buffer of x's shape) or to a new tensor.
    """
    bits, clip = quantizer.bits, quantizer.clip_val
    if bits == 2 and quantizer.step is None:  # ternary activations: rare, the general path
        quantized = quantize_tensor(x, bits, "per_tensor", clip)
        return quantized.codes.to(x.dtype), float(quantized.scale)
    target = x if owned else (torch.empty_like(x) if out is None else out)
    if quantizer.step is not None:  # LSQ, as lsq_codes rounds
        learned = lsq_step(quantizer.step.detach())
        codes = torch.div(x, learned, out=target).clamp_(-max_level(bits), max_level(bits)).round_()
        return codes, float(learned)
    low, high = torch.aminmax(x)
    scale, step = symmetric_scale_and_step(max(-float(low), float(high)), bits, clip)
    return symmetric_codes_at(quantizer, x, scale, target), step


def _fp32(value: float) -> float:
    """`value` rounded to the nearest float32."""
    return struct.unpack("f", struct.pack("f", value))[0]


_FP32_ZERO_RANGE = _fp32(ZERO_RANGE)


def symmetric_scale_and_step(peak: float, bits: int, clip: float) -> tuple[float, float]:
    """`symmetric_scale` and `code_step` of a per-tensor range max|x| = `peak`, as Python floats:
    the same fp32 values as those tensor ops (one fp32 rounding per op; a quotient rounded to
    double first rounds to the same float), without a handful of tiny tensor ops per call."""
    clamped = min(max(peak, _FP32_ZERO_RANGE), _fp32(clip))
    scale = _fp32(_fp32(1.0 / clamped) * max_level(bits))  # levels / peak is reciprocal(peak) * levels
    return scale, _fp32(1.0 / scale)


def symmetric_codes_at(quantizer: ActivationQuantizer, x: torch.Tensor, scale: float,
                     target: torch.Tensor) -> torch.Tensor:
    """symmetric_codes at a given scale, into `target` (may be `x`), without the clamp where it
    cannot change anything."""
    clip = quantizer.clip_val
    # The range reaches the clip exactly when the scale is levels / clip; clamping a little more
    # often than that changes nothing.
    if scale * clip <= max_level(quantizer.bits) * (1 + 1e-6):
        return torch.clamp(x, -clip, clip, out=target).mul_(scale).round_()
    return torch.mul(x, scale, out=target).round_()
