"""The training loop: resume equivalence, cancellation, schedule, and that it learns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedTokenizerBase

from compression.checkpoint import Checkpointer
from compression.data import Record, ResumableLoader, tokenize
from compression.errors import Cancelled
from compression.progress import ProgressEvent
from compression.recipe import DistillationSpec, QuantizationSpec, StudentSpec, TrainingSpec
from compression.student import build_student
from compression.swap import quantize_model
from compression.train import (
    Distiller,
    Validation,
    autocast,
    build_optimizer,
    build_scheduler,
    compute_loss,
    train,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(tiny_teacher_dir))


def _loader(
    records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, n: int, batch_size: int, seed: int = 5
) -> ResumableLoader:
    examples = tokenize([Record(r["document"], r["summary"]) for r in records[:n]], tokenizer, 48, 16)
    return ResumableLoader(examples, batch_size, tokenizer.pad_token_id, seed)


def _teacher_and_student(teacher_dir: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A 2-1 student from decoder layer 1, 4-bit with learned steps (so the checkpoint holds them)."""
    teacher = AutoModelForSeq2SeqLM.from_pretrained(str(teacher_dir), attn_implementation="eager")
    student, _ = build_student(teacher, StudentSpec(decoder_layers=[1]))
    quantize_model(student, QuantizationSpec(weight_bits=4, embedding_bits=4, learned_scale=True))
    return teacher, student


class Recorder:
    """Collects per-step total losses; optionally asks to stop after a given checkpoint step."""

    def __init__(self, stop_after_checkpoint: int | None = None) -> None:
        self.losses: dict[int, float] = {}
        self.events: list[ProgressEvent] = []
        self.stop_after_checkpoint = stop_after_checkpoint

    def __call__(self, event: ProgressEvent) -> bool:
        self.events.append(event)
        if "loss/total" in event.metrics:
            self.losses[event.step] = event.metrics["loss/total"]
        return event.kind == "checkpoint" and event.step == self.stop_after_checkpoint


def _distill_run(
    teacher_dir: Path,
    records: list[dict[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    checkpoint_dir: Path,
    recorder: Recorder,
    resume_from: Path | None = None,
) -> torch.nn.Module:
    teacher, student = _teacher_and_student(teacher_dir)
    spec = TrainingSpec(
        max_steps=6,
        lr=1e-3,
        batch_size=4,
        grad_accum=2,
        warmup_ratio=0.2,
        log_every=1,
        eval_every=2,
        checkpoint_every=3,
        seed=3,
    )
    distiller = Distiller(teacher, [0, 1], [1], DistillationSpec())
    # A deterministic stand-in score that changes with the weights, so "best" moves around.
    validation = Validation(lambda m: {"score": -(m.lm_head.weight.sum().item() % 1.0)}, "score")
    metadata = {"layer_map": {"encoder": [0, 1], "decoder": [1]}}
    checkpointer = Checkpointer(checkpoint_dir, "distilling", metadata)
    train(
        student,
        _loader(records, tokenizer, 24, 4),
        spec,
        stage="distilling",
        device=CPU,
        distiller=distiller,
        validation=validation,
        checkpointer=checkpointer,
        resume_from=resume_from,
        progress=recorder,
    )
    return student


def test_resumed_run_matches_an_uninterrupted_run(
    tiny_teacher_dir: Path,
    sample_records: list[dict[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    tmp_path: Path,
) -> None:
    straight = Recorder()
    reference = _distill_run(tiny_teacher_dir, sample_records, tokenizer, tmp_path / "a", straight)

    stopped = Recorder(stop_after_checkpoint=3)
    with pytest.raises(Cancelled):
        _distill_run(tiny_teacher_dir, sample_records, tokenizer, tmp_path / "b", stopped)
    resumed = Recorder()
    model = _distill_run(
        tiny_teacher_dir,
        sample_records,
        tokenizer,
        tmp_path / "b",
        resumed,
        resume_from=tmp_path / "b" / "distilling-step-000003",
    )

    assert sorted(stopped.losses) == [1, 2, 3] and sorted(resumed.losses) == [4, 5, 6]
    stored = load_file(str(tmp_path / "b" / "distilling-step-000003" / "model.safetensors"))
    assert any(name.endswith("weight_quantizer.step") for name in stored)  # learned steps are saved
    torch.testing.assert_close(
        torch.tensor([*stopped.losses.values(), *resumed.losses.values()]),
        torch.tensor([straight.losses[s] for s in range(1, 7)]),
        rtol=0,
        atol=0,
    )
    for (name, want), got in zip(reference.state_dict().items(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)


def test_callback_returning_true_stops_within_one_step(
    tiny_teacher_dir: Path, sample_records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase
) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    steps: list[int] = []

    def stop_at_two(event: ProgressEvent) -> bool:
        steps.append(event.step)
        return event.step == 2

    with pytest.raises(Cancelled, match="step 2 of 50"):
        train(
            model,
            _loader(sample_records, tokenizer, 8, 4),
            TrainingSpec(max_steps=50),
            stage="distilling",
            device=CPU,
            progress=stop_at_two,
        )
    assert max(steps) == 2


def test_task_loss_falls_on_real_data(
    tiny_teacher_dir: Path, sample_records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase
) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    recorder = Recorder()
    spec = TrainingSpec(max_steps=30, lr=3e-3, batch_size=8, warmup_ratio=0.1, log_every=1)
    train(
        model,
        _loader(sample_records, tokenizer, 64, 8),
        spec,
        stage="finetuning_teacher",
        device=CPU,
        progress=recorder,
    )
    losses = [recorder.losses[s] for s in range(1, 31)]
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5


def test_a_logged_loss_is_the_mean_over_the_steps_since_the_previous_log(
    tiny_teacher_dir: Path, sample_records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase
) -> None:
    logged: dict[int, dict[int, float]] = {}
    for log_every in (1, 5):
        model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
        recorder = Recorder()
        spec = TrainingSpec(max_steps=10, lr=1e-3, batch_size=4, log_every=log_every, seed=5)
        train(model, _loader(sample_records, tokenizer, 40, 4), spec, stage="finetuning_teacher",
              device=CPU, progress=recorder)
        logged[log_every] = recorder.losses
    every_step = logged[1]
    assert sorted(logged[5]) == [1, 5, 10]
    assert logged[5][1] == pytest.approx(every_step[1])
    assert logged[5][5] == pytest.approx(sum(every_step[s] for s in range(2, 6)) / 4)
    assert logged[5][10] == pytest.approx(sum(every_step[s] for s in range(6, 11)) / 5)


def test_schedule_warms_up_then_decays_to_zero() -> None:
    model = torch.nn.Linear(2, 2)
    spec = TrainingSpec(lr=1.0, warmup_ratio=0.2)
    optimizer = build_optimizer(model, spec)
    scheduler = build_scheduler(optimizer, spec, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0 * 8 / 8])
    assert lrs[-1] == pytest.approx(1 / 8) and scheduler.get_last_lr()[0] == 0.0


def test_biases_and_layernorms_get_no_weight_decay() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    decayed, plain = build_optimizer(model, TrainingSpec(weight_decay=0.1)).param_groups
    assert [p.shape for p in decayed["params"]] == [torch.Size([2, 2])]
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0 and len(plain["params"]) == 3


def test_training_stops_after_patience_evaluations_without_a_better_metric(
    tiny_teacher_dir: Path,
    sample_records: list[dict[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    tmp_path: Path,
) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    scores = iter([3.0, 5.0, 4.0, 5.0, 9.0, 9.0])  # best at the 2nd evaluation, then two stale ones
    validation = Validation(lambda _: {"score": next(scores)}, "score")
    spec = TrainingSpec(max_steps=12, batch_size=4, eval_every=2, patience=2, checkpoint_every=100)
    checkpointer = Checkpointer(tmp_path, "run", {})
    result = train(
        model, _loader(sample_records, tokenizer, 16, 4), spec, stage="finetuning_teacher", device=CPU,
        validation=validation, checkpointer=checkpointer,
    )
    assert result.steps == 8 and result.best_metrics == {"score": 5.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-step-000008"]


class _RefusesToRun(torch.nn.Module):
    def forward(self, **_: torch.Tensor) -> None:
        raise AssertionError("the teacher was run")


def test_teacher_is_not_run_when_every_distillation_weight_is_zero(
    tiny_teacher_dir: Path, sample_records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase
) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    batch = _loader(sample_records, tokenizer, 8, 4).next_batch()
    distiller = Distiller(_RefusesToRun(), [0, 1], [0, 1], DistillationSpec(logits=0, hidden=0))
    assert set(compute_loss(model, batch, distiller).components) == {"task", "total"}


@pytest.mark.parametrize(("precision", "dtype"), [("auto", torch.float32), ("fp32", torch.float32),
                                                  ("bf16", torch.bfloat16)])
def test_precision_decides_the_dtype_of_the_forward_pass_on_cpu(precision: str, dtype: torch.dtype) -> None:
    layer = torch.nn.Linear(4, 4)
    with autocast(CPU, precision):
        assert layer(torch.ones(2, 4)).dtype == dtype


def test_a_bf16_training_run_keeps_fp32_weights_and_finite_losses(
    tiny_teacher_dir: Path, sample_records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase
) -> None:
    teacher, student = _teacher_and_student(tiny_teacher_dir)
    recorder = Recorder()
    spec = TrainingSpec(max_steps=3, lr=1e-3, batch_size=4, log_every=1, precision="bf16")
    distiller = Distiller(teacher, [0, 1], [1], DistillationSpec())
    train(student, _loader(sample_records, tokenizer, 12, 4), spec, stage="distilling", device=CPU,
          distiller=distiller, progress=recorder)
    assert len(recorder.losses) == 3
    assert all(torch.isfinite(torch.tensor(v)) for v in recorder.losses.values())
    assert {p.dtype for p in student.parameters()} == {torch.float32}
