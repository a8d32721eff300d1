"""bench/serve.py: the quick run compares every side on every scenario and records the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.serve import CT2_STUDENT, CT2_TEACHER, FP32_TEACHER, SERVED, main


@pytest.mark.slow
def test_quick_run_writes_every_side_of_every_scenario_with_the_targets_and_cpu(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    main(["--quick", "--cores", "1", "--note", "test", "--out", str(out)])
    report = json.loads(out.read_text())
    [shape] = report["shapes"]
    sides = {FP32_TEACHER, CT2_TEACHER, CT2_STUDENT, *SERVED.values()}
    assert [row["scenario"] for row in shape["rows"]] == ["natural c=1", "natural c=16", "64 tok c=1",
                                                          "64 tok c=16"]
    for row in shape["rows"]:
        assert set(row["results"]) == sides
        assert all(result["throughput"] > 0 for result in row["results"].values())
        assert all(row["results"][name]["inference_ms_p50"] > 0 for name in SERVED.values())
    assert {name: served["runtime"]["form"] for name, served in shape["served"].items()} == {
        SERVED["ctranslate2"]: "ctranslate2_int8", SERVED["int8"]: "int8_dynamic"}
    assert len(shape["targets"]) == 3 and report["cores_per_side"] == 1 and report["note"] == "test"
    assert "Flags" in report["cpu"]["lscpu"]
