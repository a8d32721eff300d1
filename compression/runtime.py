"""Fast inference forms of a loaded compressed model (the reference path is `artifact.load`).

The reference model recomputes its fake-quantized weights on every forward and runs fp32
matrix products on fake-quantized activations. Here:

- Weights are quantized once: their integer codes and scales are what the reference rounds to,
  so 2-, 4- and 8-bit codes all fit int8 exactly (ternary codes are -1/0/1).
- CPU: each quantized Linear becomes `Int8Linear`, torch's dynamic int8 kernel (fbgemm) fed
  with the activation already on the reference's grid: the input is clipped as the reference
  clips it and one extra row pins the kernel's per-tensor range to +-127.5 steps of the
  reference's step, so the kernel's uint8 codes are the reference's codes plus a zero point.
  The product is then the reference's up to float rounding (platform-notes §2-3: 1.2-2.2x
  faster than fp32 on these CPUs; torchao is far slower, bf16 slow).
- CUDA: fp16 with dequantized weights; activations stay fake-quantized.
- The tied LM head, whose input the reference does not quantize, runs in float with its
  dequantized weight, so the fast path changes no rounding the reference does not do.

The choice is automatic (`form="auto"`) and returned as `RuntimeInfo`.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from compression.modules import ActivationQuantizer, QuantEmbedding, QuantLinear
from compression.quantizers import QuantizedTensor, lsq_step, max_level

Form = Literal["auto", "int8", "fp16", "reference"]
_INT8_ENGINES = ("x86", "fbgemm")
_MAX_INT8_BITS = 8  # the kernel's activation codes are uint8


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
    """A quantized Linear on fbgemm's dynamic int8 kernel, faithful to `QuantLinear`'s rounding."""

    def __init__(self, codes: QuantizedTensor, bias: torch.Tensor | None, act: ActivationQuantizer) -> None:
        super().__init__()
        self.out_features, self.in_features = codes.codes.shape
        self.act_bits = act.bits
        self.clip_val = act.clip_val
        # A learned activation step is fixed at inference; the symmetric one follows the data.
        self.fixed_step = None if act.step is None else float(lsq_step(act.step.detach()))
        weight = _int8_weight(codes)
        float_bias = None if bias is None else bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(weight, float_bias)
        self.weight_bytes = weight.numel() + (weight.q_per_channel_scales().numel() * 8
                                              if weight.qscheme() == torch.per_channel_affine else 8)
        self.bias_bytes = 0 if bias is None else bias.numel() * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        count, levels = rows.shape[0], max_level(self.act_bits)
        if self.fixed_step is None:
            low, high = torch.aminmax(rows)
            step = torch.maximum(-low, high).clamp(max=self.clip_val) / levels
            limit = self.clip_val
        else:
            step, limit = torch.tensor(self.fixed_step), levels * self.fixed_step
        # The clipped input and one more row: the kernel maps [min, max] onto 0..255, and a range
        # of +-127.5 steps puts its grid on ours.
        padded = rows.new_empty((count + 1, self.in_features))
        torch.clamp(rows, -limit, limit, out=padded[:count])
        padded[count].zero_()
        padded[count, 0], padded[count, -1] = step * 127.5, step * -127.5
        out = torch.ops.quantized.linear_dynamic(padded, self._packed, False)
        return out[:count].reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, act_bits={self.act_bits}"


def _int8_weight(codes: QuantizedTensor) -> torch.Tensor:
    """The codes as a qint8 tensor whose dequantized values are the reference's weight."""
    step = 1.0 / codes.scale if codes.scheme == "symmetric" else codes.scale
    step = step.detach().double().reshape(-1)
    ints = codes.codes.to(torch.int8)
    # torch 2.13 warns that qint8 tensor creation will go (pytorch issue 184982); torch is pinned.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        if step.numel() == 1:
            return torch._make_per_tensor_quantized_tensor(ints, float(step), 0)
        zero_points = torch.zeros(step.numel(), dtype=torch.long)
        return torch._make_per_channel_quantized_tensor(ints, step, zero_points, 0)


def int8_available() -> bool:
    return torch.backends.quantized.engine in _INT8_ENGINES


def _int8_eligible(module: nn.Module) -> bool:
    return (
        isinstance(module, QuantLinear)
        and module.weight_quantizer is not None
        and module.activation_quantizer is not None
        and module.activation_quantizer.bits <= _MAX_INT8_BITS
        and module.weight_quantizer.bits <= _MAX_INT8_BITS
    )


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def freeze_weights(model: nn.Module) -> nn.Module:
    """Store every fake-quantized weight as its quantized values, once (shared tensors once)."""
    done: set[int] = set()
    for module in model.modules():
        quantizer = getattr(module, "weight_quantizer", None)
        if not isinstance(module, (QuantLinear, QuantEmbedding)) or quantizer is None:
            continue
        if id(module.weight) not in done:
            with torch.no_grad():
                module.weight.copy_(quantizer.quantize(module.weight).values().to(module.weight.dtype))
            done.add(id(module.weight))
    for module in model.modules():
        if isinstance(module, (QuantLinear, QuantEmbedding)):
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


def optimize_for_inference(model: nn.Module, *, device: str = "auto",
                           form: Form = "auto") -> tuple[nn.Module, RuntimeInfo]:
    """The fastest faithful form of `model` (modified in place) on `device`, and what was chosen."""
    target = resolve_device(device)
    if form == "auto":
        form = "fp16" if target.startswith("cuda") else ("int8" if int8_available() else "reference")
    if form == "int8" and target != "cpu":
        raise ValueError(f"form 'int8' runs on the CPU only, not on {target!r}")
    model.eval()
    int8_layers = to_int8(model) if form == "int8" else 0
    freeze_weights(model)
    if form == "fp16":
        model.to(device=target, dtype=torch.float16)
    else:
        model.to(target)
    kernel = {"int8": "fbgemm linear_dynamic", "fp16": "cuda fp16", "reference": "fp32"}[form]
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
            total += module.weight_bytes + module.bias_bytes
    return total
