"""One report from several bench.quality runs of one plan: rows that ran side by side, one
process each (one seed or one option a process, the way two cores are used), averaged by config
as one run's `@N` seeds are. The runs must share every setting but their seed, output folder and
kept artifacts, and their teacher's scores.

    python -m bench.quality_merge docs/results/quality-v4/c2-* --out docs/results/quality-v4/c2-1000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.quality import RowResult, load_done, write_report
from compression.evaluate import InputDependence

PER_RUN = ("out", "seed", "artifacts")  # the settings that may differ between the merged runs


def read_run(folder: Path) -> tuple[dict[str, Any], list[RowResult]]:
    """A run folder's quality.json (its settings, command and teacher check) and its finished rows."""
    report = folder / "quality.json"
    if not report.is_file():
        raise SystemExit(f"{folder} holds no bench.quality report (quality.json)")
    return json.loads(report.read_text()), list(load_done(folder / "rows.jsonl").values())


def common_settings(reports: list[dict[str, Any]], folders: list[Path]) -> dict[str, str]:
    """The shared settings, with the seeds listed; refused where the runs differ in another one."""
    first = reports[0]["settings"]
    for report, folder in zip(reports[1:], folders[1:], strict=True):
        differ = sorted(k for k in first.keys() | report["settings"].keys()
                        if k not in PER_RUN and first.get(k) != report["settings"].get(k))
        if differ:
            raise SystemExit(f"{folder} ran another plan than {folders[0]} ({', '.join(differ)} differ)")
    seeds = sorted({int(r["settings"]["seed"]) for r in reports})
    return {k: v for k, v in first.items() if k not in PER_RUN} | {"seed": ", ".join(map(str, seeds))}


def merge(folders: list[Path], out: Path, command: str) -> list[RowResult]:
    loaded = [read_run(folder) for folder in folders]
    reports, runs = [r for r, _ in loaded], [row for _, rows in loaded for row in rows]
    settings = common_settings(reports, folders)
    if len({json.dumps(r.teacher_metrics, sort_keys=True) for r in runs}) > 1:
        raise SystemExit("the runs scored their teachers differently: not one teacher and split")
    check = reports[0]["teacher_input_check"]
    sources = "`; `".join(r["command"] for r in reports)
    out.mkdir(parents=True, exist_ok=True)
    teacher_check = InputDependence(check["matched_loss"], check["shuffled_loss"])
    write_report(runs, out, settings | {"runs": ", ".join(map(str, folders))},
                 f"{command}` of the runs `{sources}", teacher_check)
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="bench.quality --out folders")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    command = "python -m bench.quality_merge " + " ".join(sys.argv[1:] if argv is None else argv)
    merge(args.runs, args.out, command)
    print((args.out / "quality.md").read_text())


if __name__ == "__main__":
    main()
