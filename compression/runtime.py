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
- CPU attention (`integer_code_attention`): the reference's codes of Q, K, V and the
  probabilities, multiplied as integers (int8 kernels for an encoder, integer-valued fp32 for a
  decoding step) and scaled once per product, in fewer passes over the scores; the
  cross-attention's codes are computed once per generate call instead of once per step.
- CPU memory: large per-call buffers (Int8Linear's input, the attention probabilities) are
  reused per thread and GELU runs in place, because a fresh large tensor pays page faults that
  cost more than the work on it on these hosts. The inference thread thus keeps its largest
  buffers (about 300 MB after a batch of 16 x 512 tokens on the bart-base shape).

The choice is automatic (`form="auto"`) and returned as `RuntimeInfo`.
"""

from __future__ import annotations

import math
import threading
import warnings
import weakref
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import GELUActivation
from transformers.modeling_utils import AttentionInterface

from compression.modules import (
    QUANTIZED_ATTENTION,
    ActivationQuantizer,
    AttentionQuantizers,
    QuantEmbedding,
    QuantLinear,
    quantized_eager_attention,
)
from compression.quantizers import QuantizedTensor, lsq_step, max_level, quantize_tensor, symmetric_scale

Form = Literal["auto", "int8", "fp16", "reference"]
_INT8_ENGINES = ("x86", "fbgemm")
_MAX_INT8_BITS = 8  # the kernel's activation codes are uint8


class _Scratch(threading.local):
    """Float buffers of the calling thread, reused by name. A fresh large tensor pays a page fault
    per 4 KiB on first touch, several times the cost of filling it here (a 9.6 MB input: 2.7 ms
    fresh, 0.3 ms reused), so the inference thread keeps its largest ones."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A (count, ...) float view of the buffer `name`, valid until the next take of that name."""
        numel = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < numel:
            with torch.inference_mode(False):  # an inference tensor could not be written outside that mode
                buffer = torch.empty(numel)
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
    """A quantized Linear on fbgemm's dynamic int8 kernel, faithful to `QuantLinear`'s rounding."""

    def __init__(self, codes: QuantizedTensor, bias: torch.Tensor | None, act: ActivationQuantizer) -> None:
        super().__init__()
        self.out_features, self.in_features = codes.codes.shape
        self.act_bits = act.bits
        self.levels = max_level(act.bits)
        self.clip_val = act.clip_val
        marker = torch.zeros(self.in_features)
        marker[0], marker[-1] = 127.5, -127.5
        self.register_buffer("_marker", marker, persistent=False)
        # A learned activation step is fixed at inference; the symmetric one follows the data.
        self.fixed_step = None if act.step is None else float(lsq_step(act.step.detach()))
        weight = _int8_weight(codes)
        float_bias = None if bias is None else bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(weight, float_bias)
        self.weight_bytes = weight.numel() + (weight.q_per_channel_scales().numel() * 8
                                              if weight.qscheme() == torch.per_channel_affine else 8)
        self.bias_bytes = 0 if bias is None else bias.numel() * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Few small ops per call: at 16 rows per decoding step they cost as much as the product.
        rows = x.reshape(-1, self.in_features).float()
        count = rows.shape[0]
        if self.fixed_step is None:
            low, high = torch.aminmax(rows)
            peak = max(-float(low), float(high))
            step = min(peak, self.clip_val) / self.levels
            limit = self.clip_val if peak > self.clip_val else None  # no clamp needed below the clip
        else:
            step, limit = self.fixed_step, self.levels * self.fixed_step
        # The clipped input and one more row: the kernel maps [min, max] onto 0..255, and a range
        # of +-127.5 steps (the marker row) puts its grid on ours.
        padded = _SCRATCH.take("linear_input", (count + 1, self.in_features))
        if limit is None:
            padded[:count].copy_(rows)
        else:
            torch.clamp(rows, -limit, limit, out=padded[:count])
        torch.mul(self._marker, step, out=padded[count])
        out = torch.ops.quantized.linear_dynamic(padded, self._packed, False)
        return out[:count].reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, act_bits={self.act_bits}"


def activation_codes(quantizer: ActivationQuantizer, x: torch.Tensor,
                     owned: bool = False) -> tuple[torch.Tensor, float]:
    """The reference's codes of `x` (integer-valued floats) and the step that makes them its values.

    `owned`: `x` is the caller's temporary and may be overwritten (one pass and one tensor fewer).
    """
    bits, clip = quantizer.bits, quantizer.clip_val
    if quantizer.step is not None:  # LSQ, as lsq_codes rounds
        return _lsq_codes(quantizer, x if owned else x.clone()), float(lsq_step(quantizer.step.detach()))
    if bits == 2:  # ternary activations: rare, the general path
        quantized = quantize_tensor(x, bits, "per_tensor", clip)
        return quantized.codes.to(x.dtype), float(quantized.scale)
    scale = symmetric_scale(x, bits, clip, per_row=False)
    return _symmetric_codes(quantizer, x, scale, owned), 1.0 / float(scale)


def _lsq_codes(quantizer: ActivationQuantizer, x: torch.Tensor) -> torch.Tensor:
    """lsq_codes, in place."""
    level = max_level(quantizer.bits)
    return x.div_(lsq_step(quantizer.step.detach())).clamp_(-level, level).round_()


def _symmetric_codes(quantizer: ActivationQuantizer, x: torch.Tensor, scale: torch.Tensor,
                     owned: bool) -> torch.Tensor:
    """symmetric_codes at a given scale, without the clamp where it cannot change anything."""
    clip = quantizer.clip_val
    # The range reaches the clip exactly when the scale is levels / clip; clamping a little more
    # often than that changes nothing.
    if float(scale) * clip <= max_level(quantizer.bits) * (1 + 1e-6):
        x = x.clamp_(-clip, clip) if owned else x.clamp(-clip, clip)
    elif not owned:
        return x.mul(scale).round_()
    return x.mul_(scale).round_()


def _cached_codes(module: nn.Module, name: str, quantizer: ActivationQuantizer,
                  x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Codes of a key or value tensor; a tensor that comes back (the cross-attention's, at every
    decoding step) is quantized once. An entry lives as long as its tensor."""
    cache: dict[str, tuple[weakref.ref[torch.Tensor], torch.Tensor, float]] = module.__dict__.setdefault(
        "_code_cache", {})
    entry = cache.get(name)
    if entry is not None and entry[0]() is x:
        return entry[1], entry[2]
    codes, step = activation_codes(quantizer, x)

    def forget(ref: weakref.ref[torch.Tensor]) -> None:
        if name in cache and cache[name][0] is ref:
            del cache[name]

    cache[name] = (weakref.ref(x, forget), codes, step)
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
    quantizers: AttentionQuantizers = module.attention_quantizers
    if quantizers.query is None or module.training or query.dtype != torch.float32 or _unset(quantizers):
        return quantized_eager_attention(module, query, key, value, attention_mask, scaling, dropout,
                                         **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if query.shape[2] >= INT8_ATTENTION_MIN_QUERIES and quantizers.probs.bits > 2:
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


def _int8_attention(quantizers: AttentionQuantizers, query: torch.Tensor, key: torch.Tensor,
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
        scale = symmetric_scale(peak.reshape(1), probs_quantizer.bits, probs_quantizer.clip_val, False)
        p_step = 1.0 / float(scale)
    else:
        p_step = float(lsq_step(probs_quantizer.step.detach()))
    output = query.new_empty((batch, queries, heads, head_dim))
    products = torch.empty((heads, queries, head_dim), dtype=torch.int32)
    for row in range(batch):
        if probs_quantizer.step is None:
            p = _symmetric_codes(probs_quantizer, probs[row], scale, owned=True).to(torch.int8)
        else:
            p = _lsq_codes(probs_quantizer, probs[row]).to(torch.int8)
        for head in range(heads):
            torch._int_mm(p[head], v[row, head], out=products[head])
        output[row].copy_(products.transpose(0, 1)).mul_(p_step * v_step)
    return output


def _unset(quantizers: AttentionQuantizers) -> bool:
    """A learned step not yet set from data: the reference sets it on its first call."""
    return any(q.step is not None and not bool(q.initialized)
               for q in (quantizers.query, quantizers.key, quantizers.value, quantizers.probs))


def _int8(codes: tuple[torch.Tensor, float]) -> tuple[torch.Tensor, float]:
    return codes[0].to(torch.int8), codes[1]


INTEGER_CODE_ATTENTION = "dqbart_integer_codes"
AttentionInterface.register(INTEGER_CODE_ATTENTION, integer_code_attention)


def to_integer_code_attention(model: nn.Module) -> None:
    """Point every quantized attention (each has its own config, see swap.py) at `integer_code_attention`."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if hasattr(module, "attention_quantizers") and config._attn_implementation == QUANTIZED_ATTENTION:
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
    if form == "int8":
        to_integer_code_attention(model)
        to_inplace_gelu(model)
    freeze_weights(model)
    if form == "fp16":
        model.to(device=target, dtype=torch.float16)
    else:
        model.to(target)
    kernel = {"int8": "fbgemm linear_dynamic, integer-code attention", "fp16": "cuda fp16",
              "reference": "fp32"}[form]
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
