"""One sweep over the bundled sample, run on an embedded service with 1 worker and then with 2
(`dqbart serve --workers N`, max_parallel N), side by side in one run: the wall time of each,
and the sweep's points, Pareto front and recommended model. The host's cores are shared out
evenly (OMP_NUM_THREADS = cores / N per worker), so both runs use the same CPUs.

    python -m bench.sweep_workers --out bench/results/sweep_workers.json

The teacher: --teacher (a HF folder or .tar), by default the demo's trained teacher from the user
cache (`make demo` trains and caches it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.serve import cpu_description
from demo.cache import cache_root
from demo.service import EmbeddedService
from dqbart_client import Client, Sweep

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "debian-desc-sample"


def demo_teacher() -> Path:
    """The newest trained teacher the demo cached."""
    archives = sorted((cache_root() / "teachers").glob("*/teacher.tar"), key=lambda p: p.stat().st_mtime)
    if not archives:
        raise SystemExit("no demo teacher in the cache: run `make demo` once, or give --teacher")
    return archives[-1]


def plain(path: Path, work: Path) -> Path:
    """The service takes .jsonl, not the bundled .jsonl.gz: a decompressed copy in `work`."""
    if path.suffix != ".gz":
        return path
    out = work / path.stem
    if not out.exists():
        with gzip.open(path, "rb") as src:
            out.write_bytes(src.read())
    return out


def sweep_body(args: argparse.Namespace, ids: dict[str, str], workers: int) -> dict[str, Any]:
    recipe = {
        "teacher": {"model": ids["teacher"]},
        "dataset": {"dataset": ids["train"], "validation": ids["validation"],
                    "max_validation_samples": args.max_val},
        "training": {"max_steps": args.steps, "batch_size": 16, "lr": 5.0e-4, "max_source_length": 128,
                     "max_target_length": 32, "checkpoint_every": args.steps, "log_every": 10},
        "evaluation": {"num_beams": 2, "max_length": 32, "batch_size": 50},
    }
    return {"recipe": recipe, "axes": {"bits": args.bits.split(), "layers": args.layers.split()},
            "gate": {"max_drop": args.max_drop}, "strategy": args.strategy,
            "budget": {"max_parallel": workers}}


def run_once(args: argparse.Namespace, workers: int, work: Path) -> dict[str, Any]:
    """Start a fresh embedded service with `workers` workers, run the sweep, and time it."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    service = EmbeddedService(data_dir=work / f"data-{workers}", log_path=work / f"serve-{workers}.log",
                              workers=workers, env_defaults={"OMP_NUM_THREADS": str(threads)})
    with service, Client(service.base_url, service.create_key("bench")) as client:
        ids = {"teacher": client.models.upload(args.teacher, name="teacher").id,
               "train": client.datasets.upload(plain(args.train, work)).id,
               "validation": client.datasets.upload(plain(args.validation, work)).id}
        start = time.perf_counter()
        sweep = client.sweeps.wait(client.sweeps.create(sweep_body(args, ids, workers)).id, poll_interval=2.0)
        wall = time.perf_counter() - start
    return {"workers": workers, "threads_per_worker": threads, "wall_seconds": round(wall, 1),
            "sweep": sweep.model_dump(mode="json")}


def _recommended(sweep: Sweep) -> str:
    best = sweep.recommended
    return f"point {best['index']} ({best['bytes']:,} B)" if best else str(sweep.reason)


def table(runs: list[dict[str, Any]]) -> str:
    first = Sweep.model_validate(runs[0]["sweep"])
    lines = ["| workers | threads each | wall (s) | speed-up | status | recommended |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        sweep = Sweep.model_validate(run["sweep"])
        lines.append(f"| {run['workers']} | {run['threads_per_worker']} | {run['wall_seconds']:.0f} | "
                     f"{runs[0]['wall_seconds'] / run['wall_seconds']:.2f}x | {sweep.status} | "
                     f"{_recommended(sweep)} |")
    lines += ["", f"Points of the first run ({first.metric}; * on the Pareto front):", "",
              "| # | method | bits | layers | status | bytes | ratio | metric | gate |",
              "|---|---|---|---|---|---|---|---|---|"]
    for p in first.points:
        lines.append(f"| {p.index}{' *' if p.on_front else ''} | {p.method} | {p.bits} | {p.layers} | "
                     f"{p.status} | {p.bytes or '-'} | {p.compression_ratio or 0:.1f}x | "
                     f"{p.metric or 0:.2f} | {p.gate} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, default=None, help="default: the demo's cached teacher")
    p.add_argument("--train", type=Path, default=SAMPLE / "train.jsonl.gz")
    p.add_argument("--validation", type=Path, default=SAMPLE / "validation.jsonl.gz")
    p.add_argument("--bits", default="8-8-8 2-2-8")
    p.add_argument("--layers", default="6-3 3-1")
    p.add_argument("--strategy", default="grid", choices=["grid", "successive_halving"])
    p.add_argument("--steps", type=int, default=40, help="training steps per point")
    p.add_argument("--max-val", type=int, default=50, help="validation records scored per point")
    p.add_argument("--max-drop", type=float, default=0.1, help="the gate: a relative drop of ROUGE-Lsum")
    p.add_argument("--workers", default="1 2")
    p.add_argument("--out", type=Path, required=True, help="the JSON results")
    args = p.parse_args(argv)
    args.teacher = args.teacher or demo_teacher()
    with tempfile.TemporaryDirectory(prefix="dqb-sweep-bench-") as tmp:
        runs = [run_once(args, int(n), Path(tmp)) for n in args.workers.split()]
    report = table(runs)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": "python -m bench.sweep_workers " + " ".join(sys.argv[1:]), "cpu": cpu_description(),
               "load_average": os.getloadavg(), "teacher": str(args.teacher), "runs": runs, "table": report}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
