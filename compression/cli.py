"""`python -m compression compress|finetune|evaluate|export|inspect`.

User errors (bad recipe, dataset or model directory) print one line naming the problem and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from compression.errors import Cancelled, UserInputError
from compression.progress import ProgressEvent

USER_ERROR = 2
CANCELLED = 130
TABLE_ORDER = (
    "teacher_parameters",
    "student_parameters",
    "teacher_bytes",
    "student_bytes",
    "theoretical_bytes",
    "compression_ratio",
)


class ProgressBar:
    """A tqdm bar per training stage; stage changes, evaluations and checkpoints as lines above it."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.stage = ""
        self.last_checkpoint: str | None = None

    def __call__(self, event: ProgressEvent) -> bool:
        if event.kind == "stage":
            self.close()
            tqdm.write(f"[{event.stage}] {event.message}")
        elif event.kind == "checkpoint":
            tqdm.write(f"checkpoint: {event.checkpoint}")
            self.last_checkpoint = event.checkpoint
        elif any(k.startswith("eval/") for k in event.metrics):
            scores = ", ".join(f"{k.removeprefix('eval/')} {v:.2f}" for k, v in event.metrics.items())
            tqdm.write(f"step {event.step}: {scores}")
        else:
            self._advance(event)
        return False

    def _advance(self, event: ProgressEvent) -> None:
        if self.bar is None or self.stage != event.stage:
            self.close()
            self.bar, self.stage = tqdm(total=event.total_steps, desc=event.stage, unit="step"), event.stage
        self.bar.update(event.step - self.bar.n)
        if "loss/total" in event.metrics:
            self.bar.set_postfix(loss=f"{event.metrics['loss/total']:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserInputError as exc:
        print(f"error: {exc.param}: {exc.message}", file=sys.stderr)
        return USER_ERROR
    except Cancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return CANCELLED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compression", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    for name, what in (
        ("compress", "distill and quantize a teacher into an artifact"),
        ("finetune", "train the recipe's teacher alone (cross-entropy)"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("recipe", type=Path, help="recipe file (YAML or JSON)")
        command.add_argument("--out", type=Path, required=True, help="output directory")
        command.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
        command.add_argument("--resume", type=Path, help="a checkpoint directory to continue from")
        command.add_argument("--checkpoint-dir", type=Path, help="default: <out>.checkpoints")
        command.set_defaults(run=_run_pipeline, command=name)

    evaluate = commands.add_parser("evaluate", help="score an artifact or a Hugging Face model directory")
    evaluate.add_argument("model_dir", type=Path, metavar="DIR")
    evaluate.add_argument("--data", type=Path, required=True, help="JSONL or CSV records")
    evaluate.add_argument("--source-field", help="default: the artifact recipe's, else 'document'")
    evaluate.add_argument("--target-field", help="default: the artifact recipe's, else 'summary'")
    evaluate.add_argument(
        "--task",
        choices=("summarization", "translation"),
        help="default: the artifact recipe's, else summarization",
    )
    evaluate.add_argument("--num-beams", type=int, default=4)
    evaluate.add_argument("--max-length", type=int, default=62)
    evaluate.add_argument("--limit", type=int, help="score only the first N records")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser("export", help="write an artifact (or a teacher) for another engine")
    export.add_argument("model_dir", type=Path, metavar="DIR")
    export.add_argument("--format", choices=("ctranslate2",), default="ctranslate2")
    export.add_argument("--out", type=Path, required=True, help="output directory (must not exist)")
    export.add_argument("--quantization", choices=("int8", "float32", "float16"), default="int8",
                        help="int8 keeps an artifact's stored codes and scales exactly")
    export.set_defaults(run=_export)

    inspect = commands.add_parser("inspect", help="print an artifact's size table")
    inspect.add_argument("model_dir", type=Path, metavar="DIR")
    inspect.set_defaults(run=_inspect)
    return parser


def _run_pipeline(args: argparse.Namespace) -> int:
    from compression.recipe import load_recipe

    recipe = load_recipe(args.recipe)  # a bad recipe fails before the training stack loads
    from compression import pipeline

    wants_finetune = args.command == "finetune" or recipe.method == "finetune"
    entry = pipeline.finetune if wants_finetune else pipeline.compress
    bar = ProgressBar()
    try:
        result = entry(
            recipe,
            args.out,
            device=args.device,
            checkpoint_dir=args.checkpoint_dir,
            resume_from=args.resume,
            progress=bar,
        )
    except KeyboardInterrupt:
        hint = f"; continue with --resume {bar.last_checkpoint}" if bar.last_checkpoint else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return CANCELLED
    finally:
        bar.close()
    summary = {"output": str(result.artifact_dir), "metrics": result.best_metrics}
    if "compression_ratio" in result.report:
        summary["compression_ratio"] = result.report["compression_ratio"]
    print(json.dumps(summary))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from compression.data import read_records
    from compression.evaluate import evaluate_model
    from compression.recipe import EvaluationSpec

    model, tokenizer, recipe = _load_any(args.model_dir, args.device)
    dataset = recipe.get("dataset", {})
    source = args.source_field or dataset.get("source_field", "document")
    target = args.target_field or dataset.get("target_field", "summary")
    records = read_records(args.data, source, target, param="--data")[: args.limit]
    try:
        spec = EvaluationSpec(num_beams=args.num_beams, max_length=args.max_length)
    except ValueError as exc:
        raise UserInputError("--num-beams/--max-length", str(exc)) from None
    task = args.task or recipe.get("task", "summarization")
    metrics = evaluate_model(model, tokenizer, records, task, spec)
    print(json.dumps({"task": task, "records": len(records), **metrics}))
    return 0


def _load_any(path: Path, device: str) -> tuple[Any, Any, dict[str, Any]]:
    """An artifact (quantization.json) through compression.load, else a plain HF model directory."""
    from compression.artifact import load
    from compression.recipe import TeacherSpec
    from compression.runtime import resolve_device
    from compression.teacher import load_teacher

    if (path / "quantization.json").is_file():
        model, tokenizer = load(path, resolve_device(device))
        recipe = json.loads((path / "quantization.json").read_text(encoding="utf-8")).get("recipe", {})
        return model, tokenizer, recipe
    model, tokenizer = load_teacher(TeacherSpec(path=str(path)), resolve_device(device))
    return model, tokenizer, {}


def _export(args: argparse.Namespace) -> int:
    if not (args.model_dir / "config.json").is_file():
        raise UserInputError("DIR", f"{args.model_dir} is not a model directory (no config.json)")
    if args.out.exists():
        raise UserInputError("--out", f"{args.out} already exists")
    from compression.ct2 import convert

    info = convert(args.model_dir, args.out, quantization=args.quantization)
    print(json.dumps({"output": str(args.out), **info}))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    report_path = args.model_dir / "report.json"
    if not report_path.is_file():
        raise UserInputError("DIR", f"{args.model_dir} has no report.json (not an artifact)")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    for line in size_table(report):
        print(line)
    return 0


def size_table(report: dict[str, Any]) -> list[str]:
    """The footprint fields of a report as aligned text lines."""
    sizes = [key for key in report if key.endswith(("_bytes", "_parameters", "_ratio"))]
    order = [key for key in TABLE_ORDER if key in sizes] + sorted(set(sizes) - set(TABLE_ORDER))
    rows = [(key, report[key]) for key in order]
    width = max((len(key) for key, _ in rows), default=0)
    lines = []
    for key, value in rows:
        if key.endswith("_bytes"):
            shown = f"{value:>14,d} B  {value / 2**20:10.2f} MiB"
        elif isinstance(value, float):
            shown = f"{value:>14.2f}x" if key.endswith("_ratio") else f"{value:>14.2f}"
        else:
            shown = f"{value:>14,d}"
        lines.append(f"{key:<{width}}  {shown}")
    return lines
