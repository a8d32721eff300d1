"""Quality benchmark: DQ-BART against its baselines on one teacher and one validation split.

Rows: the fp32 teacher, then for each configuration `method:bits:layers[:options]`
(method dq | ptq | qat_only | distill_only; bits W-E-A such as 8-8-8, or fp32; layers enc-dec
such as 6-3; options from OPTIONS, comma-separated; `@N` runs N seeds and reports their mean and
standard deviation) one compression run through the library
(compression.compress, not the service), or, with --api-url, as one sweep through the service
(bench/quality_sweep.py: the product's path, on its workers). Writes quality.md, quality.json and quality.png
(model size against ROUGE-Lsum, Pareto front marked) into --out. Each finished row is kept in
rows.jsonl, so an interrupted run resumes where it stopped.

    python -m bench.quality --quick --out /tmp/quality
    python -m bench.quality --teacher TEACHER_DIR --steps 300 --max-val 100 --out docs/results/quality
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from compression import ProgressEvent, Recipe
from compression.data import read_records
from compression.evaluate import InputDependence, input_dependence
from compression.pipeline import compress, finetune
from compression.recipe import DistillationSpec, QuantizationSpec

REPO = Path(__file__).resolve().parent.parent

SAMPLE_DIR = REPO / "data" / "debian-desc-sample"
# Named recipe changes a row can carry (`dq:2-2-8:6-3:kl,norm`); each is merged into the row's recipe.
OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "per_tensor": {"quantization": {"granularity": "per_tensor"}},
    "g64": {"quantization": {"granularity": "per_group", "group_size": 64}},
    "g128": {"quantization": {"granularity": "per_group", "group_size": 128}},
    "lsq": {"quantization": {"learned_scale": True}},
    "sym2": {"quantization": {"two_bit_scheme": "symmetric"}},  # 2 bits on the symmetric grid, not TWN
    "no_mask": {"distillation": {"mask_padding": False}},
    "kl": {"distillation": {"logits_loss": "kl", "temperature": 1.0}},
    "kl_t2": {"distillation": {"logits_loss": "kl", "temperature": 2.0}},
    "norm": {"distillation": {"normalize": True}},
    "raw": {"distillation": {"normalize": False}},  # the paper's raw MSE sums (the default before session 11)
    "logits_only": {"distillation": {"hidden": 0.0, "attention": 0.0}},
    "no_attn": {"distillation": {"attention": 0.0}},
    "weighted": {"distillation": {"task": 1.0, "logits": 0.8, "hidden": 3.0}},  # the paper's --weighted
    "seq": {"distillation": {"sequence_level": "replace"}},
    "seq_mix": {"distillation": {"sequence_level": "mix"}},
}
LAYER_PLANS = ("6-6", "6-3", "3-1")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
BIT_WIDTHS = ("8-8-8", "4-4-8", "2-2-8")
# Below this many nats of cross-entropy gained from the right documents, the teacher writes one
# generic synopsis for every input and no row measures compression (docs/results/quality-v2).
MIN_INPUT_GAP = 0.05
CHECK_RECORDS = 64


@dataclass(frozen=True)
class Config:
    method: str
    bits: str  # "W-E-A" or "fp32"
    layers: str  # "enc-dec"
    options: tuple[str, ...] = ()
    seeds: int = 1  # runs with seeds base, base+1, ... (`dq:2-2-8:6-3@3`)

    @classmethod
    def parse(cls, text: str) -> Config:
        text, _, count = text.strip().partition("@")
        if count and not (count.isdigit() and int(count) >= 1):
            raise argparse.ArgumentTypeError(f"config {text!r}: '@{count}' must be a number of seeds >= 1")
        parts = text.split(":")
        if len(parts) < 3 or parts[0] not in ("dq", "ptq", "qat_only", "distill_only"):
            raise argparse.ArgumentTypeError(f"config {text!r}: expected method:bits:layers[:options]")
        options = tuple(o for o in parts[3].split(",") if o) if len(parts) > 3 else ()
        unknown = [o for o in options if o not in OPTIONS]
        if unknown:
            known = ", ".join(OPTIONS)
            raise argparse.ArgumentTypeError(f"config {text!r}: unknown options {unknown}; known: {known}")
        bits = "fp32" if parts[0] == "distill_only" else parts[1]
        return cls(parts[0], bits, parts[2], options, int(count or 1))

    @property
    def name(self) -> str:
        options = [",".join(self.options)] if self.options else []
        return ":".join([self.method, self.bits, self.layers, *options])

    def recipe_fields(self) -> dict[str, Any]:
        enc, dec = (int(n) for n in self.layers.split("-"))
        w, e, a = (32, 32, 32) if self.bits == "fp32" else (int(n) for n in self.bits.split("-"))
        fields: dict[str, Any] = {
            "method": self.method,
            "student": {"encoder_layers": enc, "decoder_layers": dec},
            "quantization": {"weight_bits": w, "embedding_bits": e, "activation_bits": a,
                             "granularity": "per_row"},
            "distillation": {"mask_padding": True},
        }
        for option in self.options:
            fields = merge(fields, OPTIONS[option])
        return fields

    def canonical(self) -> Config:
        """The same config without the options that change nothing (`norm` since it is the default)."""
        plain = merge(spec_defaults(), Config(self.method, self.bits, self.layers).recipe_fields())
        return replace(self, options=tuple(o for o in self.options if not contained(OPTIONS[o], plain)))


def spec_defaults() -> dict[str, Any]:
    return {"quantization": QuantizationSpec().model_dump(), "distillation": DistillationSpec().model_dump()}


def contained(extra: dict[str, Any], base: dict[str, Any]) -> bool:
    """Whether every value in `extra` is already the value in `base`."""
    return all(contained(v, base.get(k, {})) if isinstance(v, dict) else base.get(k) == v
               for k, v in extra.items())


def default_configs() -> list[Config]:
    """The full matrix (meant for a GPU): every method at every bit width and layer plan, plus
    the dq option ablations at 6-3."""
    configs = [Config("distill_only", "fp32", layers) for layers in LAYER_PLANS]
    for layers in LAYER_PLANS:
        configs += [Config(m, bits, layers) for bits in BIT_WIDTHS for m in ("ptq", "qat_only", "dq")]
    for bits in ("8-8-8", "2-2-8"):
        configs += [Config("dq", bits, "6-3", (option,)) for option in OPTIONS]
    return configs


QUICK_CONFIGS = [Config.parse(c) for c in ("ptq:8-8-8:6-3", "qat_only:8-8-8:6-3", "distill_only:fp32:6-3",
                                           "dq:8-8-8:6-3", "dq:2-2-8:6-3", "dq:2-2-8:6-3:per_tensor")]


@dataclass
class BenchSettings:
    teacher: Path
    train: Path
    validation: Path
    out: Path
    steps: int
    max_val: int
    batch_size: int = 32
    lr: float = 5.0e-4
    max_source_length: int = 128
    max_target_length: int = 32
    num_beams: int = 2
    eval_max_length: int = 32
    seed: int = 28  # the first seed of every row
    eval_every: int | None = None  # validation during training (the learning curve); None: at the end
    selection_samples: int | None = None  # validation records scored during training
    warmup_ratio: float = 0.05
    precision: str = "fp32"  # the students' training passes (training.precision)
    artifacts: Path | None = None  # where packed artifacts are kept (e.g. for bench/faithfulness.py)


@dataclass
class RowResult:
    name: str
    method: str
    bits: str
    layers: str
    options: list[str]
    metrics: dict[str, float]
    bytes: int
    compression_ratio: float
    seconds: float
    teacher_metrics: dict[str, float] = field(default_factory=dict)
    teacher_bytes: int = 0
    seeds: list[int] = field(default_factory=list)  # one per run; several in a row of means
    std: dict[str, float] = field(default_factory=dict)  # across seeds, in a row of means
    curve: list[dict[str, float]] = field(default_factory=list)  # validation scores by step


def base_recipe(s: BenchSettings) -> dict[str, Any]:
    return {
        "task": "summarization",
        "teacher": {"path": str(s.teacher)},
        "dataset": {"train": str(s.train), "validation": str(s.validation),
                    "max_validation_samples": s.max_val},
        "training": {"max_steps": s.steps, "lr": s.lr, "batch_size": s.batch_size, "seed": s.seed,
                     "max_source_length": s.max_source_length, "max_target_length": s.max_target_length,
                     "warmup_ratio": s.warmup_ratio, "eval_every": s.eval_every or s.steps,
                     "checkpoint_every": s.eval_every or s.steps, "log_every": 25,
                     "precision": s.precision},
        "evaluation": {"num_beams": s.num_beams, "max_length": s.eval_max_length, "batch_size": 50,
                       "selection_samples": s.selection_samples},
    }


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _metrics(raw: dict[str, Any]) -> dict[str, float]:
    return {k.removeprefix("eval/"): float(v) for k, v in raw.items() if isinstance(v, int | float)}


def run_name(config: Config, seed: int, s: BenchSettings) -> str:
    """A run's name: the config's, and the seed where it is not the first."""
    return config.name if seed == s.seed else f"{config.name}@{seed}"


class CurveRecorder:
    """Validation scores by step, from the training's progress events; prints the stages, each
    evaluation and every `print_every` steps' elapsed time, so a long row's pace is in its log."""

    def __init__(self, print_every: int = 100) -> None:
        self.curve: list[dict[str, float]] = []
        self.print_every = print_every
        self.start = time.perf_counter()

    def __call__(self, event: ProgressEvent) -> bool:
        scores = {k.removeprefix("eval/"): v for k, v in event.metrics.items() if k.startswith("eval/")}
        if scores:
            self.curve.append({"step": event.step, **scores})
        if scores or event.kind == "stage" or (event.metrics and event.step % self.print_every == 0):
            elapsed = time.perf_counter() - self.start
            shown = " ".join([event.message, *(f"{k} {v:.4g}" for k, v in event.metrics.items())])
            print(f"    {elapsed:7.0f} s  [{event.stage}] step {event.step}/{event.total_steps} {shown}",
                  flush=True)
        return False


def run_config(config: Config, s: BenchSettings, seed: int) -> RowResult:
    fields = merge(config.recipe_fields(), {"training": {"seed": seed}})
    recipe = Recipe.from_dict(merge(base_recipe(s), fields))
    folder = run_name(config, seed, s).replace(":", "_").replace(",", "+").replace("@", "_s")
    run_dir = s.out / "runs" / folder
    shutil.rmtree(run_dir, ignore_errors=True)
    start, recorder = time.perf_counter(), CurveRecorder()
    result = compress(recipe, run_dir / "artifact", device="cpu", checkpoint_dir=run_dir / "checkpoints",
                      progress=recorder)
    seconds = time.perf_counter() - start
    report = result.report
    # Keep the report, not the weights: the outputs folder is meant to be committed.
    shutil.copyfile(result.artifact_dir / "report.json", run_dir / "report.json")
    if s.artifacts is not None:
        kept = s.artifacts / run_dir.name
        shutil.rmtree(kept, ignore_errors=True)
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(result.artifact_dir, kept)
    for scratch in ("artifact", "checkpoints"):
        shutil.rmtree(run_dir / scratch, ignore_errors=True)
    return RowResult(run_name(config, seed, s), config.method, config.bits, config.layers,
                     list(config.options),
                     _metrics(report["student_metrics"]), int(report["student_bytes"]),
                     float(report["compression_ratio"]), round(seconds, 1),
                     _metrics(report["teacher_metrics"]), int(report["teacher_bytes"]), [seed],
                     curve=recorder.curve)


def load_done(path: Path) -> dict[str, RowResult]:
    if not path.exists():
        return {}
    rows = [RowResult(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return {row.name: row for row in rows}


def run_all(configs: list[Config], s: BenchSettings, command: str, check: InputDependence) -> list[RowResult]:
    done_path = s.out / "rows.jsonl"
    done = load_done(done_path)
    rows = []
    runs = [(config, s.seed + n) for config in configs for n in range(config.seeds)]
    for index, (config, seed) in enumerate(runs, start=1):
        name = run_name(config, seed, s)
        if name in done:
            print(f"[{index}/{len(runs)}] {name}: already measured, kept")
            rows.append(done[name])
            continue
        print(f"[{index}/{len(runs)}] {name} ...", flush=True)
        row = run_config(config, s, seed)
        with done_path.open("a") as f:
            f.write(json.dumps(asdict(row)) + "\n")
        print(f"    rougeLsum {row.metrics.get('rougeLsum', float('nan')):.2f}  bytes {row.bytes:,}  "
              f"ratio {row.compression_ratio:.1f}x  ({row.seconds:.0f} s)", flush=True)
        rows.append(row)
        write_outputs(rows, s, command, check)  # partial results are readable while the rest runs
    return rows


def train_teacher(s: BenchSettings, steps: int, quick: bool, init: Path | None, out: Path) -> Path:
    """Train `init` (or, without it, a random BART with our own tokenizer: from scratch) with
    cross-entropy alone, through compression.finetune, into `out`."""
    from demo.teacher import DEMO_SHAPE, QUICK_SHAPE, build_teacher

    initial = init or build_teacher(out.with_name(out.name + "-init"), QUICK_SHAPE if quick else DEMO_SHAPE)
    recipe = Recipe.from_dict(merge(base_recipe(BenchSettings(**{**asdict(s), "teacher": initial})), {
        "method": "finetune",
        # lr 5e-4 with demo/teacher.py's init_std 0.05: higher rates collapse a from-scratch encoder
        "teacher_training": {"max_steps": steps, "lr": 5.0e-4, "batch_size": s.batch_size,
                             "warmup_ratio": 0.03, "weight_decay": 0.01,
                             "max_source_length": s.max_source_length,
                             "max_target_length": s.max_target_length, "eval_every": max(1, steps // 3),
                             "checkpoint_every": max(1, steps // 3), "log_every": 50,
                             "precision": s.precision},
    }))
    result = finetune(recipe, out, device="cpu", progress=CurveRecorder())
    print(f"teacher trained {steps} steps: {result.best_metrics}", flush=True)
    return out


def run_sweep(configs: list[Config], s: BenchSettings, args: argparse.Namespace) -> list[RowResult]:
    """The matrix as one sweep through the service; its id and recommendation go in sweep.json."""
    from bench.quality_sweep import run_as_sweep
    from dqbart_client import Client

    with Client(args.api_url) as client:
        sweep, rows = run_as_sweep(client, configs, s, base_recipe(s), args.gate_max_drop, args.max_parallel)
    (s.out / "sweep.json").write_text(json.dumps(sweep.model_dump(mode="json"), indent=2) + "\n")
    return [RowResult(**row) for row in rows]


def config_name(row: RowResult) -> str:
    return row.name.split("@", 1)[0]


def means(rows: list[RowResult]) -> list[RowResult]:
    """One row per config: the mean of its seeds' scores, their standard deviation (n-1) in `std`."""
    groups: dict[str, list[RowResult]] = {}
    for row in rows:
        groups.setdefault(config_name(row), []).append(row)
    return [_mean_row(name, group) for name, group in groups.items()]


def _mean_row(name: str, group: list[RowResult]) -> RowResult:
    first = group[0]
    keys = set.intersection(*(set(r.metrics) for r in group))
    mean = {k: statistics.fmean(r.metrics[k] for r in group) for k in keys}
    std = {k: statistics.stdev(r.metrics[k] for r in group) for k in keys} if len(group) > 1 else {}
    return replace(first, name=name, metrics=mean, std=std, seeds=[s for r in group for s in r.seeds],
                   seconds=sum(r.seconds for r in group), curve=[])


def spread(row: RowResult) -> float:
    return row.std.get("rougeLsum", 0.0)


def teacher_result(rows: list[RowResult]) -> RowResult:
    """The fp32 teacher row, from the first run's report (every run scores it the same way)."""
    first = rows[0]
    return RowResult("teacher:fp32", "teacher", "fp32", "teacher", [], first.teacher_metrics,
                     first.teacher_bytes, 1.0, 0.0)


def pareto_front(rows: list[RowResult]) -> set[str]:
    """Rows that no other row beats on both size (smaller) and ROUGE-Lsum (higher)."""
    front = set()
    for row in rows:
        lsum = row.metrics.get("rougeLsum", 0.0)
        dominated = any(o.bytes <= row.bytes and o.metrics.get("rougeLsum", 0.0) >= lsum
                        and (o.bytes < row.bytes or o.metrics.get("rougeLsum", 0.0) > lsum) for o in rows)
        if not dominated:
            front.add(row.name)
    return front


def kept_percent(row: RowResult, teacher: RowResult) -> float | None:
    t_lsum = teacher.metrics.get("rougeLsum", 0.0)
    return 100.0 * row.metrics.get("rougeLsum", 0.0) / t_lsum if t_lsum > 0 else None


def target_checks(teacher: RowResult, rows: list[RowResult]) -> list[str]:
    """The issue's targets, measured: retention of teacher ROUGE-Lsum, ratio, dq against baselines."""
    by_name: dict[str, RowResult] = {}
    for r in sorted(rows, key=lambda r: len(r.seeds)):  # the row with most seeds wins a shared name
        by_name[canonical_name(r)] = r
    lines = []
    for name, keep, ratio in (("dq:8-8-8:6-3", 99.0, None), ("dq:2-2-8:6-3", 96.0, 14.0)):
        row = by_name.get(name)
        if row is None:
            lines.append(f"- {name}: not run")
            continue
        kept = kept_percent(row, teacher)
        ok = kept is not None and kept >= keep and (ratio is None or row.compression_ratio >= ratio)
        need = f">= {keep:.0f}%" + (f" and >= {ratio:.0f}x" if ratio else "")
        shown = "-" if kept is None else f"{kept:.1f}"
        lines.append(f"- {name}: keeps {shown}% of the teacher's ROUGE-Lsum at "
                     f"{row.compression_ratio:.1f}x (target {need}): **{'met' if ok else 'not met'}**")
    for row in rows:
        if row.method != "dq" or canonical_name(row) != f"dq:{row.bits}:{row.layers}":
            continue
        rivals = [by_name.get(f"{m}:{row.bits}:{row.layers}") for m in ("ptq", "qat_only")]
        rivals.append(by_name.get(f"distill_only:fp32:{row.layers}"))
        present = [r for r in rivals if r is not None]
        if not present:
            continue
        lsum = row.metrics.get("rougeLsum", 0.0)
        # "beats" is strict, and by more than the larger of the two seed-to-seed spreads
        not_beaten = [r for r in present
                      if lsum - r.metrics.get("rougeLsum", 0.0) <= max(spread(row), spread(r))]
        against = ", ".join(f"{r.method} {_score(r)}" for r in present)
        losers = ", ".join(r.method for r in not_beaten)
        verdict = f"does not beat {losers}" if not_beaten else "beats all"
        lines.append(f"- {row.name}: ROUGE-Lsum {_score(row)} vs {against}: **{verdict}**")
    return lines


def canonical_name(row: RowResult) -> str:
    return Config(row.method, row.bits, row.layers, tuple(row.options)).canonical().name


def _score(row: RowResult) -> str:
    """ROUGE-Lsum, with its spread and seed count where there are several seeds."""
    lsum = f"{row.metrics.get('rougeLsum', 0.0):.2f}"
    return f"{lsum} ± {spread(row):.2f} ({len(row.seeds)} seeds)" if len(row.seeds) > 1 else lsum


def check_teacher(s: BenchSettings) -> InputDependence:
    """The teacher's loss on validation pairs with the right documents and with shuffled ones."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    records = read_records(s.validation, "document", "summary", param="--validation")[:CHECK_RECORDS]
    model = AutoModelForSeq2SeqLM.from_pretrained(str(s.teacher))
    tokenizer = AutoTokenizer.from_pretrained(str(s.teacher))
    return input_dependence(model, tokenizer, records, max_source_length=s.max_source_length,
                            max_target_length=s.max_target_length)


def teacher_check_lines(check: InputDependence) -> list[str]:
    lines = [f"Teacher input check ({CHECK_RECORDS} validation pairs): cross-entropy "
             f"{check.matched_loss:.3f} with the right documents, {check.shuffled_loss:.3f} with "
             f"shuffled ones (gap {check.gap:.3f} nats)."]
    if check.gap < MIN_INPUT_GAP:
        lines += ["", f"**Warning: the gap is below {MIN_INPUT_GAP} nats: this teacher barely reads its "
                      "input, so the rows below do not measure compression.**"]
    return lines


def markdown(teacher: RowResult, rows: list[RowResult], command: str, front: set[str],
             check: InputDependence) -> str:
    out = ["# Quality benchmark (bench/quality.py)", "", f"Command: `{command}`", "",
           *teacher_check_lines(check), "",
           "Rows of several seeds give the mean, and the standard deviation of ROUGE-Lsum; "
           "rows of one seed are marked `1`.", "",
           "| row | seeds | R-1 | R-2 | R-L | R-Lsum | % teacher | bytes on disk | ratio | train+eval s "
           "| Pareto |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in [teacher, *rows]:
        scores = " | ".join(f"{row.metrics.get(k, 0):.2f}" for k in ROUGE_KEYS[:3])
        kept = kept_percent(row, teacher)
        kept_text = "-" if kept is None else f"{kept:.1f}"
        lsum = _score(row).split(" (")[0]
        out.append(f"| {row.name} | {len(row.seeds) or '-'} | {scores} | {lsum} | {kept_text} "
                   f"| {row.bytes:,} | {row.compression_ratio:.1f}x | {row.seconds:.0f} "
                   f"| {'*' if row.name in front else ''} |")
    out += ["", "## Targets", "", *target_checks(teacher, rows), ""]
    return "\n".join(out)


def plot(teacher: RowResult, rows: list[RowResult], front: set[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = [teacher, *rows]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = (("teacher", "*"), ("dq", "o"), ("ptq", "s"), ("qat_only", "^"), ("distill_only", "D"))
    for method, marker in markers:
        group = [r for r in everything if r.method == method]
        if group:
            ax.errorbar([r.bytes / 1e6 for r in group], [r.metrics.get("rougeLsum", 0) for r in group],
                        yerr=[spread(r) for r in group], fmt=marker, markersize=7, capsize=3, label=method)
    # Labels of rows at one size alternate sides, so that they do not print over each other.
    for index, row in enumerate(sorted(everything, key=lambda r: (r.bytes, r.metrics.get("rougeLsum", 0)))):
        label = "teacher" if row.method == "teacher" else row.name.split(":", 1)[1]
        offset = (6, 4) if index % 2 == 0 else (6, -10)
        ax.annotate(label, (row.bytes / 1e6, row.metrics.get("rougeLsum", 0)),
                    fontsize=7, xytext=offset, textcoords="offset points")
    on_front = sorted((r for r in everything if r.name in front), key=lambda r: r.bytes)
    ax.plot([r.bytes / 1e6 for r in on_front], [r.metrics.get("rougeLsum", 0) for r in on_front],
            "k--", linewidth=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("model.safetensors on disk (MB, log scale)")
    ax.set_ylabel("ROUGE-Lsum (validation)")
    ax.set_title("Size against quality")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(runs: list[RowResult], s: BenchSettings, command: str, check: InputDependence) -> None:
    write_report(runs, s.out, {k: str(v) for k, v in asdict(s).items()}, command, check)


def write_report(runs: list[RowResult], out: Path, settings: dict[str, str], command: str,
                 check: InputDependence) -> None:
    """quality.md, quality.json and quality.png of `runs` (a seed's rows averaged with the others')."""
    rows = means(runs)
    teacher = teacher_result(rows)
    front = pareto_front([teacher, *rows])
    (out / "quality.md").write_text(markdown(teacher, rows, command, front, check))
    payload = {"command": command, "settings": settings,
               "teacher_input_check": asdict(check) | {"gap": check.gap},
               "rows": [asdict(r) | {"pareto": r.name in front} for r in [teacher, *rows]],
               "runs": [asdict(r) for r in runs]}
    (out / "quality.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(teacher, rows, front, out / "quality.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, help="a trained HF teacher directory")
    p.add_argument("--train-teacher-steps", type=int, default=None,
                   help="first train the teacher this many steps (CE only); without --teacher, build one "
                        "(demo/teacher.py) and train it from scratch")
    p.add_argument("--teacher-out", type=Path, default=None,
                   help="where the trained teacher goes (default OUT/teacher)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (1 is fastest on a shared, busy CPU)")
    p.add_argument("--train", type=Path, default=SAMPLE_DIR / "train.jsonl.gz")
    p.add_argument("--validation", type=Path, default=SAMPLE_DIR / "validation.jsonl.gz")
    p.add_argument("--configs", type=str, default=None,
                   help="space-separated method:bits:layers[:options], e.g. 'dq:2-2-8:6-3:per_tensor'; "
                        "default: the full matrix")
    p.add_argument("--steps", type=int, default=300, help="training steps per compressed row")
    p.add_argument("--max-val", type=int, default=100, help="validation documents scored per row")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5.0e-4)
    p.add_argument("--num-beams", type=int, default=2)
    p.add_argument("--seed", type=int, default=28, help="the first seed; `...@3` runs seed, seed+1, seed+2")
    p.add_argument("--warmup", type=float, default=0.05, help="warmup ratio of the student's schedule")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="the training passes (students, and a teacher trained by --train-teacher-steps); "
                        "bf16: autocast (about half a step's CPU time on AVX512-BF16 hosts, "
                        "docs/results/quality-v4 section 2)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="validate every N steps (the learning curve, in quality.json); default: at the end")
    p.add_argument("--selection-samples", type=int, default=None,
                   help="validation records scored during training; the final scores use --max-val")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--keep-artifacts", type=Path, default=None, metavar="DIR",
                   help="keep each row's packed artifact in DIR/<row> (default: only its report)")
    p.add_argument("--quick", action="store_true", help="tiny teacher, a few steps, six rows: minutes on CPU")
    p.add_argument("--api-url", default=None,
                   help="run the matrix as one sweep through this service (its key in DQB_API_KEY), "
                        "on its workers, instead of in this process (bench/quality_sweep.py)")
    p.add_argument("--gate-max-drop", type=float, default=0.02,
                   help="with --api-url: the sweep's gate, a relative drop of the teacher's ROUGE-Lsum")
    p.add_argument("--max-parallel", type=int, default=2, help="with --api-url: children at once")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python -m bench.quality " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.steps, args.max_val, args.batch_size = min(args.steps, 3), min(args.max_val, 8), 8
        args.train_teacher_steps = args.train_teacher_steps or 4
    configs = ([Config.parse(c) for c in args.configs.split()] if args.configs
               else QUICK_CONFIGS if args.quick else default_configs())
    teacher_out = args.teacher_out or args.out / "teacher"
    s = BenchSettings(teacher=args.teacher or teacher_out, train=args.train,
                      validation=args.validation, out=args.out, steps=args.steps, max_val=args.max_val,
                      batch_size=args.batch_size, lr=args.lr, num_beams=args.num_beams,
                      eval_max_length=8 if args.quick else 32, seed=args.seed, eval_every=args.eval_every,
                      selection_samples=args.selection_samples, warmup_ratio=args.warmup,
                      precision=args.precision,
                      artifacts=args.keep_artifacts)
    if args.train_teacher_steps and not (teacher_out / "config.json").exists():
        s.teacher = train_teacher(s, args.train_teacher_steps, args.quick, args.teacher, teacher_out)
    elif args.train_teacher_steps:
        s.teacher = teacher_out  # trained by an earlier run of the same command
    if not (s.teacher / "config.json").exists():
        raise SystemExit("give --teacher DIR (a trained teacher) or --train-teacher-steps N")
    check = check_teacher(s)
    print("\n".join(teacher_check_lines(check)), flush=True)
    rows = (run_sweep(configs, s, args) if args.api_url else run_all(configs, s, command, check))
    write_outputs(rows, s, command, check)
    print((s.out / "quality.md").read_text())


if __name__ == "__main__":
    main()
