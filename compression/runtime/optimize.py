"""`optimize_for_inference`: the fastest faithful form of a loaded model, and what was chosen."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import GELUActivation

from compression.modules import (
    QuantEmbedding,
    QuantLinear,
)
from compression.runtime.attention import to_integer_code_attention
from compression.runtime.linear import Int8Linear, kernel_summary, to_int8

Form = Literal["auto", "int8", "fp16", "reference"]


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


def _count_float_linears(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if isinstance(m, nn.Linear))


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


_M = TypeVar("_M", bound=nn.Module)


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
