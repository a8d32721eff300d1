"""compress/finetune end to end on tiny models and a real data sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import compression
from compression.checkpoint import latest_checkpoint
from compression.data import read_records
from compression.errors import Cancelled, DatasetError, RecipeError
from compression.evaluate import evaluate_model, generate
from compression.pipeline import compress, finetune
from compression.progress import ProgressEvent
from compression.recipe import EvaluationSpec, Recipe
from tests.tiny import SAMPLE_DIR, make_tiny_teacher, make_tiny_translation_teacher, write_jsonl

ARTIFACT_FILES = {"config.json", "model.safetensors", "quantization.json", "report.json", "tokenizer.json"}


@pytest.fixture(scope="module")
def data_files(
    tmp_path_factory: pytest.TempPathFactory, sample_records: list[dict[str, str]]
) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("data")
    return {
        "train": str(write_jsonl(folder / "train.jsonl", sample_records[:32])),
        "validation": str(write_jsonl(folder / "validation.jsonl", sample_records[32:38])),
    }


def _recipe(teacher_dir: Path, data: dict[str, str], **overrides: Any) -> Recipe:
    recipe: dict[str, Any] = {
        "teacher": {"path": str(teacher_dir)},
        "dataset": data,
        "student": {"encoder_layers": 1, "decoder_layers": 1},
        "quantization": {"weight_bits": 2, "embedding_bits": 4, "activation_bits": 8},
        "training": {
            "max_steps": 4,
            "batch_size": 8,
            "lr": 1e-3,
            "max_source_length": 32,
            "max_target_length": 12,
            "checkpoint_every": 2,
            "log_every": 1,
        },
        "evaluation": {"num_beams": 1, "max_length": 8, "min_length": 3, "batch_size": 8},
    }
    recipe.update(overrides)
    return Recipe.from_dict(recipe)


class Events:
    def __init__(self, stop_at_checkpoint: int | None = None) -> None:
        self.events: list[ProgressEvent] = []
        self.stop_at_checkpoint = stop_at_checkpoint

    def __call__(self, event: ProgressEvent) -> bool:
        self.events.append(event)
        return (
            event.kind == "checkpoint"
            and event.stage == "distilling"
            and event.step == self.stop_at_checkpoint
        )

    def stages(self) -> list[str]:
        return [e.stage for e in self.events if e.kind == "stage"]


def test_compress_writes_the_artifact_and_load_reproduces_the_student(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    events = Events()
    result = compress(_recipe(tiny_teacher_dir, data_files), tmp_path / "out", device="cpu", progress=events)
    assert {p.name for p in result.artifact_dir.iterdir()} >= ARTIFACT_FILES
    assert events.stages() == ["preparing", "distilling", "evaluating", "packing"]
    report = json.loads((result.artifact_dir / "report.json").read_text())
    assert report == result.report
    assert (
        set(report["teacher_metrics"])
        == set(report["student_metrics"])
        == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    )
    assert report["layer_map"] == {"encoder": [1], "decoder": [1]} and report["training_steps"] == 4
    assert report["compression_ratio"] > 1 and report["latency"]["student_seconds"] > 0
    check = report["engines"]["ctranslate2"]
    assert check["available"] and check["metric"] == "rougeLsum" and 0 <= check["identical_percent"] <= 100
    assert check["metric_loss"] == pytest.approx(check["reference"] - check["ctranslate2"])
    interval = check["loss_interval"]
    assert interval["low"] <= check["metric_loss"] <= interval["high"]
    assert check["within_budget"] == (interval["low"] <= check["budget"])
    model, tokenizer = compression.load(result.artifact_dir)
    spec = EvaluationSpec(num_beams=1, max_length=8, min_length=3)
    sources = [example["source"] for example in report["examples"]]
    assert generate(model, tokenizer, sources, spec, max_source_length=32) == [
        example["student"] for example in report["examples"]
    ]


def _interrupted_at_step_2(recipe: Recipe, tmp_path: Path) -> Path:
    """Run `recipe` into tmp_path/out, cancelled at its step-2 checkpoint; that checkpoint."""
    with pytest.raises(Cancelled):
        compress(recipe, tmp_path / "out", device="cpu", progress=Events(stop_at_checkpoint=2))
    checkpoint = latest_checkpoint(tmp_path / "out.checkpoints")
    assert checkpoint is not None
    return checkpoint


def test_resumed_compress_finishes_the_interrupted_run(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    recipe = _recipe(tiny_teacher_dir, data_files)
    checkpoint = _interrupted_at_step_2(recipe, tmp_path)
    assert checkpoint.name == "distilling-step-000002"
    events = Events()
    result = compress(recipe, tmp_path / "out", device="cpu", resume_from=checkpoint, progress=events)
    assert sorted({e.step for e in events.events if e.stage == "distilling" and e.kind == "metrics"}) == [
        3,
        4,
    ]
    assert result.report["training_steps"] == 4


def test_a_run_resumes_in_another_precision_but_not_with_another_rate(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    recipe = _recipe(tiny_teacher_dir, data_files)
    checkpoint = _interrupted_at_step_2(recipe, tmp_path)
    changed = recipe.to_dict()
    changed["training"]["lr"] = recipe.training.lr * 2
    with pytest.raises(RecipeError, match="differs from the checkpoint's recipe in: training"):
        compress(Recipe.from_dict(changed), tmp_path / "out", device="cpu", resume_from=checkpoint)
    changed["training"].update(lr=recipe.training.lr, precision="bf16")
    result = compress(Recipe.from_dict(changed), tmp_path / "out", device="cpu", resume_from=checkpoint)
    assert result.report["training_steps"] == 4


def test_teacher_is_finetuned_first_when_asked(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    recipe = _recipe(
        tiny_teacher_dir, data_files, teacher_training={"max_steps": 2, "batch_size": 8}, method="qat_only"
    )
    events = Events()
    compress(recipe, tmp_path / "out", device="cpu", checkpoint_dir=tmp_path / "ckpt", progress=events)
    assert events.stages() == ["preparing", "finetuning_teacher", "distilling", "evaluating", "packing"]
    assert (tmp_path / "ckpt" / "teacher" / "model.safetensors").is_file()
    manifest = json.loads((tmp_path / "out" / "quantization.json").read_text())
    assert manifest["teacher"]["finetuned"] is True


@pytest.mark.parametrize(("method", "steps", "bits"), [("ptq", 0, 2), ("distill_only", 4, 32)])
def test_baselines_train_and_quantize_as_named(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path, method: str, steps: int, bits: int
) -> None:
    result = compress(_recipe(tiny_teacher_dir, data_files, method=method), tmp_path / "out", device="cpu")
    manifest = json.loads((tmp_path / "out" / "quantization.json").read_text())
    assert result.report["training_steps"] == steps
    assert manifest["quantization"]["weight_bits"] == bits


def test_finetune_saves_a_plain_model_directory_with_metrics(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    result = finetune(
        _recipe(tiny_teacher_dir, data_files, method="finetune"), tmp_path / "teacher", device="cpu"
    )
    assert {"config.json", "model.safetensors", "report.json"} <= {
        p.name for p in result.artifact_dir.iterdir()
    }
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(result.report["metrics"])
    assert not (tmp_path / "teacher" / "quantization.json").exists()


def test_finetune_evaluations_give_the_learning_curve(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    events = Events()
    recipe = _recipe(tiny_teacher_dir, data_files, method="finetune")
    finetune(recipe, tmp_path / "t", device="cpu", progress=events)
    evals = [e.metrics for e in events.events if "eval/rougeLsum" in e.metrics]
    assert evals and {"eval/matched_loss", "eval/shuffled_loss", "eval/gap"} <= set(evals[-1])


def test_finetune_reports_how_much_the_teacher_reads_its_input(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    result = finetune(
        _recipe(tiny_teacher_dir, data_files, method="finetune"), tmp_path / "teacher", device="cpu"
    )
    check = result.report["input_check"]
    assert check["gap"] == pytest.approx(check["shuffled_loss"] - check["matched_loss"])
    assert check["matched_loss"] > 0


def test_missing_dataset_column_fails_before_training(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    recipe = _recipe(tiny_teacher_dir, {**data_files, "source_field": "text"})
    events = Events()
    with pytest.raises(DatasetError, match="'text' not found"):
        compress(recipe, tmp_path / "out", device="cpu", progress=events)
    assert events.stages() == ["preparing"]


def test_resume_after_the_teacher_stage_reuses_the_finetuned_teacher(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    recipe = _recipe(tiny_teacher_dir, data_files, teacher_training={"max_steps": 2, "batch_size": 8})
    with pytest.raises(Cancelled):
        compress(recipe, tmp_path / "out", device="cpu", progress=Events(stop_at_checkpoint=2))
    events = Events()
    resume_from = latest_checkpoint(tmp_path / "out.checkpoints", "distilling")
    assert resume_from is not None
    compress(recipe, tmp_path / "out", device="cpu", resume_from=resume_from, progress=events)
    assert events.stages() == ["preparing", "distilling", "evaluating", "packing"]


def test_translation_with_an_mbart_teacher_reports_bleu(tmp_path: Path) -> None:
    teacher_dir = make_tiny_teacher(tmp_path / "mbart", encoder_layers=2, decoder_layers=2, mbart=True)
    data = {
        "train": str(SAMPLE_DIR / "en-de-validation.jsonl.gz"),
        "source_field": "source",
        "target_field": "target",
        "validation_fraction": 0.03,
    }
    recipe = _recipe(teacher_dir, data, task="translation")
    result = compress(recipe, tmp_path / "out", device="cpu")
    assert set(result.best_metrics) == set(result.report["teacher_metrics"]) == {"bleu", "chrf"}


def test_translation_with_our_en_de_mbart_passes_the_ctranslate2_check(tmp_path: Path) -> None:
    teacher_dir = make_tiny_translation_teacher(tmp_path / "mbart")
    data = {"train": str(SAMPLE_DIR / "en-de-validation.jsonl.gz"), "source_field": "source",
            "target_field": "target", "validation_fraction": 0.03}
    recipe = _recipe(teacher_dir, data, task="translation", src_lang="en_XX", tgt_lang="de_DE",
                     quantization={"weight_bits": 8, "embedding_bits": 8, "activation_bits": 8})
    result = compress(recipe, tmp_path / "out", device="cpu")
    assert set(result.best_metrics) == {"bleu", "chrf"}
    assert result.report["engines"]["ctranslate2"]["available"]


def test_sequence_level_distillation_trains_on_cached_teacher_outputs(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DQB_CACHE_DIR", str(tmp_path / "cache"))
    recipe = _recipe(tiny_teacher_dir, data_files, distillation={"sequence_level": "mix"})
    events = Events()
    compress(recipe, tmp_path / "out", device="cpu", progress=events)
    cached = list((tmp_path / "cache" / "sequence-targets").glob("*.jsonl"))
    assert len(cached) == 1 and any("teacher outputs" in (e.message or "") for e in events.events)


def test_a_group_scaled_student_is_packed_with_the_engine_check_unavailable(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    quantization = {"weight_bits": 2, "embedding_bits": 2, "granularity": "per_group", "group_size": 16}
    result = compress(_recipe(tiny_teacher_dir, data_files, quantization=quantization), tmp_path / "out",
                      device="cpu")
    assert result.report["engines"]["ctranslate2"]["available"] is False
    assert "per_group" in result.report["engines"]["ctranslate2"]["reason"]


def test_teacher_scores_are_computed_once_per_teacher_split_and_settings(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DQB_CACHE_DIR", str(tmp_path / "cache"))
    compress(_recipe(tiny_teacher_dir, data_files, method="ptq"), tmp_path / "a", device="cpu")
    [cached] = (tmp_path / "cache" / "teacher-scores").glob("*.json")
    cached.write_text(json.dumps({"rougeLsum": 12.5}))  # a second run reads the cache, not the model
    result = compress(_recipe(tiny_teacher_dir, data_files, method="ptq"), tmp_path / "b", device="cpu")
    assert result.report["teacher_metrics"] == {"rougeLsum": 12.5}


def test_a_selection_subset_picks_the_state_and_the_whole_split_scores_it(
    tiny_teacher_dir: Path, data_files: dict[str, str], tmp_path: Path
) -> None:
    evaluation = {"num_beams": 1, "max_length": 8, "min_length": 3, "batch_size": 8, "selection_samples": 2}
    recipe = _recipe(tiny_teacher_dir, data_files, evaluation=evaluation)
    result = compress(recipe, tmp_path / "out", device="cpu")
    model, tokenizer = compression.load(tmp_path / "out")
    records = read_records(data_files["validation"], "document", "summary")
    spec = recipe.evaluation
    whole = evaluate_model(model, tokenizer, records, "summarization", spec, max_source_length=32)
    assert len(records) == 6 and result.report["student_metrics"] == pytest.approx(whole)
