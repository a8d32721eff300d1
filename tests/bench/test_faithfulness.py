"""bench/faithfulness.py: the served fast path against the reference path on a tiny packed artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.faithfulness import main
from tests.serving.conftest import pack_student
from tests.tiny import make_diverse_teacher, write_jsonl

RECORDS = 24
AGREEMENT_FIELDS = {"records", "identical", "identical_percent", "distinct_reference_texts",
                    "rouge_reference", "rouge_fast", "rouge_lsum_delta", "rouge_lsum_delta_interval",
                    "identical_ok", "rouge_ok", "passed", "mismatches"}


@pytest.fixture(scope="module")
def artifact(tiny_teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student of a teacher whose greedy texts depend on the input (the default init writes one
    text for every input, which would make any comparison pass)."""
    teacher = make_diverse_teacher(tiny_teacher_dir, tmp_path_factory.mktemp("faithful-teacher"))
    return pack_student(teacher, tmp_path_factory.mktemp("faithful") / "dq_8-8-8_2-1", bits=8)


def _run(artifact: Path, validation: Path, out: Path, form: str, engine: str = "int8") -> dict:
    main([str(artifact), "--validation", str(validation), "--max-val", str(RECORDS), "--max-new-tokens", "16",
          "--min-new-tokens", "8", "--form", form, "--engine", engine, "--out", str(out)])
    report = json.loads(out.read_text())
    assert out.with_suffix(".md").read_text().count("| dq_8-8-8_2-1 |") == 1
    [row] = report["artifacts"]
    assert row["name"] == "dq_8-8-8_2-1" and set(row["agreement"]) >= AGREEMENT_FIELDS
    assert set(row["runtime"]) >= {"device", "form", "int8_layers", "float_layers", "kernel", "threads"}
    assert row["params"]["num_beams"] == 1 and row["params"]["max_new_tokens"] == 16
    assert 0.0 <= row["noise_floor_percent"] <= 100.0
    return row


def test_reference_form_is_identical_and_int8_form_is_a_real_comparison(
        artifact: Path, sample_records: list[dict[str, str]], tmp_path: Path) -> None:
    validation = write_jsonl(tmp_path / "validation.jsonl", sample_records[-RECORDS:])
    same = _run(artifact, validation, tmp_path / "reference.json", "reference")
    fast = _run(artifact, validation, tmp_path / "fast.json", "auto")
    agreement = same["agreement"]
    assert same["runtime"]["form"] == "reference"
    assert agreement["distinct_reference_texts"] > RECORDS // 4  # the sample tells inputs apart
    assert agreement["identical_percent"] == 100.0 and agreement["mismatches"] == []
    assert agreement["rouge_lsum_delta"] == 0.0 and agreement["passed"]
    assert agreement["rouge_lsum_delta_interval"] == [0.0, 0.0]
    # The reference path does not depend on the served form; the served one is the int8 form.
    assert fast["agreement"]["rouge_reference"] == agreement["rouge_reference"]
    assert fast["runtime"]["form"] == "int8_dynamic" and fast["runtime"]["int8_layers"] > 0
    measured = fast["agreement"]
    assert measured["identical"] == RECORDS - len(measured["mismatches"])
    assert measured["rouge_lsum_delta"] == pytest.approx(
        measured["rouge_fast"]["rougeLsum"] - measured["rouge_reference"]["rougeLsum"])
    # The int8 form rounds exactly as the reference does.
    assert measured["identical_percent"] == 100.0, measured["mismatches"]
    assert measured["passed"]


def test_the_ctranslate2_engine_is_measured_against_the_reference_path(
        artifact: Path, sample_records: list[dict[str, str]], tmp_path: Path) -> None:
    validation = write_jsonl(tmp_path / "validation.jsonl", sample_records[-RECORDS:])
    row = _run(artifact, validation, tmp_path / "ct2.json", "auto", engine="auto")
    assert row["runtime"]["form"] == "ctranslate2_int8" and row["runtime"]["int8_layers"] > 0
    measured = row["agreement"]
    assert measured["identical"] == RECORDS - len(measured["mismatches"])
    assert measured["rouge_lsum_delta"] == pytest.approx(
        measured["rouge_fast"]["rougeLsum"] - measured["rouge_reference"]["rougeLsum"])
