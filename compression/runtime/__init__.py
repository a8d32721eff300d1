"""Fast inference forms of a loaded compressed model (the reference path is `artifact.load`).

The reference model recomputes its fake-quantized weights on every forward and runs fp32
matrix products on fake-quantized activations. Here:

- Weights are quantized once: their integer codes and scales are what the reference rounds to,
  so 2-, 4- and 8-bit codes all fit int8 exactly (ternary codes are -1/0/1).
- The reference multiplies integer codes and scales each product once (`quantize_to_codes`);
  such a product is exact in fp32, so an integer kernel that forms the same sum and scales it
  with the same float operations gives the same bits: the CPU form's outputs equal the
  reference's, whatever kernel or batch shape each side runs.
- CPU: each quantized Linear becomes `Int8Linear`: an int8 kernel multiplies the reference's
  codes (exact int32 sums): per layer shape and row regime, the fastest of the kernels whose sums
  a probe finds exact on this CPU (onednn, fbgemm, torch._int_mm where it beats fp32), or fp32
  codes where no int8 kernel is exact or all are clearly slower (`LinearKernel`).
  Without VNNI, u8 x s8 kernels add pairs of products in saturating int16: there the weight codes
  are split into pairs that cannot saturate and a sparse exact residual (`split_pairs`).
  platform-notes §2-3: int8 1.2-2.2x faster than fp32; torchao far slower, bf16 slow.
- CUDA: fp16 with dequantized weights; activations stay fake-quantized.
- The tied LM head, whose input the reference does not quantize, runs in float with its
  dequantized weight, so the fast path changes no rounding the reference does not do.
- CPU attention (`integer_code_attention`): the reference's codes of Q, K, V and the
  probabilities, multiplied as integers (`torch._int_mm` for an encoder where it is exact,
  integer-valued fp32 for a decoding step) and scaled once per product, in fewer passes over
  the scores; the cross-attention's codes are computed once per generate call, not per step.
- CPU memory: large per-call buffers (Int8Linear's input, the attention probabilities) are
  reused per thread and GELU runs in place, because a fresh large tensor pays page faults that
  cost more than the work on it on these hosts. The inference thread thus keeps its largest
  buffers (about 300 MB after a batch of 16 x 512 tokens on the bart-base shape).

The choice is automatic (`form="auto"`) and returned as `RuntimeInfo`.

One job per module: `kernels` (the integer kernels, their probes and the choice per layer shape),
`codes` (activation codes as the reference computes them), `linear` (the int8 Linear),
`attention` (integer-code attention), `optimize` (`optimize_for_inference`), `scratch` (reused
buffers).
"""

from __future__ import annotations

from compression.runtime.attention import (
    INT8_ATTENTION_MIN_QUERIES,
    INTEGER_CODE_ATTENTION,
    integer_code_attention,
    to_integer_code_attention,
)
from compression.runtime.codes import (
    activation_codes,
    symmetric_scale_and_step,
)
from compression.runtime.kernels import (
    FEW_ROWS,
    INT8_KERNELS,
    PAIR_LIMIT,
    ROW_REGIMES,
    LinearKernel,
    Residual,
    fastest_kernel,
    int8_sums_are_exact,
    int_mm_is_fast,
    kernel_is_exact,
    kernel_is_usable,
    row_regime,
    split_pairs,
)
from compression.runtime.linear import (
    Int8Linear,
    kernel_summary,
    to_int8,
)
from compression.runtime.optimize import (
    Form,
    InplaceGelu,
    RuntimeInfo,
    freeze_weights,
    model_bytes,
    optimize_for_inference,
    resolve_device,
    to_inplace_gelu,
)

__all__ = [
    "FEW_ROWS",
    "Form",
    "INT8_ATTENTION_MIN_QUERIES",
    "INT8_KERNELS",
    "INTEGER_CODE_ATTENTION",
    "InplaceGelu",
    "Int8Linear",
    "LinearKernel",
    "PAIR_LIMIT",
    "ROW_REGIMES",
    "Residual",
    "RuntimeInfo",
    "activation_codes",
    "fastest_kernel",
    "freeze_weights",
    "int8_sums_are_exact",
    "int_mm_is_fast",
    "integer_code_attention",
    "kernel_is_exact",
    "kernel_is_usable",
    "kernel_summary",
    "model_bytes",
    "optimize_for_inference",
    "resolve_device",
    "row_regime",
    "split_pairs",
    "symmetric_scale_and_step",
    "to_inplace_gelu",
    "to_int8",
    "to_integer_code_attention",
]
