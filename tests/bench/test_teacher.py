"""bench/teacher.py: the baselines, the learning curve log, and resumable smoke runs of both tasks."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from bench.teacher import (
    CYCLES,
    TRANSLATION,
    Cycle,
    Plan,
    check_same_plan,
    default_out,
    final_report,
    lead_1,
    mask_spans,
    read_curve,
    train_teacher,
)
from compression.data import read_records
from demo.teacher import QUICK_SHAPE, TeacherShape
from tests.tiny import write_jsonl


def tiny_splits(folder: Path, records: list[dict[str, str]]) -> tuple[Path, Path]:
    """32 train and 8 validation records of the bundled sample, as JSONL files."""
    train = write_jsonl(folder / "train.jsonl", records[:32])
    return train, write_jsonl(folder / "validation.jsonl", records[32:40])


def test_lead_1_is_the_first_sentence_of_the_first_line() -> None:
    assert lead_1("A tool. It does v1.2 things.\n\nMore.") == "A tool."
    assert lead_1("Version 1.2 of a tool\nsecond line. Yes.") == "Version 1.2 of a tool"


def test_curve_keeps_the_last_evaluation_of_a_step(tmp_path: Path) -> None:
    path = tmp_path / "curve.jsonl"
    rows = [{"step": 2, "rougeLsum": 1.0}, {"step": 4, "rougeLsum": 2.0}, {"step": 2, "rougeLsum": 3.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_curve(path) == [{"step": 2, "rougeLsum": 3.0}, {"step": 4, "rougeLsum": 2.0}]


@pytest.mark.slow
def test_teacher_run_resumes_and_reports_the_curve_and_lead_1(
    tmp_path: Path, sample_records: list[dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    train, validation = tiny_splits(tmp_path, sample_records)
    plan = Plan(QUICK_SHAPE, epochs=1, batch_size=8, eval_every=2, patience=10, eval_records=4)
    out = tmp_path / "teacher"
    train_teacher(plan, out, train, validation)
    train_teacher(plan, out, train, validation)  # a second start resumes from the last checkpoint
    assert "resuming from" in capsys.readouterr().out
    report = final_report(plan, out, validation, num_beams=1)
    assert [row["step"] for row in report["curve"]] == [2, 4]
    assert {"matched_loss", "gap", "rougeLsum"} <= set(report["curve"][-1])
    assert report["validation_records"] == 8 and report["lead_1"]["rouge1"] > 0
    assert "| lead_1 |" in (out / "report.md").read_text()


def test_a_folder_refuses_to_resume_under_another_plan(tmp_path: Path) -> None:
    plan = Plan(QUICK_SHAPE, "summarization", epochs=1)
    check_same_plan(plan, tmp_path / "plan.json")
    check_same_plan(plan, tmp_path / "plan.json")  # the same plan resumes
    with pytest.raises(SystemExit, match="lr differ"):
        check_same_plan(Plan(QUICK_SHAPE, "summarization", epochs=1, lr=1e-4), tmp_path / "plan.json")


@pytest.mark.slow
def test_translation_teacher_is_an_mbart_scored_by_bleu_against_the_copy_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = read_records(TRANSLATION.sample[0], "source", "target")[:40]
    records = [{"source": r.source, "target": r.target} for r in pairs]
    train = write_jsonl(tmp_path / "train.jsonl", records[:32])
    validation = write_jsonl(tmp_path / "validation.jsonl", records[32:])
    plan = Plan(QUICK_SHAPE, "translation", epochs=1, batch_size=8, eval_every=2, patience=10, eval_records=4)
    out = tmp_path / "teacher"
    train_teacher(plan, out, train, validation)
    train_teacher(plan, out, train, validation)
    assert "resuming from" in capsys.readouterr().out
    report = final_report(plan, out, validation, num_beams=1)
    config = json.loads((out / "teacher" / "config.json").read_text())
    assert config["model_type"] == "mbart"
    assert [row["step"] for row in report["curve"]] == [2, 4] and "bleu" in report["curve"][-1]
    assert report["copy"]["chrf"] > 0 and set(report["teacher"]) == {"bleu", "chrf"}
    assert report["signatures"]["bleu"].startswith("nrefs:1|case:mixed")
    assert "| copy |" in (out / "report.md").read_text()


def test_denoising_masks_word_spans_and_keeps_the_other_words_in_order() -> None:
    words = [f"w{i}" for i in range(2000)]
    masked = mask_spans(" ".join(words), random.Random(0)).split()
    kept = [w for w in masked if w != "<mask>"]
    assert kept == [w for w in words if w in set(kept)]  # order kept, nothing invented
    assert 0.15 < 1 - len(kept) / len(words) < 0.4  # about 30% of the words masked
    assert "<mask> <mask>" not in " ".join(masked)  # a span is one mask


@pytest.mark.slow
def test_the_task_starts_from_the_denoised_model(
    tmp_path: Path, sample_records: list[dict[str, str]]
) -> None:
    train, validation = tiny_splits(tmp_path, sample_records)
    plan = Plan(QUICK_SHAPE, epochs=1, batch_size=8, eval_every=2, patience=10, eval_records=4,
                denoise_steps=2)
    out = tmp_path / "teacher"
    train_teacher(plan, out, train, validation)
    denoised = json.loads((out / "denoised" / "report.json").read_text())
    assert denoised["training_steps"] == 2
    assert json.loads((out / "recipe.json").read_text())["teacher"]["path"] == str(out / "denoised")
    pairs = read_records(out / "denoising-train.jsonl.gz", "source", "target")
    assert len(pairs) == 32 and any("<mask>" in p.source for p in pairs)


def test_denoising_is_refused_for_the_translation_teacher(tmp_path: Path) -> None:
    plan = Plan(QUICK_SHAPE, "translation", epochs=1, denoise_steps=2)
    with pytest.raises(SystemExit, match="denoise"):
        train_teacher(plan, tmp_path / "t", tmp_path / "train.jsonl", tmp_path / "validation.jsonl")


@pytest.mark.slow
def test_each_further_cycle_trains_its_steps_from_the_teacher_one_cycle_short(
    tmp_path: Path, sample_records: list[dict[str, str]]
) -> None:
    train, validation = tiny_splits(tmp_path, sample_records)
    second = Cycle(steps=3, lr=1e-3, warmup=0.0, seed=1, eval_every=3, eval_beams=1)
    third = replace(second, steps=2, eval_every=2)
    plan = Plan(QUICK_SHAPE, epochs=1, batch_size=8, eval_every=2, patience=10, eval_records=4,
                cycles=(second, third))
    out = tmp_path / "teacher"
    teacher = train_teacher(plan, out, train, validation)
    recipe = json.loads((out / "teacher-recipe.json").read_text())
    assert recipe["teacher"]["path"] == str(out / "cycle2" / "teacher")
    assert recipe["teacher_training"]["max_steps"] == 2 and recipe["teacher_training"]["lr"] == 1e-3
    assert json.loads((teacher / "report.json").read_text())["training_steps"] == 2
    assert [row["step"] for row in read_curve(out / "curve.jsonl")] == [2]
    assert [row["step"] for row in read_curve(out / "cycle2" / "curve.jsonl")] == [3]
    assert json.loads((out / "cycle2" / "teacher-recipe.json").read_text())["teacher"]["path"] == str(
        out / "cycle2" / "cycle1" / "teacher")
    assert [row["step"] for row in read_curve(out / "cycle2" / "cycle1" / "curve.jsonl")] == [2, 4]


def test_a_teacher_with_a_second_cycle_has_a_folder_of_its_own() -> None:
    cycle = Cycle(steps=1500, lr=5e-4, warmup=0.03, seed=28, eval_every=500, eval_beams=4)
    shape = TeacherShape(d_model=256, ffn_dim=1024, heads=4)
    assert default_out(Plan(shape)).name == "debian-d256"
    assert default_out(Plan(shape, cycles=(cycle,))).name == "debian-d256-c2"
    assert default_out(Plan(shape, cycles=CYCLES)).name == "debian-d256-c3"
