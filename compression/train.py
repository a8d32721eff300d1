"""The training loop: one function for distillation (with a frozen teacher) and for teacher
fine-tuning (cross-entropy only). Reads top to bottom: schedule, forward/backward with
accumulation, clip, step, log, evaluate, checkpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers import PreTrainedModel, set_seed

from compression.checkpoint import Checkpointer, TrainingState, restore_checkpoint, snapshot
from compression.data import ResumableLoader
from compression.errors import Cancelled
from compression.finite import check_step
from compression.losses import LossResult, distillation_loss, task_loss
from compression.progress import ProgressCallback, ProgressEvent, Stage, no_progress
from compression.recipe import DistillationSpec, TrainingSpec


@dataclass
class Distiller:
    """The frozen teacher and which of its layers each student layer learns from."""

    teacher: PreTrainedModel
    encoder_map: list[int]
    decoder_map: list[int]
    spec: DistillationSpec


@dataclass
class Validation:
    """Scores a model (e.g. beam search + ROUGE); `metric` (higher is better) picks the best state."""

    run: Callable[[PreTrainedModel], dict[str, float]]
    metric: str


@dataclass
class TrainResult:
    steps: int
    best_metrics: dict[str, float] = field(default_factory=dict)


def train(
    model: PreTrainedModel,
    loader: ResumableLoader,
    spec: TrainingSpec,
    *,
    stage: Stage,
    device: torch.device,
    distiller: Distiller | None = None,
    validation: Validation | None = None,
    checkpointer: Checkpointer | None = None,
    resume_from: Path | None = None,
    progress: ProgressCallback = no_progress,
) -> TrainResult:
    """Train `model` in place; at the end it holds the best state by `validation.metric` (if any)."""
    total_steps = spec.max_steps or max(1, spec.epochs * len(loader) // spec.grad_accum)
    model.to(device).train()  # type: ignore[arg-type]  # transformers types its wrapped `to` without self
    if distiller is not None:
        distiller.teacher.to(device).eval().requires_grad_(False)  # type: ignore[arg-type]  # transformers types its wrapped `to` without self
    optimizer = build_optimizer(model, spec)
    scheduler = build_scheduler(optimizer, spec, total_steps)
    state, best_state = TrainingState(loader=replace(loader.position)), None
    if resume_from is not None:
        state, best_state = restore_checkpoint(
            resume_from, model=model, optimizer=optimizer, scheduler=scheduler
        )
        loader.restore(state.loader)
    else:
        set_seed(spec.seed)

    window: dict[str, float] = {}  # loss sums since the last log step
    window_steps = 0
    while state.step < total_steps and not _patience_spent(state, spec):
        epoch = loader.position.epoch
        losses: dict[str, float] = {}
        for _ in range(spec.grad_accum):
            batch = {name: tensor.to(device) for name, tensor in loader.next_batch().items()}
            with autocast(device, spec.precision):
                result = compute_loss(model, batch, distiller)
            (result.total / spec.grad_accum).backward()
            for name, value in result.components.items():
                losses[name] = losses.get(name, 0.0) + value / spec.grad_accum
        check_step(state.step + 1, losses["total"], model, _lr_param(stage))
        if spec.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        epoch_done = loader.position.epoch > epoch

        # Every step reports (progress bars, cancellation); loss components only at log steps, as
        # means over the steps since the previous log: one batch's loss is too noisy to read a trend.
        window_steps += 1
        for name, value in losses.items():
            window[name] = window.get(name, 0.0) + value
        metrics: dict[str, float] = {}
        if state.step % spec.log_every == 0 or state.step in (1, total_steps):
            metrics = {f"loss/{k}": v / window_steps for k, v in window.items()}
            metrics["lr"] = float(scheduler.get_last_lr()[0])
            window, window_steps = {}, 0
        _report(progress, ProgressEvent("metrics", stage, state.step, total_steps, metrics))

        if validation is not None and _due(state.step, spec.eval_every, epoch_done, total_steps):
            scores = validation.run(model)
            if state.best_metric is None or scores[validation.metric] > state.best_metric:
                state.best_metric, state.best_metrics = scores[validation.metric], scores
                state.stale_evals, best_state = 0, snapshot(model)
            else:
                state.stale_evals += 1
            eval_metrics = {f"eval/{k}": v for k, v in scores.items()}
            _report(progress, ProgressEvent("metrics", stage, state.step, total_steps, eval_metrics))

        due = _due(state.step, spec.checkpoint_every, epoch_done, total_steps)
        if checkpointer is not None and (due or _patience_spent(state, spec)):
            state.loader = replace(loader.position)  # a copy: the loader keeps moving
            path = checkpointer.save(
                model=model, optimizer=optimizer, scheduler=scheduler, state=state, best_model=best_state
            )
            event = ProgressEvent("checkpoint", stage, state.step, total_steps, checkpoint=str(path))
            _report(progress, event)

    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(state.step, state.best_metrics)


def compute_loss(
    model: PreTrainedModel, batch: dict[str, torch.Tensor], distiller: Distiller | None
) -> LossResult:
    """The student's CE alone, or CE + distillation from the teacher on the same batch (teacher forcing)."""
    if distiller is None or not distiller.spec.uses_teacher():
        return task_loss(model(**batch))
    # Attentions and hidden states are gathered only for the terms that read them.
    internals = {
        "output_attentions": distiller.spec.attention_weight > 0,
        "output_hidden_states": distiller.spec.hidden > 0,
    }
    with torch.no_grad():
        teacher_out = distiller.teacher(**batch, **internals)
    return distillation_loss(
        model(**batch, **internals),
        teacher_out,
        batch,
        encoder_map=distiller.encoder_map,
        decoder_map=distiller.decoder_map,
        spec=distiller.spec,
    )


def build_optimizer(model: torch.nn.Module, spec: TrainingSpec) -> torch.optim.AdamW:
    """AdamW as the reference code sets it up; no weight decay on biases, LayerNorms and scales (ndim < 2)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": spec.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(0.9, 0.999), eps=1e-6)


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: TrainingSpec, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup_ratio` of the steps, then linear decay to 0."""
    # Not transformers.get_linear_schedule_with_warmup: it starts warmup at lr 0 (step / warmup),
    # ours at lr / warmup ((step + 1) / warmup), and no choice of its arguments gives our factors,
    # so runs and resumed checkpoints would train on a shifted schedule.
    warmup = int(spec.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _patience_spent(state: TrainingState, spec: TrainingSpec) -> bool:
    """Early stopping: `patience` evaluations in a row have not beaten the best one."""
    return spec.patience is not None and state.stale_evals >= spec.patience


def _due(step: int, every: int | None, epoch_done: bool, total_steps: int) -> bool:
    """Every `every` steps, or at each epoch end when `every` is None; always at the last step."""
    return step == total_steps or (step % every == 0 if every else epoch_done)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast where `precision` (TrainingSpec.precision) asks for it; "auto" only on CUDA,
    since a CPU without native bf16 runs it about 4x slower."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _lr_param(stage: Stage) -> str:
    """The recipe field that most likely made a diverging run diverge."""
    return "teacher_training.lr" if stage == "finetuning_teacher" else "training.lr"


def _report(progress: ProgressCallback, event: ProgressEvent) -> None:
    if progress(event):
        raise Cancelled(f"cancelled at step {event.step} of {event.total_steps} ({event.stage})")
