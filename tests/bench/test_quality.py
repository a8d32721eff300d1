"""bench/quality.py: config parsing, the Pareto front, and a two-row smoke run writing its outputs."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.quality import (
    Config,
    CurveRecorder,
    RowResult,
    main,
    means,
    pareto_front,
    target_checks,
    teacher_check_lines,
)
from compression.evaluate import InputDependence
from compression.progress import ProgressEvent
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
          "--steps", "2", "--max-val", "4", "--out", str(out), "--keep-artifacts", str(tmp_path / "kept"),
          "--precision", "bf16"])
    report = json.loads((out / "quality.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == ["teacher:fp32", "ptq:8-8-8:6-3", "dq:2-2-8:3-1"]
    assert all({"rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(row["metrics"]) for row in report["rows"])
    assert report["rows"][2]["compression_ratio"] > report["rows"][1]["compression_ratio"] > 1.0
    assert "## Targets" in (out / "quality.md").read_text()
    assert (tmp_path / "kept" / "dq_2-2-8_3-1" / "model.safetensors").is_file()
    manifest = json.loads((tmp_path / "kept" / "dq_2-2-8_3-1" / "quantization.json").read_text())
    assert manifest["recipe"]["training"]["precision"] == "bf16"
    assert set(report["teacher_input_check"]) == {"matched_loss", "shuffled_loss", "gap"}
    assert (out / "quality.png").read_bytes()[:4] == b"\x89PNG"


def test_report_warns_when_the_teacher_ignores_its_input() -> None:
    deaf = teacher_check_lines(InputDependence(matched_loss=6.09, shuffled_loss=6.09))
    reading = teacher_check_lines(InputDependence(matched_loss=3.1, shuffled_loss=5.2))
    assert any("barely reads its input" in line for line in deaf)
    assert not any("barely reads its input" in line for line in reading)


def test_config_parse_reads_a_seed_count_and_merges_several_options() -> None:
    config = Config.parse("dq:2-2-8:6-3:kl_t2,norm,g64@3")
    fields = config.recipe_fields()
    assert config.seeds == 3 and config.name == "dq:2-2-8:6-3:kl_t2,norm,g64"
    assert fields["distillation"] == {"mask_padding": True, "logits_loss": "kl", "temperature": 2.0,
                                      "normalize": True}
    assert fields["quantization"]["granularity"] == "per_group"


def test_rows_of_several_seeds_become_their_mean_and_spread() -> None:
    runs = [_row("dq:8-8-8:6-3", 10, 20.0), _row("dq:8-8-8:6-3@29", 10, 22.0), _row("ptq:8-8-8:6-3", 10, 5.0)]
    for seed, row in zip((28, 29, 28), runs, strict=True):
        row.seeds = [seed]
    dq, ptq = means(runs)
    assert dq.name == "dq:8-8-8:6-3" and dq.seeds == [28, 29]
    assert dq.metrics["rougeLsum"] == pytest.approx(21.0) and dq.std["rougeLsum"] == pytest.approx(2**0.5)
    assert ptq.std == {}


def test_dq_beats_a_rival_only_by_more_than_the_seed_spread() -> None:
    teacher = _row("teacher:fp32", 100, 30.0)
    dq = replace(_row("dq:8-8-8:6-3", 10, 21.0), seeds=[28, 29, 30], std={"rougeLsum": 0.8})
    close = replace(_row("qat_only:8-8-8:6-3", 10, 20.5), method="qat_only", seeds=[28, 29, 30],
                    std={"rougeLsum": 0.3})
    far = replace(close, metrics={"rougeLsum": 19.0})
    assert any("does not beat qat_only" in line for line in target_checks(teacher, [dq, close]))
    assert any("beats all" in line for line in target_checks(teacher, [dq, far]))


def test_an_option_that_is_already_the_default_drops_out_of_the_canonical_config() -> None:
    assert Config.parse("dq:2-2-8:6-3:norm").canonical() == Config.parse("dq:2-2-8:6-3")
    assert Config.parse("dq:2-2-8:6-3:raw,norm").canonical().options == ("raw",)
    assert Config.parse("dq:2-2-8:6-3:per_tensor").canonical().options == ("per_tensor",)


def test_a_row_with_only_default_options_is_judged_by_the_targets() -> None:
    teacher = _row("teacher:fp32", 100, 30.0)
    dq = replace(_row("dq:8-8-8:6-3:norm", 10, 29.9), options=["norm"])
    rival = replace(_row("qat_only:8-8-8:6-3", 10, 20.0), method="qat_only")
    lines = target_checks(teacher, [dq, rival])
    assert "- dq:8-8-8:6-3: not run" not in lines
    assert any("keeps 99.7%" in line for line in lines)
    assert any("dq:8-8-8:6-3:norm" in line and "beats all" in line for line in lines)


def test_a_rows_curve_keeps_its_evaluations_and_its_log_shows_the_pace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder = CurveRecorder(print_every=100)
    for step in (25, 50, 75, 100):
        recorder(ProgressEvent("metrics", "distilling", step, 200, {"loss/total": 1.5}))
    recorder(ProgressEvent("metrics", "distilling", 100, 200, {"eval/rougeLsum": 21.0}))
    assert recorder.curve == [{"step": 100, "rougeLsum": 21.0}]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "step 100/200" in lines[0] and "loss/total" in lines[0] and "eval/rougeLsum" in lines[1]
