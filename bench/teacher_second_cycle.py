"""Package section 1f's second-cycle teacher like bench.teacher's own: rounded to float16 values,
scored on the full validation split against lead-1, saved as data/teachers/debian-d256-c2.

`python -m bench.teacher_second_cycle` restores the snapshot into the user cache (seconds) and
prints the teacher's directory. `... --build LOG` packages it after docs/results/quality-v4/run.sh
step 1c, LOG being that step's log (its subset evaluations become curve.jsonl). The second cycle
is not yet a bench.teacher stage; until it is, step 1c and this script are its recipe.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from bench.teacher import SUMMARIZATION, Plan, default_out, final_report, report_lines
from demo.snapshot import SNAPSHOT_ROOT, restore_snapshot, round_to_half, save_snapshot
from demo.teacher import TeacherShape

SECOND_CYCLE = {"from": "data/teachers/debian-d256", "steps": 1500, "lr": 5e-4, "warmup": 0.03,
                "batch_size": 32, "seed": 28, "precision": "bf16", "selection": "first 300 records, beam 4",
                "command": "docs/results/quality-v4/run.sh step 1c"}


def curve_from_log(log: Path) -> list[dict[str, float]]:
    """The subset evaluations that bench.quality printed: `step N/1500 eval/rouge1 31.89 ...`."""
    rows = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        step = re.search(r"step (\d+)/\d+", line)
        evals = re.findall(r"eval/(\w+)'?:? +([-0-9.e]+)", line)
        if step and evals:
            rows.append({"step": int(step.group(1)), **{name: float(value) for name, value in evals}})
    return rows


def first_plan() -> Plan:
    """The plan of the first cycle's teacher, data/teachers/debian-d256."""
    first = json.loads((SNAPSHOT_ROOT / "debian-d256" / "plan.json").read_text(encoding="utf-8"))
    return Plan(**{**first, "shape": TeacherShape(**first["shape"])})


def run_dir(plan: Plan, suffix: str) -> Path:
    return default_out(plan).with_name(default_out(plan).name + suffix)


def build(log: Path) -> None:
    plan = first_plan()
    out = run_dir(plan, "-c2")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(run_dir(plan, "-more1500"), out / "teacher")
    round_to_half(out / "teacher")  # scored as the float16 snapshot restores it
    with (out / "curve.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in curve_from_log(log))
    report = final_report(plan, out, SUMMARIZATION.validation, 4)
    report["plan"] = asdict(plan) | {"second_cycle": SECOND_CYCLE}
    (out / "plan.json").write_text(json.dumps(report["plan"], indent=2) + "\n", encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [line.replace("beam 2)", "beam 4; the second cycle's steps)") for line in report_lines(report)]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"snapshot: {save_snapshot(out, SNAPSHOT_ROOT / out.name)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, metavar="LOG", help="package the second cycle of LOG")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.build:
        build(args.build)
        return
    out = run_dir(first_plan(), "-c2")
    restore_snapshot(SNAPSHOT_ROOT / out.name, out)
    print(out / "teacher")


if __name__ == "__main__":
    main()
