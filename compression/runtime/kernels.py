"""Integer kernels for a quantized Linear: the exact sums of code products on each, their
startup probes, and the choice of the fastest exact one per layer shape and row regime."""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from compression.runtime.scratch import SCRATCH

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


def kernel_sums(kernel: LinearKernel, padded: torch.Tensor, packed: torch.Tensor,
          out_features: int) -> torch.Tensor:
    """codes @ weight_codes^T as fp32, for the codes in all rows of `padded` but its last (a spare
    row for fbgemm's marker; the codes may be overwritten)."""
    codes = padded[:-1]
    if kernel == "onednn":
        ints = SCRATCH.take("linear_codes_u8", tuple(codes.shape), torch.uint8)
        ints.copy_(codes.add_(128))
        ones, zeros = _unit_scales(out_features)
        return torch.ops.onednn.qlinear_pointwise(ints, 1.0, 128, packed, ones, zeros, None, 1.0, 0,
                                                  torch.float32, "none", [], "")
    if kernel == "fbgemm":
        padded[-1].zero_()
        padded[-1, 0], padded[-1, -1] = 127.5, -127.5
        return torch.ops.quantized.linear_dynamic(padded, packed, False)[:-1]
    if kernel == "int_mm":
        ints = SCRATCH.take("linear_codes", tuple(codes.shape), torch.int8)
        ints.copy_(codes)
        products = SCRATCH.take("linear_products", (codes.shape[0], packed.shape[0]), torch.int32)
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


def pack_exact(kernel: LinearKernel, codes: torch.Tensor) -> tuple[torch.Tensor, Residual | None]:
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
    sums = kernel_sums(kernel, padded.clone(), _pack(kernel, main), weight.shape[0])
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
    """Each kernel's fastest `kernel_sums` call over `PROBE_ROUNDS` rounds that call every kernel once
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
                kernel_sums(kernel, codes, packed[kernel], weight.shape[0])
                if round_:
                    best[kernel] = min(best[kernel], time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return best
