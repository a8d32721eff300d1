"""The int8 Linear: `QuantLinear`'s output, bit for bit, on the kernel chosen per row regime."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from compression.modules import (
    ActivationQuantizer,
    QuantLinear,
)
from compression.quantizers import (
    QuantizedTensor,
    code_step,
)
from compression.runtime import kernels
from compression.runtime.codes import activation_codes
from compression.runtime.kernels import (
    FEW_ROWS,
    INT8_KERNELS,
    ROW_REGIMES,
    LinearKernel,
    int8_sums_are_exact,
    kernel_is_exact,
    kernel_is_usable,
    kernel_sums,
    pack_exact,
    row_regime,
)
from compression.runtime.scratch import SCRATCH

_MAX_INT8_BITS = 8  # codes up to +-127 fit the kernel's int8


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
        # Looked up on the module at each call, so that a test can choose the kernels.
        self.kernels: dict[int, LinearKernel] = {
            low: kernel or kernels.fastest_kernel(low, self.in_features, self.out_features)
            for low in ROW_REGIMES}
        ints = codes.codes.to(torch.int8)
        self._packed = {k: pack_exact(k, ints) for k in set(self.kernels.values())}
        self.weight_bytes = sum(ints.numel() * (4 if k == "fp32" else 1) + (r.bytes if r else 0)
                                for k, (_, r) in self._packed.items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        # A reused buffer: a fresh tensor per call pays page faults (see `_Scratch`).
        padded = SCRATCH.take("linear_input", (rows.shape[0] + 1, self.in_features))
        _, step = activation_codes(self.activation_quantizer, rows, out=padded[:-1])
        kernel = self.kernels[row_regime(rows.shape[0])]
        packed, residual = self._packed[kernel]
        # The residual's products before `kernel_sums` overwrites the codes.
        rest = None if residual is None else (residual.outputs, residual.products(padded[:-1]))
        out = kernel_sums(kernel, padded, packed, self.out_features)
        if rest is not None:
            out.index_add_(1, *rest)
        out.mul_(self.weight_step * step)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"act_bits={self.activation_quantizer.bits}, kernels={self.kernels}")


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


def to_int8(model: nn.Module) -> int:
    """Swap every eligible QuantLinear for an Int8Linear, in place; returns how many."""
    chosen = [(name, m) for name, m in model.named_modules() if _int8_eligible(m)]
    for name, module in chosen:
        codes = module.weight_quantizer.quantize(module.weight)
        _replace(model, name, Int8Linear(codes, module.bias, module.activation_quantizer))
    return len(chosen)
