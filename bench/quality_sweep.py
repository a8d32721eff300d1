"""bench.quality's matrix as one sweep through the service (`--api-url`): the benchmark then runs
the product's own code path, from the upload to the sweep's children on however many workers
serve that API, and reads its rows back from the children's results.

The matrix must be a grid (every method at every bit width and layer plan, without options):
that is what one sweep's axes describe. distill_only points are 32-bit whatever the bit widths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dqbart_client import Client, Job, Sweep

if TYPE_CHECKING:  # for types only: bench.quality imports this module where it runs a sweep
    from bench.quality import BenchSettings, Config


def sweep_axes(configs: list[Config]) -> dict[str, list[str]]:
    """The axes whose grid is exactly `configs`; SystemExit naming what is not a grid."""
    if any(c.options or c.seeds != 1 for c in configs):
        raise SystemExit("--api-url runs one sweep: configs without options or @seeds")
    methods = list(dict.fromkeys(c.method for c in configs))
    bits = list(dict.fromkeys(c.bits for c in configs if c.bits != "fp32")) or ["8-8-8"]
    layers = list(dict.fromkeys(c.layers for c in configs))
    grid = {(m, "fp32" if m == "distill_only" else b, la) for m in methods for b in bits for la in layers}
    if grid != {(c.method, c.bits, c.layers) for c in configs}:
        raise SystemExit("--api-url runs one sweep: the configs must be every method at every bit width "
                         "and layer plan")
    return {"methods": methods, "bits": bits, "layers": layers}


def service_recipe(base: dict[str, Any], fields: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The benchmark's base recipe with the uploads' ids in place of local paths."""
    recipe = {**base, **{k: v for k, v in fields.items() if k not in ("method", "student")}}
    recipe["teacher"] = {"model": ids["teacher"]}
    recipe["dataset"] = {**base["dataset"], "train": None, "dataset": ids["train"],
                         "validation": ids["validation"]}
    return recipe


def run_as_sweep(client: Client, configs: list[Config], s: BenchSettings, recipe: dict[str, Any],
                 max_drop: float, max_parallel: int) -> tuple[Sweep, list[dict[str, Any]]]:
    """Upload the teacher and the splits, run the matrix as one sweep, and read its rows (the
    fields of bench.quality.RowResult)."""
    ids = {"teacher": client.models.upload(s.teacher).id, "train": client.datasets.upload(s.train).id,
           "validation": client.datasets.upload(s.validation).id}
    body = {"recipe": service_recipe(recipe, configs[0].recipe_fields(), ids), "axes": sweep_axes(configs),
            "gate": {"max_drop": max_drop}, "budget": {"max_parallel": max_parallel}}
    sweep = client.sweeps.create(body)
    print(f"sweep {sweep.id}: {len(sweep.points)} points", flush=True)
    sweep = client.sweeps.wait(sweep.id, on_progress=_print_progress, poll_interval=5.0)
    return sweep, [_row(client.jobs.get(p.job_id), p.method, s) for p in sweep.points if p.job_id]


def _print_progress(sweep: Sweep) -> None:
    print(f"  {sweep.status}: " + ", ".join(f"{k} {v}" for k, v in sweep.progress.items() if v), flush=True)


def _row(job: Job, method: str, s: BenchSettings) -> dict[str, Any]:
    result = job.result or {}
    q, student = job.recipe["quantization"], job.recipe["student"]
    bits = (f"{q['weight_bits']}-{q['embedding_bits']}-{q['activation_bits']}" if method != "distill_only"
            else "fp32")
    layers = f"{student['encoder_layers']}-{student['decoder_layers']}"
    ran = (job.started_at, job.finished_at)
    seconds = (ran[1] - ran[0]).total_seconds() if ran[0] and ran[1] else 0.0
    size, ratio = int(result.get("bytes", 0)), float(result.get("compression_ratio", 0.0))
    return {"name": f"{method}:{bits}:{layers}", "method": method, "bits": bits, "layers": layers,
            "options": [], "metrics": dict(result.get("metrics", {})), "bytes": size,
            "compression_ratio": ratio, "seconds": round(seconds, 1),
            "teacher_metrics": dict(result.get("teacher_metrics", {})), "teacher_bytes": round(size * ratio),
            "seeds": [s.seed]}
