"""The stages of a compression run, in order: preparing -> finetuning_teacher (optional) ->
distilling -> evaluating -> packing. `compress` makes an artifact; `finetune` only trains a
teacher (cross-entropy) and saves it as a plain Hugging Face directory."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from compression.artifact import footprint, pack, write_report
from compression.cache import cache_root, digest, lock, read_json, write_json
from compression.checkpoint import Checkpointer, read_metadata
from compression.ct2 import FAITHFULNESS_RECORDS, faithfulness
from compression.data import Record, ResumableLoader, Splits, load_splits, tokenize
from compression.errors import Cancelled, RecipeError, UserInputError
from compression.evaluate import TASK_METRIC, evaluate_model, generate, input_dependence
from compression.gate import judge
from compression.layer_map import LayerMap
from compression.progress import ProgressCallback, ProgressEvent, Stage, no_progress
from compression.recipe import QuantizationSpec, Recipe, StudentSpec, TeacherSpec, TrainingSpec
from compression.runtime import resolve_device
from compression.sequence_targets import teacher_targets, with_teacher_targets
from compression.student import build_student
from compression.swap import quantize_model
from compression.teacher import load_teacher, teacher_fingerprint
from compression.tokenizer import token_id
from compression.train import Distiller, TrainResult, Validation, train

FULL_PRECISION = 32
LATENCY_BATCH = 8  # validation sources decoded together for the latency figure
EXAMPLES = 3  # validation records shown with teacher and student outputs in the report
TEACHER_DIR = "teacher"  # the fine-tuned teacher, inside the checkpoint directory
INPUT_CHECK_RECORDS = 64  # validation pairs in the teacher's matched-vs-shuffled loss check


@dataclass
class CompressResult:
    artifact_dir: Path
    report: dict[str, Any]
    best_metrics: dict[str, float]


@dataclass
class _Run:
    """What every stage of one run shares."""

    recipe: Recipe
    device: torch.device
    progress: ProgressCallback
    checkpoint_dir: Path
    tokenizer: PreTrainedTokenizerBase
    splits: Splits
    resume_from: Path | None
    resume_meta: dict[str, Any] | None
    max_positions: int  # the model's longest sequence; longer recipe limits are cut to it

    def stage(self, stage: Stage, message: str) -> None:
        self.progress(ProgressEvent("stage", stage, message=message))

    def resumes(self, stage: Stage) -> Path | None:
        """The checkpoint to resume `stage` from, if the run resumes inside that stage."""
        return self.resume_from if self.resume_meta and self.resume_meta["stage"] == stage else None

    def resumed(self, key: str) -> Any:
        """A value from the metadata of the checkpoint the run resumes from."""
        assert self.resume_meta is not None, "the run does not resume"
        return self.resume_meta[key]

    def loader(self, spec: TrainingSpec, records: Sequence[Record] | None = None) -> ResumableLoader:
        """Batches of `records` (default: the train split) under the spec's length limits."""
        limits = (
            min(spec.max_source_length, self.max_positions),
            min(spec.max_target_length, self.max_positions),
        )
        examples = tokenize(self.splits.train if records is None else records, self.tokenizer, *limits)
        return ResumableLoader(
            examples, spec.batch_size, self.tokenizer.pad_token_id, spec.seed,
            bucket_by_length=spec.length_bucketing,
        )

    def evaluate(self, model: PreTrainedModel, records: Sequence[Record] | None = None) -> dict[str, float]:
        """Scores on `records` (default: the whole validation split)."""
        return evaluate_model(
            model,
            self.tokenizer,
            self.splits.validation if records is None else records,
            self.recipe.task,
            self.recipe.evaluation,
            forced_bos_token_id=self.forced_bos_token_id(),
            max_source_length=self.source_length(),
        )

    def selection_records(self) -> list[Record]:
        """The validation records that pick the best state during training."""
        return self.splits.validation[: self.recipe.evaluation.selection_samples]

    def selects_on_a_subset(self) -> bool:
        return len(self.selection_records()) < len(self.splits.validation)

    def validation(self) -> Validation:
        return Validation(lambda model: self.evaluate(model, self.selection_records()),
                          TASK_METRIC[self.recipe.task])

    def final_scores(self, model: PreTrainedModel, best: dict[str, float]) -> dict[str, float]:
        """The best state's scores on the whole split (`best` already holds them unless training
        selected on a subset)."""
        return best if best and not self.selects_on_a_subset() else self.evaluate(model)

    def teacher_scores(self, teacher: PreTrainedModel) -> tuple[dict[str, float], str]:
        """The teacher's scores, computed once per (weights, split, settings) across runs, and where
        they came from: "cache" or "evaluated"."""
        records = self.splits.validation
        settings = {"task": self.recipe.task, "evaluation": self.recipe.evaluation.model_dump(),
                    "max_source_length": self.source_length(), "forced_bos": self.forced_bos_token_id()}
        texts = [text for r in records for text in (r.source, r.target)]
        path = cache_root() / "teacher-scores" / f"{digest(teacher, texts, settings)}.json"
        with lock(path):
            cached = read_json(path)
            if isinstance(cached, dict):
                return cached, "cache"
            scores = self.evaluate(teacher)
            write_json(path, scores)
        return scores, "evaluated"

    def forced_bos_token_id(self) -> int | None:
        # mBART starts its output with the target language code.
        return token_id(self.tokenizer, self.recipe.tgt_lang) if self.recipe.tgt_lang else None

    def source_length(self) -> int:
        return min(self.recipe.training.max_source_length, self.max_positions)

    def checkpointer(self, stage: Stage, **metadata: Any) -> Checkpointer:
        return Checkpointer(
            self.checkpoint_dir, stage, {"stage": stage, "recipe": self.recipe.to_dict(), **metadata}
        )


def compress(
    recipe: Recipe,
    out_dir: Path,
    *,
    device: str = "auto",
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    progress: ProgressCallback | None = None,
    teacher_metrics: dict[str, float] | None = None,
) -> CompressResult:
    """Distill and quantize the recipe's teacher into an artifact directory `out_dir`.
    `teacher_metrics`: the teacher's scores on this recipe's validation split and evaluation
    settings, already known (a sweep's children share them); None scores the teacher."""
    if recipe.method == "finetune":
        raise RecipeError("method", "'finetune' trains the teacher alone: run finetune(), not compress()")
    out_dir = Path(out_dir)
    run, teacher = _prepare(recipe, out_dir, device, checkpoint_dir, resume_from, progress or no_progress)
    teacher, teacher_dir = _finetune_teacher(run, teacher)
    student, layer_map, trained = _distill(run, teacher, teacher_dir)

    run.stage("evaluating", f"scoring teacher and student on {len(run.splits.validation)} validation records")
    teacher_metrics, source = (teacher_metrics, "given") if teacher_metrics else run.teacher_scores(teacher)
    student_metrics = run.final_scores(student, trained.best_metrics)
    latency = _latency({"teacher": teacher, "student": student}, run)
    examples = _examples({"teacher": teacher, "student": student}, run)

    run.stage("packing", f"writing the artifact to {out_dir}")
    identity = _teacher_identity(recipe.teacher, teacher_dir)
    report = {
        "method": recipe.method,
        "task": recipe.task,
        "teacher_metrics": teacher_metrics,
        "teacher_metrics_source": source,  # given | cache | evaluated
        "student_metrics": student_metrics,
        "layer_map": layer_map.to_dict(),
        "training_steps": trained.steps,
        "latency": latency,
        "examples": examples,
    }
    if recipe.gate is not None:
        report["quality_gate"] = judge(recipe.gate, teacher_metrics, student_metrics).to_dict()

    def write(tmp: Path) -> None:
        pack(
            student,
            run.tokenizer,
            tmp,
            spec=effective_quantization(recipe),
            layer_map=layer_map,
            recipe=recipe.to_dict(),
            teacher_identity=identity,
        )
        report.update(footprint(teacher, tmp))
        # The service's default engine, checked against the reference path before it serves it.
        check = faithfulness(tmp, run.splits.validation[:FAITHFULNESS_RECORDS], recipe.task,
                             recipe.evaluation, max_source_length=run.source_length(),
                             tgt_lang=recipe.tgt_lang, threads=torch.get_num_threads())
        report["engines"] = {"ctranslate2": check}
        write_report(tmp, report)

    _replace_dir(out_dir, write)
    return CompressResult(out_dir, report, student_metrics)


def finetune(
    recipe: Recipe,
    out_dir: Path,
    *,
    device: str = "auto",
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    progress: ProgressCallback | None = None,
) -> CompressResult:
    """Train the teacher alone (cross-entropy, `recipe.teacher_training` or else `recipe.training`)
    and save it as a plain Hugging Face directory with a report.json of its validation metrics."""
    out_dir = Path(out_dir)
    run, teacher = _prepare(recipe, out_dir, device, checkpoint_dir, resume_from, progress or no_progress)
    spec = recipe.teacher_training or recipe.training
    run.stage(
        "finetuning_teacher",
        f"training the teacher for {spec.max_steps or spec.epochs} {'steps' if spec.max_steps else 'epochs'}",
    )
    result = train(
        teacher,
        run.loader(spec),
        spec,
        stage="finetuning_teacher",
        device=run.device,
        validation=_teacher_validation(run, spec),
        checkpointer=run.checkpointer("finetuning_teacher"),
        resume_from=resume_from,
        progress=run.progress,
    )
    run.stage("evaluating", "scoring the teacher")
    metrics = run.final_scores(teacher, result.best_metrics)
    report = {
        "task": recipe.task,
        "metrics": metrics,
        "training_steps": result.steps,
        "parameters": sum(p.numel() for p in teacher.parameters()),
        "input_check": _input_check(run, teacher, spec),
    }

    def write(tmp: Path) -> None:
        _save_hf(teacher, run.tokenizer, tmp)
        text = json.dumps(report, indent=2, sort_keys=True) + "\n"
        (tmp / "report.json").write_text(text, encoding="utf-8")

    _replace_dir(out_dir, write)
    return CompressResult(out_dir, report, metrics)


def effective_quantization(recipe: Recipe) -> QuantizationSpec:
    """distill_only trains a full-precision student: every point at 32 bits."""
    if recipe.method != "distill_only":
        return recipe.quantization
    bits = ("weight_bits", "embedding_bits", "activation_bits")
    return recipe.quantization.model_copy(update=dict.fromkeys(bits, FULL_PRECISION))


def _prepare(
    recipe: Recipe,
    out_dir: Path,
    device: str,
    checkpoint_dir: Path | None,
    resume_from: Path | None,
    progress: ProgressCallback,
) -> tuple[_Run, PreTrainedModel]:
    progress(ProgressEvent("stage", "preparing", message="loading the teacher and the dataset"))
    resume_meta = _resume_metadata(Path(resume_from)) if resume_from else None
    if resume_meta is not None:
        _check_same_recipe(recipe, Recipe.from_dict(resume_meta["recipe"]))
    target = torch.device(resolve_device(device))
    if target.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("device", "CUDA was asked for, but no CUDA device is available here")
    teacher, tokenizer = load_teacher(recipe.teacher, target)
    if recipe.src_lang and hasattr(tokenizer, "src_lang"):
        tokenizer.src_lang, tokenizer.tgt_lang = recipe.src_lang, recipe.tgt_lang
    splits = load_splits(recipe.dataset, recipe.training.seed)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else out_dir.with_name(f"{out_dir.name}.checkpoints")
    resume_path = Path(resume_from) if resume_from else None
    run = _Run(
        recipe,
        target,
        progress,
        ckpt_dir,
        tokenizer,
        splits,
        resume_path,
        resume_meta,
        teacher.config.max_position_embeddings,
    )
    return run, teacher


def _resume_metadata(checkpoint: Path) -> dict[str, Any]:
    try:
        return read_metadata(checkpoint)
    except (OSError, ValueError) as exc:
        raise UserInputError("resume_from", f"not a usable checkpoint: {exc}") from None


def _what_decides(recipe: Recipe) -> dict[str, Any]:
    """The recipe less what a resumed run may change: file locations and the training passes'
    precision (how it computes, like the device: a run may resume on another machine)."""
    fields = {k: v for k, v in recipe.to_dict().items() if k not in ("teacher", "dataset")}
    for stage in ("training", "teacher_training"):
        if isinstance(fields.get(stage), dict):
            fields[stage] = {k: v for k, v in fields[stage].items() if k != "precision"}
    return fields


def _check_same_recipe(recipe: Recipe, saved: Recipe) -> None:
    """A resumed run must be the same job."""
    ours, theirs = _what_decides(recipe), _what_decides(saved)
    changed = sorted(k for k in ours if ours[k] != theirs.get(k))
    if changed:
        raise RecipeError("recipe", f"differs from the checkpoint's recipe in: {', '.join(changed)}")


def _finetune_teacher(run: _Run, teacher: PreTrainedModel) -> tuple[PreTrainedModel, Path | None]:
    """Fine-tune the teacher first when the recipe asks; it is saved inside the checkpoint directory."""
    spec = run.recipe.teacher_training
    if spec is None:
        return teacher, None
    saved = run.checkpoint_dir / TEACHER_DIR
    if run.resumes("distilling"):  # fine-tuning finished before that checkpoint was written
        teacher_dir = Path(run.resumed("teacher_dir"))
        return load_teacher(TeacherSpec(path=str(teacher_dir)), run.device)[0], teacher_dir
    run.stage("finetuning_teacher", "fine-tuning the teacher on the task (cross-entropy)")
    train(
        teacher,
        run.loader(spec),
        spec,
        stage="finetuning_teacher",
        device=run.device,
        validation=run.validation(),
        checkpointer=run.checkpointer("finetuning_teacher"),
        resume_from=run.resumes("finetuning_teacher"),
        progress=run.progress,
    )
    _replace_dir(saved, lambda tmp: _save_hf(teacher, run.tokenizer, tmp))
    return teacher.eval(), saved


def _teacher_validation(run: _Run, spec: TrainingSpec) -> Validation:
    """The task metric plus validation loss and the input check at every evaluation: the
    learning curve of a teacher trained from scratch needs all three."""

    def scores(model: PreTrainedModel) -> dict[str, float]:
        return run.evaluate(model, run.selection_records()) | (_input_check(run, model, spec) or {})

    return Validation(scores, TASK_METRIC[run.recipe.task])


def _input_check(run: _Run, teacher: PreTrainedModel, spec: TrainingSpec) -> dict[str, float] | None:
    """Matched against shuffled validation loss: a from-scratch teacher can score plausible ROUGE
    with one generic output for every input, and only this gap shows it."""
    records = run.splits.validation[:INPUT_CHECK_RECORDS]
    if len(records) < 2:
        return None
    check = input_dependence(teacher, run.tokenizer, records, max_source_length=run.source_length(),
                             max_target_length=min(spec.max_target_length, run.max_positions))
    return {"matched_loss": check.matched_loss, "shuffled_loss": check.shuffled_loss, "gap": check.gap}


def _distill(
    run: _Run, teacher: PreTrainedModel, teacher_dir: Path | None
) -> tuple[PreTrainedModel, LayerMap, TrainResult]:
    recipe = run.recipe
    plan = recipe.student
    if run.resumes("distilling"):  # the architecture comes from the checkpoint
        saved = LayerMap.from_dict(run.resumed("layer_map"))
        plan = StudentSpec(encoder_layers=saved.encoder, decoder_layers=saved.decoder)
    student, layer_map = build_student(teacher, plan)
    quantize_model(student, effective_quantization(recipe))
    if recipe.method == "ptq":
        run.stage("distilling", "ptq: copy and quantize, no training")
        return student.eval(), layer_map, TrainResult(0)
    run.stage("distilling", f"{recipe.method}: student {layer_map.to_dict()}")
    distiller, records = None, run.splits.train
    if recipe.method != "qat_only":  # qat_only = the task loss alone (distillation weights 0)
        distiller = Distiller(teacher, layer_map.encoder, layer_map.decoder, recipe.distillation)
        if recipe.distillation.sequence_level != "off":
            records = _sequence_level_records(run, teacher)
    checkpointer = run.checkpointer(
        "distilling", layer_map=layer_map.to_dict(), teacher_dir=str(teacher_dir) if teacher_dir else None
    )
    result = train(
        student,
        run.loader(recipe.training, records),
        recipe.training,
        stage="distilling",
        device=run.device,
        distiller=distiller,
        validation=run.validation(),
        checkpointer=checkpointer,
        resume_from=run.resumes("distilling"),
        progress=run.progress,
    )
    return student.eval(), layer_map, result


def _sequence_level_records(run: _Run, teacher: PreTrainedModel) -> list[Record]:
    """The train split with the teacher's beam outputs as targets (recipe `sequence_level`)."""
    recipe = run.recipe
    spec = recipe.evaluation.model_copy(
        update={"max_length": min(recipe.training.max_target_length, run.max_positions)}
    )
    sources = [r.source for r in run.splits.train]
    run.stage("distilling", f"sequence-level targets: the teacher's outputs for {len(sources)} sources")

    def on_chunk(done: int, total: int) -> None:
        if run.progress(ProgressEvent("stage", "distilling", message=f"teacher outputs {done}/{total}")):
            raise Cancelled(f"cancelled while generating teacher outputs ({done}/{total})")

    targets = teacher_targets(teacher, run.tokenizer, sources, spec, max_source_length=run.source_length(),
                              forced_bos_token_id=run.forced_bos_token_id(), on_chunk=on_chunk)
    return with_teacher_targets(run.splits.train, targets, recipe.distillation.sequence_level)


def _latency(models: dict[str, PreTrainedModel], run: _Run) -> dict[str, Any]:
    """Seconds to decode one fixed batch of validation sources (after one warm-up), per model."""
    texts: Sequence[str] = [r.source for r in run.splits.validation[:LATENCY_BATCH]]
    spec = run.recipe.evaluation.model_copy(update={"batch_size": LATENCY_BATCH})
    figures: dict[str, Any] = {"batch_size": len(texts), "device": str(run.device)}
    for name, model in models.items():
        for _ in ("warm-up", "timed"):
            start = time.perf_counter()
            generate(model, run.tokenizer, texts, spec, max_source_length=run.source_length(),
                     forced_bos_token_id=run.forced_bos_token_id())
        figures[f"{name}_seconds"] = time.perf_counter() - start
    return figures


def _examples(models: dict[str, PreTrainedModel], run: _Run) -> list[dict[str, str]]:
    """A few validation records with each model's output, for people reading the report."""
    records = run.splits.validation[:EXAMPLES]
    examples = [{"source": r.source, "reference": r.target} for r in records]
    for name, model in models.items():
        outputs = generate(
            model,
            run.tokenizer,
            [r.source for r in records],
            run.recipe.evaluation,
            max_source_length=run.source_length(),
            forced_bos_token_id=run.forced_bos_token_id(),
        )
        for example, output in zip(examples, outputs, strict=True):
            example[name] = output
    return examples


def _teacher_identity(spec: TeacherSpec, finetuned_dir: Path | None) -> dict[str, Any]:
    identity: dict[str, Any] = {k: v for k, v in spec.model_dump().items() if v is not None}
    local = finetuned_dir or (Path(spec.path) if spec.path else None)
    if local is not None:
        identity["sha256"] = teacher_fingerprint(local)
    identity["finetuned"] = finetuned_dir is not None
    return identity


def _save_hf(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _replace_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write into a temporary sibling, then swap it in, so `target` is never half written."""
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
