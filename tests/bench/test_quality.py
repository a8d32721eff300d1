"""bench/quality.py: config parsing, the Pareto front, and a two-row smoke run writing its outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.quality import Config, RowResult, main, pareto_front, teacher_check_lines
from compression.evaluate import InputDependence
from tests.tiny import write_jsonl


def _row(name: str, size: int, lsum: float) -> RowResult:
    return RowResult(name, "dq", "8-8-8", "6-3", [], {"rougeLsum": lsum}, size, 1.0, 0.0)


def test_config_parse_reads_options_into_recipe_fields() -> None:
    config = Config.parse("dq:2-2-8:6-3:per_tensor,no_mask")
    fields = config.recipe_fields()
    assert config.name == "dq:2-2-8:6-3:per_tensor,no_mask"
    quantization = fields["quantization"]
    assert quantization["weight_bits"] == 2 and quantization["granularity"] == "per_tensor"
    assert fields["distillation"]["mask_padding"] is False
    assert fields["student"] == {"encoder_layers": 6, "decoder_layers": 3}


def test_config_parse_rejects_unknown_option() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="unknown options"):
        Config.parse("dq:8-8-8:6-3:faster")


def test_pareto_front_keeps_only_undominated_rows() -> None:
    rows = [_row("big-good", 100, 30.0), _row("small-ok", 10, 25.0), _row("small-bad", 12, 20.0)]
    assert pareto_front(rows) == {"big-good", "small-ok"}


@pytest.mark.slow
def test_quick_bench_writes_markdown_json_and_plot(tmp_path: Path, tiny_teacher_6x6_dir: Path,
                                                   sample_records: list[dict[str, str]]) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", sample_records[:32])
    validation = write_jsonl(tmp_path / "validation.jsonl", sample_records[32:36])
    out = tmp_path / "out"
    main(["--quick", "--teacher", str(tiny_teacher_6x6_dir), "--train", str(train),
          "--validation", str(validation), "--configs", "ptq:8-8-8:6-3 dq:2-2-8:3-1",
          "--steps", "2", "--max-val", "4", "--out", str(out), "--keep-artifacts", str(tmp_path / "kept")])
    report = json.loads((out / "quality.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == ["teacher:fp32", "ptq:8-8-8:6-3", "dq:2-2-8:3-1"]
    assert all({"rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(row["metrics"]) for row in report["rows"])
    assert report["rows"][2]["compression_ratio"] > report["rows"][1]["compression_ratio"] > 1.0
    assert "## Targets" in (out / "quality.md").read_text()
    assert (tmp_path / "kept" / "dq_2-2-8_3-1" / "model.safetensors").is_file()
    assert set(report["teacher_input_check"]) == {"matched_loss", "shuffled_loss", "gap"}
    assert (out / "quality.png").read_bytes()[:4] == b"\x89PNG"


def test_report_warns_when_the_teacher_ignores_its_input() -> None:
    deaf = teacher_check_lines(InputDependence(matched_loss=6.09, shuffled_loss=6.09))
    reading = teacher_check_lines(InputDependence(matched_loss=3.1, shuffled_loss=5.2))
    assert any("barely reads its input" in line for line in deaf)
    assert not any("barely reads its input" in line for line in reading)
