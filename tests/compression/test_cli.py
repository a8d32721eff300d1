"""`python -m compression`: compress, evaluate, inspect, and one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compression.cli import main
from tests.tiny import REPO, write_jsonl


@pytest.fixture(scope="module")
def recipe_file(
    tmp_path_factory: pytest.TempPathFactory, tiny_teacher_dir: Path, sample_records: list[dict[str, str]]
) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    write_jsonl(folder / "train.jsonl", sample_records[:24])
    write_jsonl(folder / "validation.jsonl", sample_records[24:28])
    path = folder / "recipe.yaml"
    path.write_text(
        f"teacher: {{path: {tiny_teacher_dir}}}\n"
        "dataset: {train: train.jsonl, validation: validation.jsonl}\n"
        "student: {encoder_layers: 1, decoder_layers: 1}\n"
        "quantization: {weight_bits: 4, embedding_bits: 4}\n"
        "training: {max_steps: 2, batch_size: 8, max_source_length: 32, max_target_length: 12}\n"
        "evaluation: {num_beams: 1, max_length: 8}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def artifact(recipe_file: Path) -> Path:
    out = recipe_file.parent / "artifact"
    assert main(["compress", str(recipe_file), "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_compress_prints_a_json_summary_last(
    recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compress", str(recipe_file), "--out", str(tmp_path / "a"), "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["output"] == str(tmp_path / "a") and summary["compression_ratio"] > 1


def test_evaluate_prints_metrics_as_json_on_the_last_line(
    artifact: Path, recipe_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = recipe_file.parent / "validation.jsonl"
    args = ["evaluate", str(artifact), "--data", str(data), "--num-beams", "2", "--max-length", "6"]
    assert main([*args, "--limit", "3", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["records"] == 3 and {"rouge1", "rougeLsum"} <= set(metrics)


def test_evaluate_accepts_a_plain_teacher_directory(
    tiny_teacher_dir: Path, recipe_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = recipe_file.parent / "validation.jsonl"
    args = [
        "evaluate",
        str(tiny_teacher_dir),
        "--data",
        str(data),
        "--task",
        "translation",
        "--num-beams",
        "1",
    ]
    assert main([*args, "--max-length", "6", "--device", "cpu"]) == 0
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == {
        "task",
        "records",
        "bleu",
        "chrf",
    }


def test_inspect_prints_the_size_table(artifact: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(artifact)]) == 0
    out = capsys.readouterr().out
    for field in ("teacher_bytes", "student_bytes", "theoretical_bytes", "compression_ratio"):
        assert field in out


def test_missing_column_is_a_one_line_user_error(
    artifact: Path, recipe_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = recipe_file.parent / "validation.jsonl"
    assert main(["evaluate", str(artifact), "--data", str(data), "--source-field", "text"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset.source_field: column 'text' not found") and "\n" not in err


def test_module_entry_point_exits_2_without_a_traceback_on_a_bad_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("teacher: {path: t}\ndataset: {train: d.jsonl}\nquantization: {weight_bits: 5}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "compression", "compress", str(recipe), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: quantization.weight_bits: bits must be one of")
    assert "Traceback" not in done.stderr


def test_resume_from_a_directory_that_is_not_a_checkpoint_is_a_user_error(
    recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compress", str(recipe_file), "--out", str(tmp_path / "out"), "--resume", str(tmp_path)]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: resume_from: not a usable checkpoint")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_a_user_error(
    recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compress", str(recipe_file), "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.startswith("error: device: CUDA was asked for")
