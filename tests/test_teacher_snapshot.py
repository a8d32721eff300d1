"""demo/snapshot.py: a trained teacher carried in the repository in float16 and restored into the
user cache as the float32 teacher that was scored, bit for bit."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from bench import teacher as bench_teacher
from demo.cache import benchmark_teacher_dir, built_benchmark_teacher
from demo.snapshot import WEIGHTS, restore_snapshot, round_to_half, save_snapshot

PLAN = {"task": "summarization", "lr": 0.0003}


def finished_run(run_dir: Path, plan: dict[str, object] = PLAN) -> Path:
    """A run folder as bench.teacher leaves it: a scored teacher beside its plan, report and curve."""
    teacher = run_dir / "teacher"
    teacher.mkdir(parents=True)
    rng = np.random.default_rng(0)
    save_file({"layer.weight": rng.normal(0, 0.05, (64, 64)).astype(np.float32),
               "positions": np.arange(8, dtype=np.int64)}, str(teacher / WEIGHTS), metadata={"format": "pt"})
    (teacher / "config.json").write_text('{"d_model": 64}')
    (run_dir / "plan.json").write_text(json.dumps(plan))
    (run_dir / "report.json").write_text('{"teacher": {"rougeLsum": 30.0}}')
    (run_dir / "report.md").write_text("| teacher | 30.00 |\n")
    (run_dir / "curve.jsonl").write_text('{"step": 250}\n')
    round_to_half(teacher)
    return run_dir


def test_rounding_to_half_keeps_float32_and_changes_nothing_the_second_time(tmp_path: Path) -> None:
    teacher = finished_run(tmp_path / "run") / "teacher"
    once = load_file(teacher / WEIGHTS)
    round_to_half(teacher)
    twice = load_file(teacher / WEIGHTS)
    assert once["layer.weight"].dtype == np.float32
    assert once["layer.weight"].tobytes() == twice["layer.weight"].tobytes()
    assert np.array_equal(once["layer.weight"], once["layer.weight"].astype(np.float16).astype(np.float32))


def test_a_snapshot_holds_float16_weights_and_restores_the_scored_teacher_bit_for_bit(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    snapshot = save_snapshot(run, tmp_path / "snapshots" / "debian-d256")
    stored = load_file(snapshot / "teacher" / WEIGHTS)
    assert stored["layer.weight"].dtype == np.float16 and stored["positions"].dtype == np.int64
    restored = restore_snapshot(snapshot, tmp_path / "cache" / "debian-d256", PLAN)
    assert restored is not None
    original, back = load_file(run / "teacher" / WEIGHTS), load_file(restored / WEIGHTS)
    assert {k: v.tobytes() for k, v in back.items()} == {k: v.tobytes() for k, v in original.items()}
    assert (restored / "config.json").read_text() == '{"d_model": 64}'
    assert (restored.parent / "report.md").read_text() == "| teacher | 30.00 |\n"


def test_a_snapshot_of_another_plan_is_not_restored(tmp_path: Path) -> None:
    snapshot = save_snapshot(finished_run(tmp_path / "run"), tmp_path / "snapshot")
    assert restore_snapshot(snapshot, tmp_path / "cache", {**PLAN, "lr": 0.0005}) is None
    assert not (tmp_path / "cache" / "teacher").exists()


def test_a_run_training_a_teacher_of_its_own_is_left_alone(tmp_path: Path) -> None:
    snapshot = save_snapshot(finished_run(tmp_path / "run"), tmp_path / "snapshot")
    (tmp_path / "cache" / "teacher.checkpoints").mkdir(parents=True)
    assert restore_snapshot(snapshot, tmp_path / "cache", PLAN) is None


def test_an_unscored_run_cannot_be_snapshotted(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    (run / "report.json").unlink()
    with pytest.raises(SystemExit, match="no scored teacher"):
        save_snapshot(run, tmp_path / "snapshot")


def test_the_demo_finds_the_benchmark_teacher_in_the_repository_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    snapshots = tmp_path / "data" / "teachers"
    assert built_benchmark_teacher(snapshots=snapshots) is None
    save_snapshot(finished_run(tmp_path / "run"), snapshots / benchmark_teacher_dir().name)
    assert built_benchmark_teacher(snapshots=snapshots) == benchmark_teacher_dir() / "teacher"


def test_the_teacher_command_restores_its_plans_snapshot_instead_of_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = bench_teacher.Plan(bench_teacher.SHAPE, epochs=4, denoise_steps=1000)
    monkeypatch.setattr(bench_teacher, "SNAPSHOT_ROOT", tmp_path / "teachers")
    save_snapshot(finished_run(tmp_path / "run", asdict(plan)), tmp_path / "teachers" / "debian-d256")
    assert bench_teacher.main(["--out", str(tmp_path / "cache")]) == 0
    assert "| teacher | 30.00 |" in capsys.readouterr().out
    assert (tmp_path / "cache" / "teacher" / WEIGHTS).is_file()


def test_the_carried_snapshots_match_the_teacher_commands_plans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(bench_teacher, "train_teacher", None)  # restoring must neither train nor score
    monkeypatch.setattr(bench_teacher, "final_report", None)
    for cycles, name in ((1, "debian-d256"), (2, "debian-d256-c2")):
        assert bench_teacher.main(["--cycles", str(cycles)]) == 0
        assert (tmp_path / "cache" / "dqbart" / "teachers" / name / "teacher" / WEIGHTS).is_file()
