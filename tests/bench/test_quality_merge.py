"""bench/quality_merge.py: rows of runs made side by side become one report, seeds averaged."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.quality import RowResult
from bench.quality_merge import merge

TEACHER = {"rougeLsum": 34.0}


def run_folder(folder: Path, seed: int, lsum: float, steps: str = "1000") -> Path:
    """A finished bench.quality --out folder of one dq row."""
    folder.mkdir(parents=True)
    row = RowResult("dq:2-2-8:6-3", "dq", "2-2-8", "6-3", [], {"rougeLsum": lsum}, 3_000_000, 16.8, 60.0,
                    TEACHER, 52_000_000, [seed])
    (folder / "rows.jsonl").write_text(json.dumps(asdict(row)) + "\n")
    settings = {"steps": steps, "seed": str(seed), "out": str(folder), "artifacts": "None"}
    (folder / "quality.json").write_text(json.dumps({
        "command": f"python -m bench.quality --seed {seed}", "settings": settings,
        "teacher_input_check": {"matched_loss": 3.0, "shuffled_loss": 4.5, "gap": 1.5}}))
    return folder


def test_the_seeds_of_runs_made_side_by_side_become_one_row_with_their_spread(tmp_path: Path) -> None:
    runs = [run_folder(tmp_path / f"s{seed}", seed, lsum) for seed, lsum in ((28, 33.0), (29, 34.0))]
    merge(runs, tmp_path / "merged", "python -m bench.quality_merge")
    report = json.loads((tmp_path / "merged" / "quality.json").read_text())
    row = next(r for r in report["rows"] if r["name"] == "dq:2-2-8:6-3")
    assert row["seeds"] == [28, 29] and row["metrics"]["rougeLsum"] == 33.5
    assert row["std"]["rougeLsum"] == pytest.approx(0.7071, abs=1e-4)
    assert report["settings"]["seed"] == "28, 29"
    assert "--seed 29" in (tmp_path / "merged" / "quality.md").read_text()


def test_runs_of_another_plan_are_not_merged(tmp_path: Path) -> None:
    runs = [run_folder(tmp_path / "a", 28, 33.0), run_folder(tmp_path / "b", 29, 34.0, steps="2000")]
    with pytest.raises(SystemExit, match="steps differ"):
        merge(runs, tmp_path / "merged", "python -m bench.quality_merge")
