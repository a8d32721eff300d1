"""Sequence-level distillation targets: the teacher's outputs, cached and resumable."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from compression import sequence_targets
from compression.cache import digest
from compression.data import Record
from compression.evaluate import generate
from compression.recipe import EvaluationSpec
from compression.sequence_targets import teacher_targets, with_teacher_targets

SPEC = EvaluationSpec(num_beams=1, max_length=6, batch_size=4)


def test_replace_swaps_each_reference_for_the_teachers_output_unless_it_is_empty() -> None:
    records = [Record("doc a", "ref a"), Record("doc b", "ref b")]
    assert with_teacher_targets(records, ["out a", " "], "replace") == [
        Record("doc a", "out a"), Record("doc b", "ref b")]


def test_mix_keeps_the_references_and_adds_the_teachers_outputs() -> None:
    records = [Record("doc a", "ref a")]
    mixed = with_teacher_targets(records, ["out a"], "mix")
    assert mixed == [Record("doc a", "ref a"), Record("doc a", "out a")]


def test_targets_are_the_teachers_outputs_and_are_cached(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    teacher = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher_dir))
    sources = ["a tool to compress files", "a library for images", "a game"]
    first = teacher_targets(teacher, tokenizer, sources, SPEC, max_source_length=32, cache=tmp_path)
    assert first == generate(teacher, tokenizer, sources, SPEC, max_source_length=32)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".jsonl", ".lock"]  # no partial file left
    assert teacher_targets(teacher, tokenizer, sources, SPEC, max_source_length=32, cache=tmp_path) == first


def test_concurrent_runs_of_one_teacher_generate_its_targets_once(
    tiny_teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher_dir))
    generated: list[int] = []
    real = sequence_targets._generate_by_length

    def counted(*args: Any) -> list[str]:
        generated.append(len(args[2]))
        time.sleep(0.2)  # long enough for the other run to arrive while this one generates
        return real(*args)

    monkeypatch.setattr(sequence_targets, "_generate_by_length", counted)
    sources = ["a tool to compress files", "a game"]
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(teacher_targets, teacher, tokenizer, sources, SPEC, max_source_length=32,
                            cache=tmp_path) for _ in range(2)]
        first, second = (run.result() for run in runs)
    assert first == second and generated == [2]


def test_a_stopped_generation_continues_from_its_partial_file(
    tiny_teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sequence_targets, "CHUNK", 2)
    teacher = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher_dir))
    sources = ["one", "two", "three"]
    settings = {"generation": SPEC.model_dump(), "max_source_length": 32, "forced_bos_token_id": None}
    partial = tmp_path / f"{digest(teacher, sources, settings)}.partial"
    partial.write_text(json.dumps("kept 1") + "\n" + json.dumps("kept 2") + "\n")
    chunks: list[tuple[int, int]] = []
    outputs = teacher_targets(teacher, tokenizer, sources, SPEC, max_source_length=32, cache=tmp_path,
                              on_chunk=lambda done, total: chunks.append((done, total)))
    assert outputs[:2] == ["kept 1", "kept 2"] and len(outputs) == 3
    assert chunks == [(3, 3)] and not partial.exists()
