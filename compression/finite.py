"""Non-finite numbers stop where they first appear: in a training step, in the tensors being
packed, and in the tensors being loaded. NaN weights otherwise travel silently all the way to a
`succeeded` job that serves garbage."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from compression.errors import ModelError, TrainingDiverged


def first_nonfinite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or an infinity, else None."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def require_finite(tensors: Mapping[str, torch.Tensor], param: str, what: str) -> None:
    """Raise ModelError(param) naming the first tensor of `what` that is not all finite."""
    name = first_nonfinite(tensors)
    if name is not None:
        raise ModelError(param, f"{what}: the tensor {name!r} holds NaN or infinite values")


def check_step(step: int, loss: float, model: torch.nn.Module, lr_param: str) -> None:
    """Raise TrainingDiverged at the first step whose loss or gradients are not finite: from there
    on every update writes NaN into the weights."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if math.isfinite(loss) and (not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))):
        return
    what = f"the loss is {loss}" if not math.isfinite(loss) else "the gradients are not finite"
    raise TrainingDiverged(lr_param, f"training diverged at step {step} ({what}); a smaller {lr_param} "
                                     "(or smaller distillation weights) usually keeps it finite")
