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
"""

from __future__ import annotations

import functools
import math
import struct
import threading
import time
import warnings
import weakref
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig
from transformers.activations import GELUActivation
from transformers.modeling_utils import AttentionInterface

from compression.modules import (
    QUANTIZED_ATTENTION,
    ActivationQuantizer,
    QuantEmbedding,
    QuantizedPoints,
    QuantLinear,
    attention_quantizers,
    quantized_eager_attention,
)
from compression.quantizers import (
    ZERO_RANGE,
    QuantizedTensor,
    code_step,
    lsq_step,
    max_level,
    quantize_tensor,
)

Form = Literal["auto", "int8", "fp16", "reference"]
_MAX_INT8_BITS = 8  # codes up to +-127 fit the kernel's int8


class _Scratch(threading.local):
    """Float buffers of the calling thread, reused by name. A fresh large tensor pays a page fault
    per 4 KiB on first touch, several times the cost of filling it here (a 9.6 MB input: 2.7 ms
    fresh, 0.3 ms reused), so the inference thread keeps its largest ones."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A view of the buffer `name` with this shape, valid until the next take of that name."""
        numel = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != dtype:
            with torch.inference_mode(False):  # an inference tensor could not be written outside that mode
                buffer = torch.empty(numel, dtype=dtype)
            self.buffers[name] = buffer
        return buffer[:numel].view(shape)


_SCRATCH = _Scratch()


@dataclass(frozen=True)
class RuntimeInfo:
    """What `optimize_for_inference` chose, for /info and the logs."""

    device: str
    form: str  # int8_dynamic | fp16 | reference
    int8_layers: int
    float_layers: int
    kernel: str
    threads: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Int8Linear(nn.Module):
    """A quantized Linear on int8 kernels: `QuantLinear`'s output, bit for bit.

    The kernel sums products of the reference's codes exactly (`LinearKernel`), and the sums are
    scaled here as the reference scales them. Each row regime (`ROW_REGIMES`: one input's
    decoding step, a batch's, an encoder's input) takes the kernel timed fastest for it here.
    """

    weight_step: torch.Tensor  # buffers
    bias: torch.Tensor | None

    def __init__(self, codes: QuantizedTensor, bias: torch.Tensor | None, act: ActivationQuantizer,
                 kernel: LinearKernel | None = None) -> None:
        """`kernel`: for every call; None takes the fastest exact one here per row regime."""
        super().__init__()
        self.out_features, self.in_features = codes.codes.shape
        self.activation_quantizer = act
        # The value of one weight code per output, as `WeightQuantizer.codes` gives it to the reference.
        self.register_buffer("weight_step", code_step(codes.scale, codes.scheme).detach().float().reshape(-1))
        self.register_buffer("bias", None if bias is None else bias.detach().float())
        self.kernels: dict[int, LinearKernel] = {
            low: fastest_kernel(low, self.in_features, self.out_features) if kernel is None else kernel
            for low in ROW_REGIMES}
        ints = codes.codes.to(torch.int8)
        self._packed = {k: _pack_exact(k, ints) for k in set(self.kernels.values())}
        self.weight_bytes = sum(ints.numel() * (4 if k == "fp32" else 1) + (r.bytes if r else 0)
                                for k, (_, r) in self._packed.items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        # A reused buffer: a fresh tensor per call pays page faults (see `_Scratch`).
        padded = _SCRATCH.take("linear_input", (rows.shape[0] + 1, self.in_features))
        _, step = activation_codes(self.activation_quantizer, rows, out=padded[:-1])
        kernel = self.kernels[row_regime(rows.shape[0])]
        packed, residual = self._packed[kernel]
        # The residual's products before `_sums` overwrites the codes.
        rest = None if residual is None else (residual.outputs, residual.products(padded[:-1]))
        out = _sums(kernel, padded, packed, self.out_features)
        if rest is not None:
            out.index_add_(1, *rest)
        out.mul_(self.weight_step * step)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"act_bits={self.activation_quantizer.bits}, kernels={self.kernels}")


FEW_ROWS = 64
# Lower bounds of the row counts by which a layer picks its kernel: one row (a decoding step of
# one input), a few (a batch's decoding step), and many (an encoder's input).
ROW_REGIMES = (1, 2, FEW_ROWS)
_PROBE_ROWS = {1: 1, 2: 16, FEW_ROWS: 256}
# fp32 codes take four times the memory of int8: they are chosen only when this much faster.
FP32_MARGIN = 1.2


def row_regime(rows: int) -> int:
    return 1 if rows <= 1 else 2 if rows < FEW_ROWS else FEW_ROWS

# Kernels that multiply int8 codes; which is fastest depends on the CPU and is timed
# (`fastest_kernel`). On an AVX-512 VNNI host, a 3137 x 768 x 3072 product: onednn 51 ms, fbgemm
# 61 ms, _int_mm 51 ms plus conversions; at 1-17 rows, with this module's own work, _int_mm
# 0.06-0.13 ms, fbgemm 0.10-0.14, onednn 0.11-0.16. On AVX2 alone see `fastest_kernel`.
# - onednn: `qlinear_pointwise` on the codes + 128 as uint8 at scale 1 and zero point 128, fp32 out;
# - fbgemm: the dynamic Linear, weight codes at scale 1, and one extra input row of +-127.5 that
#   pins its input range to scale 1, so it reads the codes as they are (plus a zero point);
# - int_mm: `torch._int_mm` on int8 codes, int32 out;
# - fp32: a float product of the codes (exact below 2^24), where no int8 kernel is exact or
#   where it is `FP32_MARGIN` times faster than all of them; its weights take 4 bytes each.
LinearKernel = Literal["onednn", "fbgemm", "int_mm", "fp32"]
INT8_KERNELS: tuple[LinearKernel, ...] = ("onednn", "fbgemm", "int_mm")


def _pack(kernel: LinearKernel, codes: torch.Tensor) -> torch.Tensor:
    """The int8 weight codes (out x in) in the kernel's own form."""
    if kernel == "onednn":
        return torch.ops.onednn.qlinear_prepack(codes.contiguous(), None)
    if kernel == "fbgemm":
        # torch 2.13 warns that qint8 tensor creation will go (pytorch issue 184982); torch is pinned.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            weight = torch._make_per_tensor_quantized_tensor(codes.contiguous(), 1.0, 0)
        return torch.ops.quantized.linear_prepack(weight, None)
    return codes.to(torch.int8 if kernel == "int_mm" else torch.float32).contiguous()


def _sums(kernel: LinearKernel, padded: torch.Tensor, packed: torch.Tensor,
          out_features: int) -> torch.Tensor:
    """codes @ weight_codes^T as fp32, for the codes in all rows of `padded` but its last (a spare
    row for fbgemm's marker; the codes may be overwritten)."""
    codes = padded[:-1]
    if kernel == "onednn":
        ints = _SCRATCH.take("linear_codes_u8", tuple(codes.shape), torch.uint8)
        ints.copy_(codes.add_(128))
        ones, zeros = _unit_scales(out_features)
        return torch.ops.onednn.qlinear_pointwise(ints, 1.0, 128, packed, ones, zeros, None, 1.0, 0,
                                                  torch.float32, "none", [], "")
    if kernel == "fbgemm":
        padded[-1].zero_()
        padded[-1, 0], padded[-1, -1] = 127.5, -127.5
        return torch.ops.quantized.linear_dynamic(padded, packed, False)[:-1]
    if kernel == "int_mm":
        ints = _SCRATCH.take("linear_codes", tuple(codes.shape), torch.int8)
        ints.copy_(codes)
        products = _SCRATCH.take("linear_products", (codes.shape[0], packed.shape[0]), torch.int32)
        torch._int_mm(ints, packed.t(), out=products)
        return torch.empty(products.shape).copy_(products)
    return codes @ packed.t()


@functools.cache
def _unit_scales(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output weight scales of 1 and zero points of 0, for onednn."""
    return torch.ones(count), torch.zeros(count, dtype=torch.long)


# Without VNNI, u8 x s8 kernels add the products of each two neighbouring inputs (2j, 2j+1) in
# saturating int16 (why torch quantizes to 7 bits there by default, `reduce_range`). The inputs
# here are codes + 128, at most 255, so a pair of weight codes of one sign whose magnitudes sum to
# at most PAIR_LIMIT cannot overflow: 255 * 128 = 32640 < 32767.
PAIR_LIMIT = 128


@dataclass(frozen=True)
class Residual:
    """Weight codes kept out of the kernel's matrix: output `outputs[i]` also gets input
    `inputs[i]` times `values[i]`, summed in fp32 (integers, exact)."""

    outputs: torch.Tensor
    inputs: torch.Tensor
    values: torch.Tensor

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.outputs, self.inputs, self.values))

    def products(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.index_select(1, self.inputs).mul_(self.values)


def split_pairs(codes: torch.Tensor) -> tuple[torch.Tensor, Residual | None]:
    """Weight codes (out x in) whose neighbouring same-sign pairs stay within PAIR_LIMIT, and the
    residual that makes them whole: of each pair over the limit, the second code gives up the excess."""
    ints = codes.to(torch.int32)
    first, second = ints[:, 0:ints.shape[1] // 2 * 2:2], ints[:, 1::2]
    over = (first * second > 0) & (first.abs() + second.abs() > PAIR_LIMIT)
    if not bool(over.any()):
        return codes, None
    kept = torch.where(over, second.sign() * (PAIR_LIMIT - first.abs()), second)
    outputs, pairs = over.nonzero(as_tuple=True)
    main = ints.clone()
    main[:, 1::2] = kept
    residual = Residual(outputs, pairs * 2 + 1, (second - kept)[outputs, pairs].float())
    return main.to(torch.int8), residual


def _pack_exact(kernel: LinearKernel, codes: torch.Tensor) -> tuple[torch.Tensor, Residual | None]:
    """The kernel's weights, split into pairs it sums exactly where it saturates full-range codes."""
    if kernel in ("onednn", "fbgemm") and not int8_sums_are_exact(kernel):
        main, residual = split_pairs(codes)
        return _pack(kernel, main), residual
    return _pack(kernel, codes), None


def _exact_on_probe(kernel: LinearKernel, split: bool) -> bool:
    """Whether the kernel forms exact sums of large codes of equal and of mixed signs."""
    width = 64
    padded = torch.full((5, width), 127.0)
    padded[1] = -127.0
    padded[2, ::2] = -127.0
    padded[3] = torch.arange(width) % 255 - 127.0
    weight = torch.full((4, width), 127, dtype=torch.int8)
    weight[1] = -127
    weight[2, 1::2] = -127
    weight[3] = (torch.arange(width) * 37 % 255 - 127).to(torch.int8)
    exact = padded[:-1] @ weight.float().t()
    main, residual = split_pairs(weight) if split else (weight, None)
    sums = _sums(kernel, padded.clone(), _pack(kernel, main), weight.shape[0])
    if residual is not None:
        sums.index_add_(1, residual.outputs, residual.products(padded[:-1]))
    return torch.equal(sums, exact)


@functools.cache
def int8_sums_are_exact(kernel: LinearKernel) -> bool:
    """Whether a kernel sums full-range codes exactly on this CPU, probed once (with VNNI the int8
    kernels accumulate in int32; without, see PAIR_LIMIT)."""
    return _exact_on_probe(kernel, split=False)


@functools.cache
def kernel_is_exact(kernel: LinearKernel) -> bool:
    """Exact on this CPU, on full-range codes or on codes split into pairs (`split_pairs`)."""
    splittable = kernel in ("onednn", "fbgemm")
    return int8_sums_are_exact(kernel) or (splittable and _exact_on_probe(kernel, split=True))


@functools.cache
def int_mm_is_fast() -> bool:
    """Whether `torch._int_mm` beats an fp32 product of the same codes here. With VNNI it is the
    fastest kernel for few rows; on an AVX2-only host it took a slow path, ten times slower than
    fp32 (16 x 768 x 3072: 36 ms against 3.7 ms)."""
    generator = _probe_generator()
    codes = torch.randint(-127, 128, (33, 768), generator=generator).float()
    weight = torch.randint(-127, 128, (768, 768), dtype=torch.int8, generator=generator)
    times = _best_seconds(("int_mm", "fp32"), codes, weight)
    return times["int_mm"] < times["fp32"]


@functools.cache
def kernel_is_usable(kernel: LinearKernel) -> bool:
    """Exact here and, for `_int_mm`, not slower than fp32."""
    return kernel_is_exact(kernel) and (kernel != "int_mm" or int_mm_is_fast())


@functools.cache
def fastest_kernel(regime: int, in_features: int, out_features: int) -> LinearKernel:
    """The fastest exact kernel here for a layer of this shape in a row regime (`ROW_REGIMES`),
    timed once: an int8 kernel unless fp32 codes are `FP32_MARGIN` times faster. The order differs
    by CPU and shape. With AVX-512 VNNI it was onednn, and `_int_mm` for few rows. On AVX2 (ms,
    one thread): 1 x 768 x 3072 fbgemm 0.39, onednn 0.79, fp32 0.64; 1 x 768 x 768 fp32 0.08,
    fbgemm 0.18; 3137 x 768 x 3072 all within 3% of 425."""
    generator = _probe_generator()
    weight = torch.randint(-60, 61, (out_features, in_features), dtype=torch.int8, generator=generator)
    codes = torch.randint(-127, 128, (_PROBE_ROWS[regime] + 1, in_features), generator=generator).float()
    usable = [k for k in INT8_KERNELS if kernel_is_usable(k)]
    times = _best_seconds((*usable, "fp32"), codes, weight)
    fp32 = times.pop("fp32")
    if not times or fp32 * FP32_MARGIN < min(times.values()):
        return "fp32"
    return min(times, key=lambda k: times[k])


def _probe_generator() -> torch.Generator:
    """Random probe inputs that leave torch's global random stream (sampling, seeded tests) alone."""
    return torch.Generator().manual_seed(0)


# Timed rounds per probe. A load probed on a busy host (another process, another stream's batch)
# once chose fp32 over int8 kernels 5x faster: each kernel's best of many interleaved calls, on
# one thread, is what the kernel costs, whatever the other core does meanwhile.
PROBE_ROUNDS = 9


def _best_seconds(kernels: tuple[LinearKernel, ...], padded: torch.Tensor,
                  weight: torch.Tensor) -> dict[LinearKernel, float]:
    """Each kernel's fastest `_sums` call over `PROBE_ROUNDS` rounds that call every kernel once
    (after one warm-up call each), on one torch thread."""
    packed = {k: _pack(k, weight) for k in kernels}
    best = dict.fromkeys(kernels, math.inf)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the calling thread's setting (OpenMP's is per thread)
    try:
        for round_ in range(PROBE_ROUNDS + 1):
            for kernel in kernels:
                codes = padded.clone()
                started = time.perf_counter()
                _sums(kernel, codes, packed[kernel], weight.shape[0])
                if round_:
                    best[kernel] = min(best[kernel], time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return best


def kernel_summary(model: nn.Module) -> str:
    """Which kernels the model's int8 layers run, by row regime, for /info."""
    layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
    labels = ("1 row", f"2-{FEW_ROWS - 1} rows", f"{FEW_ROWS}+ rows")
    regimes = []
    for low, label in zip(ROW_REGIMES, labels, strict=True):
        counts = Counter(m.kernels[low] for m in layers).most_common()
        regimes.append(f"{label}: " + ", ".join(f"{kernel} x{n}" for kernel, n in counts))
    split = [k for k in INT8_KERNELS if k != "int_mm" and not int8_sums_are_exact(k) and kernel_is_exact(k)]
    attention = "_int_mm" if kernel_is_usable("int_mm") else "fp32 codes"
    notes = f"; pairs split for {', '.join(split)}" if split else ""
    return f"int8 linear ({'; '.join(regimes)}{notes}), attention ({attention})"


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
    return _symmetric_codes(quantizer, x, scale, target), step


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


def _symmetric_codes(quantizer: ActivationQuantizer, x: torch.Tensor, scale: float,
                     target: torch.Tensor) -> torch.Tensor:
    """symmetric_codes at a given scale, into `target` (may be `x`), without the clamp where it
    cannot change anything."""
    clip = quantizer.clip_val
    # The range reaches the clip exactly when the scale is levels / clip; clamping a little more
    # often than that changes nothing.
    if scale * clip <= max_level(quantizer.bits) * (1 + 1e-6):
        return torch.clamp(x, -clip, clip, out=target).mul_(scale).round_()
    return torch.mul(x, scale, out=target).round_()


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
    probs = _SCRATCH.take("attention_probs", (batch, heads, queries, keys))
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
            p = _symmetric_codes(probs_quantizer, probs[row], scale, probs[row]).to(torch.int8)
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


_M = TypeVar("_M", bound=nn.Module)
INTEGER_CODE_ATTENTION = "dqbart_integer_codes"
AttentionInterface.register(INTEGER_CODE_ATTENTION, integer_code_attention)


def to_integer_code_attention(model: nn.Module) -> None:
    """Point every quantized attention (each has its own config, see swap.py) at `integer_code_attention`."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if hasattr(module, "attention_quantizers") and isinstance(config, PreTrainedConfig) \
                and config._attn_implementation == QUANTIZED_ATTENTION:
            config._attn_implementation = INTEGER_CODE_ATTENTION


class InplaceGelu(nn.Module):
    """Exact GELU written over its input: BART-family layers apply it to fc1's fresh output
    (`activation_fn(fc1(x))`), so no second FFN-sized tensor is allocated (page faults, see `_Scratch`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.gelu_(x)


def to_inplace_gelu(model: nn.Module) -> None:
    """Swap the exact GELU of every `activation_fn(fc1(x))` layer for `InplaceGelu` (same values)."""
    for module in model.modules():
        act = getattr(module, "activation_fn", None)
        if hasattr(module, "fc1") and type(act) is GELUActivation and act.act is F.gelu:
            module.activation_fn = InplaceGelu()


def _int8_eligible(module: nn.Module) -> bool:
    return (
        isinstance(module, QuantLinear)
        and module.weight_quantizer is not None
        and module.activation_quantizer is not None
        and module.activation_quantizer.bits <= _MAX_INT8_BITS
        and module.weight_quantizer.bits <= _MAX_INT8_BITS
        and module.weight_quantizer.group_size is None  # an int8 product takes one scale per output
    )


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def _multiplies_values(module: nn.Module) -> bool:
    """A layer whose reference forward uses its fake-quantized weight values, not its codes."""
    if isinstance(module, QuantEmbedding):
        return True
    return isinstance(module, QuantLinear) and (module.activation_quantizer is None or (
        module.weight_quantizer is not None and module.weight_quantizer.group_size is not None))


def freeze_weights(model: nn.Module, *, half: bool = False) -> nn.Module:
    """Store fake-quantized weights as their quantized values, once (shared tensors once).

    Layers that multiply codes keep their quantizer (their codes are not recoverable from values
    bit for bit), unless the model goes to half precision, where every layer multiplies values.
    """
    chosen = [(m, m.weight_quantizer) for m in model.modules() if isinstance(m, QuantLinear | QuantEmbedding)
              and m.weight_quantizer is not None and (half or _multiplies_values(m))]
    done: set[int] = set()
    for module, quantizer in chosen:
        if id(module.weight) not in done:
            with torch.no_grad():
                quantized = quantizer.quantize(module.weight)
                module.weight.copy_(quantized.values().to(module.weight.dtype))
            done.add(id(module.weight))
    for module, _ in chosen:
        module.weight_quantizer = None
    return model


def to_int8(model: nn.Module) -> int:
    """Swap every eligible QuantLinear for an Int8Linear, in place; returns how many."""
    chosen = [(name, m) for name, m in model.named_modules() if _int8_eligible(m)]
    for name, module in chosen:
        codes = module.weight_quantizer.quantize(module.weight)
        _replace(model, name, Int8Linear(codes, module.bias, module.activation_quantizer))
    return len(chosen)


def _count_float_linears(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if isinstance(m, nn.Linear))


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def optimize_for_inference(model: _M, *, device: str = "auto", form: Form = "auto") -> tuple[_M, RuntimeInfo]:
    """The fastest faithful form of `model` (modified in place) on `device`, and what was chosen."""
    target = resolve_device(device)
    if form == "auto":
        form = "fp16" if target.startswith("cuda") else "int8"
    if form == "int8" and target != "cpu":
        raise ValueError(f"form 'int8' runs on the CPU only, not on {target!r}")
    model.eval()
    int8_layers = to_int8(model) if form == "int8" else 0
    if form == "int8":
        to_integer_code_attention(model)
        to_inplace_gelu(model)
    freeze_weights(model, half=form == "fp16")
    if form == "fp16":
        model.to(device=target, dtype=torch.float16)
    else:
        model.to(target)
    kernel = {"int8": kernel_summary(model), "fp16": "cuda fp16", "reference": "fp32"}[form]
    info = RuntimeInfo(
        device=target,
        form="int8_dynamic" if form == "int8" else form,
        int8_layers=int8_layers,
        float_layers=_count_float_linears(model),
        kernel=kernel,
        threads=torch.get_num_threads(),
    )
    return model, info


def model_bytes(model: nn.Module) -> int:
    """Memory held by the model's tensors (shared ones once) and int8 packed weights."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
    for module in model.modules():
        if isinstance(module, Int8Linear):
            total += module.weight_bytes
    return total
