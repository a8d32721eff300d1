"""Build the benchmark's teacher: a from-scratch BART (6-6, d_model 256) trained on the full
debian-desc train split until validation ROUGE-Lsum stops rising, then scored on the full
validation split against the lead-1 baseline (the document's first sentence).

One command, resumable: a stopped run continues from its newest checkpoint when started again
with the same arguments. Everything lives in --out (default: the user cache, outside git):

    init/                the untrained model with its tokenizer (trained on the train split)
    recipe.json          the `method: finetune` recipe it trains with
    teacher.checkpoints/ resumable checkpoints
    curve.jsonl          one line per evaluation: step, validation loss, ROUGE, input gap
    teacher/             the trained teacher (a plain Hugging Face directory)
    report.json, report.md  the final scores, the lead-1 row and the learning curve

    python -m bench.teacher                      # the default teacher, in ~/.cache/dqbart/teachers/
    python -m bench.teacher --quick --out /tmp/t # a tiny smoke run on the bundled sample
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from compression import ProgressEvent, Recipe
from compression.checkpoint import latest_checkpoint
from compression.data import Record, read_records
from compression.evaluate import generate, rouge, score
from compression.pipeline import finetune
from compression.recipe import EvaluationSpec, TeacherSpec
from compression.teacher import load_teacher
from demo.cache import benchmark_teacher_dir
from demo.teacher import QUICK_SHAPE, TeacherShape, build_teacher

REPO = Path(__file__).resolve().parent.parent
FULL_DATA = REPO.parent / "shared" / "data" / "debian-desc"
SAMPLE = REPO / "data" / "debian-desc-sample"
SHAPE = TeacherShape(d_model=256, ffn_dim=1024, heads=4)
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@dataclass(frozen=True)
class Plan:
    """What decides the teacher; a run resumes only with the same plan (the recipe checks it)."""

    shape: TeacherShape
    epochs: int = 4
    batch_size: int = 32
    lr: float = 5e-4
    eval_every: int = 500
    patience: int = 4
    eval_records: int = 300  # a fixed subset for the curve and model selection; the full split at the end
    seed: int = 0


def default_out(shape: TeacherShape) -> Path:
    return benchmark_teacher_dir(shape.d_model)


def lead_1(document: str) -> str:
    """The document's first sentence: up to the first . ! or ? followed by a space, within its first line."""
    first_line = document.strip().split("\n", 1)[0]
    for index, char in enumerate(first_line[:-1]):
        if char in ".!?" and first_line[index + 1] == " ":
            return first_line[: index + 1]
    return first_line


def lead_1_scores(records: Sequence[Record]) -> dict[str, float]:
    return rouge([lead_1(r.source) for r in records], [r.target for r in records])


def write_subset(source: Path, dest: Path, count: int) -> Path:
    """The first `count` records of a JSONL(.gz) file, as a .jsonl.gz file."""
    with gzip.open(source, "rt", encoding="utf-8") if source.suffix == ".gz" else open(source) as f:
        lines = [line for line in f if line.strip()][:count]
    with gzip.open(dest, "wt", encoding="utf-8") as f:
        f.writelines(lines)
    return dest


def teacher_recipe(plan: Plan, out: Path, train: Path, subset: Path) -> Recipe:
    return Recipe.from_dict({
        "task": "summarization",
        "method": "finetune",
        "teacher": {"path": str(out / "init")},
        "dataset": {"train": str(train), "validation": str(subset)},
        "teacher_training": {
            "epochs": plan.epochs, "lr": plan.lr, "batch_size": plan.batch_size, "warmup_ratio": 0.03,
            "weight_decay": 0.01, "max_source_length": 128, "max_target_length": 32, "seed": plan.seed,
            "eval_every": plan.eval_every, "checkpoint_every": plan.eval_every, "patience": plan.patience,
            "log_every": 50,
        },
        "evaluation": {"num_beams": 2, "max_length": 32, "batch_size": 50},
    })


class CurveLog:
    """Appends each evaluation to curve.jsonl and prints one line per event (log files stay small)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, event: ProgressEvent) -> bool:
        evals = {k.removeprefix("eval/"): v for k, v in event.metrics.items() if k.startswith("eval/")}
        if evals:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": event.step, **evals}) + "\n")
            scores = ", ".join(f"{k} {v:.3f}" for k, v in evals.items())
            print(f"step {event.step}: {scores}", flush=True)
        elif "loss/total" in event.metrics:
            loss = event.metrics["loss/total"]
            print(f"step {event.step}/{event.total_steps}: loss {loss:.4f}", flush=True)
        elif event.kind != "metrics":
            print(f"[{event.stage}] {event.kind} {event.message or event.checkpoint or ''}", flush=True)
        return False


def read_curve(path: Path) -> list[dict[str, float]]:
    """Evaluations by step; a step evaluated again after a resume keeps its last line."""
    if not path.is_file():
        return []
    by_step = {row["step"]: row for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
    return [by_step[step] for step in sorted(by_step)]


def check_same_plan(plan: Plan, path: Path) -> None:
    """A folder holds one plan's teacher: resuming it with another plan would mix two runs."""
    wanted = asdict(plan)
    if not path.is_file():
        path.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
        return
    held = json.loads(path.read_text(encoding="utf-8"))
    if held != wanted:
        changed = sorted(k for k in wanted if held.get(k) != wanted[k])
        raise SystemExit(f"{path.parent} holds a teacher of another plan ({', '.join(changed)} differ): "
                         "give another --out, or remove that folder to start over")


def train_teacher(plan: Plan, out: Path, train: Path, validation: Path) -> Path:
    """Build (once) and train (resuming) the teacher; returns its Hugging Face directory."""
    out.mkdir(parents=True, exist_ok=True)
    check_same_plan(plan, out / "plan.json")
    if not (out / "init" / "model.safetensors").is_file():
        build_teacher(out / "init", plan.shape, plan.seed, train_file=train)
    subset = write_subset(validation, out / "validation-subset.jsonl.gz", plan.eval_records)
    recipe = teacher_recipe(plan, out, train, subset)
    (out / "recipe.json").write_text(recipe.to_json(), encoding="utf-8")
    checkpoints = out / "teacher.checkpoints"
    resume = latest_checkpoint(checkpoints) if checkpoints.is_dir() else None
    if resume is not None:
        print(f"resuming from {resume}", flush=True)
    finetune(recipe, out / "teacher", device="cpu", checkpoint_dir=checkpoints, resume_from=resume,
             progress=CurveLog(out / "curve.jsonl"))
    return out / "teacher"


def final_report(plan: Plan, out: Path, validation: Path, num_beams: int) -> dict[str, Any]:
    """The trained teacher and lead-1 on the full validation split, with the learning curve."""
    records = read_records(validation, "document", "summary", param="--validation")
    model, tokenizer = load_teacher(TeacherSpec(path=str(out / "teacher")))
    spec = EvaluationSpec(num_beams=num_beams, max_length=32, batch_size=50)
    predictions = generate(model, tokenizer, [r.source for r in records], spec, max_source_length=128)
    teacher = score("summarization", predictions, [r.target for r in records])
    lead = lead_1_scores(records)
    trained = json.loads((out / "teacher" / "report.json").read_text(encoding="utf-8"))
    report = {
        "plan": asdict(plan),
        "validation_records": len(records),
        "num_beams": num_beams,
        "teacher": teacher,
        "lead_1": lead,
        "margin_over_lead_1": {k: teacher[k] - lead[k] for k in ROUGE_KEYS},
        "training_steps": trained["training_steps"],
        "parameters": trained["parameters"],
        "input_check": trained["input_check"],
        "curve": read_curve(out / "curve.jsonl"),
        "examples": [{"document": r.source, "reference": r.target, "teacher": p, "lead_1": lead_1(r.source)}
                     for r, p in zip(records[:5], predictions[:5], strict=True)],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text("\n".join(report_lines(report)) + "\n", encoding="utf-8")
    return report


def report_lines(report: dict[str, Any]) -> list[str]:
    plan, n = report["plan"], report["validation_records"]
    lines = [
        f"# Teacher: BART 6-6, d_model {plan['shape']['d_model']}, {report['parameters']:,} parameters",
        "",
        f"Full validation split ({n} records), beam {report['num_beams']}, 32 tokens; "
        f"{report['training_steps']} steps of batch {plan['batch_size']}.",
        "",
        "| row | R-1 | R-2 | R-L | R-Lsum |",
        "|---|---|---|---|---|",
    ]
    for name in ("teacher", "lead_1", "margin_over_lead_1"):
        lines.append(f"| {name} | " + " | ".join(f"{report[name][k]:.2f}" for k in ROUGE_KEYS) + " |")
    lines += ["", f"Learning curve (the first {plan['eval_records']} validation records, beam 2):", "",
              "| step | val loss | shuffled loss | gap (nats) | R-1 | R-2 | R-Lsum |",
              "|---|---|---|---|---|---|---|"]
    for row in report["curve"]:
        lines.append(f"| {row['step']} | {row.get('matched_loss', float('nan')):.3f} | "
                     f"{row.get('shuffled_loss', float('nan')):.3f} | {row.get('gap', float('nan')):.3f} | "
                     f"{row['rouge1']:.2f} | {row['rouge2']:.2f} | {row['rougeLsum']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: ~/.cache/dqbart/teachers/debian-d<d_model>")
    parser.add_argument("--train", type=Path, default=FULL_DATA / "train.jsonl.gz")
    parser.add_argument("--validation", type=Path, default=FULL_DATA / "validation.jsonl.gz")
    parser.add_argument("--d-model", type=int, default=SHAPE.d_model)
    parser.add_argument("--ffn-dim", type=int, default=SHAPE.ffn_dim)
    parser.add_argument("--init-std", type=float, default=SHAPE.init_std)
    parser.add_argument("--lr", type=float, default=Plan.lr)
    parser.add_argument("--epochs", type=int, default=Plan.epochs)
    parser.add_argument("--eval-every", type=int, default=Plan.eval_every)
    parser.add_argument("--eval-records", type=int, default=Plan.eval_records)
    parser.add_argument("--num-beams", type=int, default=4, help="for the final full-split scores")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="score an already trained teacher")
    parser.add_argument("--quick", action="store_true", help="a tiny model on the bundled sample")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        plan = Plan(QUICK_SHAPE, epochs=1, batch_size=16, lr=1e-3, eval_every=20, eval_records=20)
        args.train, args.validation = SAMPLE / "train.jsonl.gz", SAMPLE / "validation.jsonl.gz"
    else:
        shape = TeacherShape(**{**asdict(SHAPE), "d_model": args.d_model, "ffn_dim": args.ffn_dim,
                                "init_std": args.init_std})
        plan = Plan(shape, epochs=args.epochs, lr=args.lr, eval_every=args.eval_every,
                    eval_records=args.eval_records)
    out = args.out or default_out(plan.shape)
    if not args.report_only:
        train_teacher(plan, out, args.train, args.validation)
    report = final_report(plan, out, args.validation, args.num_beams)
    print("\n".join(report_lines(report)))
    print(f"teacher: {out / 'teacher'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
