"""Build the benchmark's teacher: a from-scratch BART (6-6, d_model 256) trained on the full
debian-desc train split until validation ROUGE-Lsum stops rising, then scored on the full
validation split against the lead-1 baseline (the document's first sentence). With
`--task translation`: an mBART (same shape, a joint en-de tokenizer with mBART-50's language
codes) trained on the en-de pairs until validation BLEU stops rising, scored with BLEU and chrF
(sacrebleu, signatures in the report) against the copy baseline (the English source as output).

One command, resumable: a stopped run continues from its newest checkpoint when started again
with the same arguments. Everything lives in --out (default: the user cache, outside git):

    init/                the untrained model with its tokenizer (trained on the train split)
    cycleN/              with --cycles N+1: the run folder of the teacher one cycle short (restored
                         or trained; it nests its own earlier cycles)
    recipe.json          the `method: finetune` recipe it trains with
    teacher.checkpoints/ resumable checkpoints
    curve.jsonl          one line per evaluation: step, validation loss, ROUGE, input gap
    teacher/             the trained teacher (a plain Hugging Face directory)
    report.json, report.md  the final scores, the lead-1 row and the learning curve

    python -m bench.teacher                      # the default teacher, in ~/.cache/dqbart/teachers/
    python -m bench.teacher --cycles 2           # that teacher after a second learning-rate cycle
    python -m bench.teacher --cycles 3           # and after a third (from the carried second one)
    python -m bench.teacher --quick --out /tmp/t # a tiny smoke run on the bundled sample
    python -m bench.teacher --task translation   # en->de, in ~/.cache/dqbart/teachers/en-de-d256/
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import BLEU, CHRF

from compression import ProgressEvent, Recipe
from compression.checkpoint import latest_checkpoint
from compression.data import read_records
from compression.evaluate import generate, score
from compression.pipeline import finetune
from compression.recipe import EvaluationSpec, TeacherSpec
from compression.teacher import load_teacher
from compression.tokenizer import token_id
from demo.cache import benchmark_teacher_dir
from demo.snapshot import SNAPSHOT_ROOT, restore_snapshot, round_to_half, save_snapshot
from demo.teacher import QUICK_SHAPE, TeacherShape, build_teacher, build_translation_teacher

REPO = Path(__file__).resolve().parent.parent
FULL_DATA = REPO.parent / "shared" / "data" / "debian-desc"
SAMPLE = REPO / "data" / "debian-desc-sample"
SHAPE = TeacherShape(d_model=256, ffn_dim=1024, heads=4)
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def lead_1(document: str) -> str:
    """The document's first sentence: up to the first . ! or ? followed by a space, within its first line."""
    first_line = document.strip().split("\n", 1)[0]
    for index, char in enumerate(first_line[:-1]):
        if char in ".!?" and first_line[index + 1] == " ":
            return first_line[: index + 1]
    return first_line


def copy_source(source: str) -> str:
    """The translation baseline: the untranslated source (what BLEU gives for shared names and numbers)."""
    return source


@dataclass(frozen=True)
class Task:
    """What differs between the summarization and the translation teacher."""

    name: str  # the recipe's task
    data: str  # folder name in the teacher cache
    train: Path  # the full splits
    validation: Path
    sample: tuple[Path, Path]  # the bundled sample's train and validation files (--quick)
    fields: tuple[str, str]  # source and target fields of the records
    max_lengths: tuple[int, int]  # source and target tokens
    languages: tuple[str, str] | None  # mBART's src_lang, tgt_lang
    metrics: tuple[str, ...]
    baseline: str
    baseline_output: Callable[[str], str]
    build: Callable[..., Path]  # (out_dir, shape, seed, train_file=...) -> the untrained teacher
    epochs: int  # an upper bound: patience on the validation metric usually stops earlier
    denoise_steps: int = 0  # the default of --denoise-steps


SUMMARIZATION = Task(
    "summarization", "debian", FULL_DATA / "train.jsonl.gz", FULL_DATA / "validation.jsonl.gz",
    (SAMPLE / "train.jsonl.gz", SAMPLE / "validation.jsonl.gz"), ("document", "summary"), (128, 32), None,
    ROUGE_KEYS, "lead_1", lead_1, build_teacher, epochs=4,
    # 1,000 steps of denoising keep the encoder read: the input gap reached 2.2 nats where the task
    # alone left it at 0.05 after 750 steps (quality-v4 section 1).
    denoise_steps=1000,
)
TRANSLATION = Task(
    "translation", "en-de", FULL_DATA / "en-de" / "train.jsonl.gz",
    FULL_DATA / "en-de" / "validation.jsonl.gz",
    (SAMPLE / "en-de-train.jsonl.gz", SAMPLE / "en-de-validation.jsonl.gz"), ("source", "target"), (128, 128),
    ("en_XX", "de_DE"), ("bleu", "chrf"), "copy", copy_source, build_translation_teacher,
    # 2,478 steps, 1.5-2.5 hours on one core: each session gets a new machine and loses the cache,
    # so a stage must finish within one (docs/results/translation-v1); --cycles continues from the
    # carried snapshot, as for summarization.
    epochs=2,
)
TASKS = {task.name: task for task in (SUMMARIZATION, TRANSLATION)}


@dataclass(frozen=True)
class Cycle:
    """A further learning-rate cycle on the trained teacher: fixed task steps with a fresh warmup
    and decay, the best subset evaluation kept. The first cycle's curve had flattened only because
    its rate had decayed to 0; a second one gained 2.3 R-Lsum (quality-v4 section 1f)."""

    steps: int
    lr: float
    warmup: float
    seed: int
    eval_every: int
    eval_beams: int


# Section 1f's cycle (run then as docs/results/quality-v4/run.sh step 1c): data/teachers/debian-d256-c2.
SECOND_CYCLE = Cycle(steps=1500, lr=5e-4, warmup=0.03, seed=28, eval_every=500, eval_beams=4)
# A 2-bit qat_only student trained 2,000 more steps from the second-cycle teacher beat it by
# 0.93 R-Lsum (quality-v4 section 3c), so that teacher had not converged either. 2,000 steps is
# what an fp32 run on 2 AVX2 cores finishes within a session; a further cycle can follow it.
THIRD_CYCLE = Cycle(steps=2000, lr=5e-4, warmup=0.03, seed=29, eval_every=500, eval_beams=4)
CYCLES = (SECOND_CYCLE, THIRD_CYCLE)


@dataclass(frozen=True)
class Plan:
    """What decides the teacher; a run resumes only with the same plan (the recipe checks it)."""

    shape: TeacherShape
    task: str = "summarization"
    epochs: int = 4
    batch_size: int = 32
    lr: float = 3e-4
    eval_every: int = 250
    patience: int = 4
    eval_records: int = 300  # a fixed subset for the curve and model selection; the full split at the end
    seed: int = 0
    warmup: float = 0.15  # share of the steps with a rising learning rate
    # Steps of a denoising stage before the task: rebuild each document's opening from a copy with
    # word spans masked (BART's own pre-training objective, on the task's documents). It makes
    # the decoder read the encoder from the start; without it a from-scratch encoder can collapse
    # while the decoder learns the targets' language alone (quality-v4 section 1).
    denoise_steps: int = 0
    cycles: tuple[Cycle, ...] = ()  # learning-rate cycles after the first one

    def to_dict(self) -> dict[str, Any]:
        """As plan.json holds it (tuples as lists), for comparing with a stored plan."""
        loaded: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return loaded


def default_out(plan: Plan) -> Path:
    return benchmark_teacher_dir(plan.shape.d_model, TASKS[plan.task].data, len(plan.cycles) + 1)


def signatures(task: Task, predictions: list[str], references: list[str]) -> dict[str, str]:
    """sacrebleu's signatures of the settings `compression.evaluate.bleu_chrf` scores with (its
    defaults); sacrebleu knows a signature only once the metric has scored something."""
    if task.name != "translation":
        return {}
    found: dict[str, str] = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        metric.corpus_score(predictions, [references])
        found[name] = str(metric.get_signature())
    return found


def write_subset(source: Path, dest: Path, count: int) -> Path:
    """The first `count` records of a JSONL(.gz) file, as a .jsonl.gz file."""
    with gzip.open(source, "rt", encoding="utf-8") if source.suffix == ".gz" else open(source) as f:
        lines = [line for line in f if line.strip()][:count]
    with gzip.open(dest, "wt", encoding="utf-8") as f:
        f.writelines(lines)
    return dest


def mask_spans(text: str, rng: random.Random, ratio: float = 0.3, mean_span: float = 3.0) -> str:
    """BART's text infilling on words: spans of about `mean_span` words, `ratio` of them in all,
    each span replaced by one <mask>."""
    words, index = text.split(), 0
    out: list[str] = []
    while index < len(words):
        if rng.random() < ratio / mean_span and out[-1:] != ["<mask>"]:
            out.append("<mask>")
            index += max(1, round(rng.expovariate(1 / mean_span)))
        else:
            out.append(words[index])
            index += 1
    return " ".join(out)


def write_denoising(source: Path, dest: Path, seed: int, count: int | None = None) -> Path:
    """Denoising pairs from the task's sources: the masked text as source, the text itself as target."""
    task_fields = ("document", "source")
    rng = random.Random(seed)
    with gzip.open(source, "rt", encoding="utf-8") if source.suffix == ".gz" else open(source) as f:
        records = [json.loads(line) for line in f if line.strip()][:count]
    with gzip.open(dest, "wt", encoding="utf-8") as f:
        for record in records:
            text = next(record[k] for k in task_fields if k in record)
            f.write(json.dumps({"source": mask_spans(text, rng), "target": text}) + "\n")
    return dest


def teacher_recipe(plan: Plan, teacher: Path, train: Path, subset: Path, *, denoising: bool = False,
                   cycle: Cycle | None = None, precision: str = "fp32") -> Recipe:
    """The task's training recipe; with `denoising`, the denoising stage's (fixed steps, the
    records' source and target fields); with `cycle`, that further cycle's. `precision` is how it
    computes, not part of the plan: a run may resume in another (bf16 autocast halves a step on
    some CPUs, not on others)."""
    task = TASKS[plan.task]
    (source_field, target_field), (source_length, target_length) = task.fields, task.max_lengths
    if denoising:
        source_field, target_field = "source", "target"
    languages = dict(zip(("src_lang", "tgt_lang"), task.languages, strict=True)) if task.languages else {}
    stage: dict[str, Any] = {"patience": plan.patience}
    beams = 2
    if denoising:
        stage = {"max_steps": plan.denoise_steps, "patience": None}
    elif cycle is not None:
        stage = {"max_steps": cycle.steps, "patience": None, "lr": cycle.lr, "warmup_ratio": cycle.warmup,
                 "seed": cycle.seed, "eval_every": cycle.eval_every, "checkpoint_every": cycle.eval_every}
        beams = cycle.eval_beams
    return Recipe.from_dict({
        "task": task.name,
        **languages,
        "method": "finetune",
        "teacher": {"path": str(teacher)},
        "dataset": {"train": str(train), "validation": str(subset),
                    "source_field": source_field, "target_field": target_field},
        "teacher_training": {
            "epochs": plan.epochs, "lr": plan.lr, "batch_size": plan.batch_size, "warmup_ratio": plan.warmup,
            "weight_decay": 0.01, "max_source_length": source_length, "max_target_length": target_length,
            "seed": plan.seed, "eval_every": plan.eval_every, "checkpoint_every": plan.eval_every,
            "log_every": 50, "precision": precision, **stage,
        },
        "evaluation": {"num_beams": beams, "max_length": target_length, "batch_size": 50},
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
    wanted = plan.to_dict()
    if not path.is_file():
        path.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
        return
    held = json.loads(path.read_text(encoding="utf-8"))
    if held != wanted:
        changed = sorted(k for k in wanted if held.get(k) != wanted[k])
        raise SystemExit(f"{path.parent} holds a teacher of another plan ({', '.join(changed)} differ): "
                         "give another --out, or remove that folder to start over")


def run_stage(recipe: Recipe, out: Path, name: str, curve: Path) -> Path:
    """Train (resuming from the stage's newest checkpoint) into out/<name>; returns that directory."""
    checkpoints = out / f"{name}.checkpoints"
    resume = latest_checkpoint(checkpoints) if checkpoints.is_dir() else None
    if resume is not None:
        print(f"resuming from {resume}", flush=True)
    finetune(recipe, out / name, device="cpu", checkpoint_dir=checkpoints, resume_from=resume,
             progress=CurveLog(curve))
    return out / name


def denoise(plan: Plan, out: Path, train: Path, validation: Path, precision: str = "fp32") -> Path:
    """The denoising stage (once): the untrained model in init/, the denoised one in denoised/."""
    if (out / "denoised" / "report.json").is_file():
        return out / "denoised"
    pairs = write_denoising(train, out / "denoising-train.jsonl.gz", plan.seed)
    subset = write_denoising(validation, out / "denoising-validation.jsonl.gz", plan.seed, plan.eval_records)
    recipe = teacher_recipe(plan, out / "init", pairs, subset, denoising=True, precision=precision)
    (out / "denoising-recipe.json").write_text(recipe.to_json(), encoding="utf-8")
    return run_stage(recipe, out, "denoised", out / "denoising-curve.jsonl")


def train_teacher(plan: Plan, out: Path, train: Path, validation: Path, precision: str = "fp32") -> Path:
    """Build (once), denoise (when planned) and train (resuming) the teacher, then its further
    cycles; returns its HF directory."""
    if plan.denoise_steps and plan.task != "summarization":
        raise SystemExit("--denoise-steps is for the summarization teacher (BART's documents)")
    out.mkdir(parents=True, exist_ok=True)
    check_same_plan(plan, out / "plan.json")
    subset = write_subset(validation, out / "validation-subset.jsonl.gz", plan.eval_records)
    if plan.cycles:
        start = earlier_teacher(plan, out / f"cycle{len(plan.cycles)}", train, validation, precision)
        recipe = teacher_recipe(plan, start, train, subset, cycle=plan.cycles[-1], precision=precision)
        (out / "teacher-recipe.json").write_text(recipe.to_json(), encoding="utf-8")
        teacher = run_stage(recipe, out, "teacher", out / "curve.jsonl")
    else:
        if not (out / "init" / "model.safetensors").is_file():
            TASKS[plan.task].build(out / "init", plan.shape, plan.seed, train_file=train)
        start = denoise(plan, out, train, validation, precision) if plan.denoise_steps else out / "init"
        recipe = teacher_recipe(plan, start, train, subset, precision=precision)
        (out / "recipe.json").write_text(recipe.to_json(), encoding="utf-8")
        teacher = run_stage(recipe, out, "teacher", out / "curve.jsonl")
    round_to_half(teacher)  # scored as the repository's float16 snapshot restores it (demo/snapshot.py)
    return teacher


def earlier_teacher(plan: Plan, folder: Path, train: Path, validation: Path, precision: str) -> Path:
    """The finished teacher of the plan without its last cycle, in `folder` (a whole run folder,
    which nests its own earlier cycles): kept, restored from the repository's snapshot (also under
    --retrain, which retrains the last cycle only), or trained."""
    earlier = replace(plan, cycles=plan.cycles[:-1])
    snapshot = SNAPSHOT_ROOT / default_out(earlier).name
    done = (folder / "teacher" / "report.json").is_file()
    if not done and not restore_snapshot(snapshot, folder, earlier.to_dict()):
        train_teacher(earlier, folder, train, validation, precision)
    return folder / "teacher"


def final_report(plan: Plan, out: Path, validation: Path, num_beams: int) -> dict[str, Any]:
    """The trained teacher and the task's baseline on the full validation split, with the learning curve."""
    task = TASKS[plan.task]
    records = read_records(validation, *task.fields, param="--validation")
    model, tokenizer = load_teacher(TeacherSpec(path=str(out / "teacher")))
    forced_bos = None
    if task.languages:  # the source language code on the inputs, the target code forced first
        tokenizer.src_lang = task.languages[0]
        forced_bos = token_id(tokenizer, task.languages[1])
    spec = EvaluationSpec(num_beams=num_beams, max_length=task.max_lengths[1], batch_size=50)
    predictions = generate(model, tokenizer, [r.source for r in records], spec,
                           max_source_length=task.max_lengths[0], forced_bos_token_id=forced_bos)
    references = [r.target for r in records]
    teacher = score(task.name, predictions, references)
    baseline = score(task.name, [task.baseline_output(r.source) for r in records], references)
    trained = json.loads((out / "teacher" / "report.json").read_text(encoding="utf-8"))
    report = {
        "plan": asdict(plan),
        "validation_records": len(records),
        "num_beams": num_beams,
        "metrics": list(task.metrics),
        "signatures": signatures(task, predictions, references),
        "baseline": task.baseline,
        "teacher": teacher,
        task.baseline: baseline,
        f"margin_over_{task.baseline}": {k: teacher[k] - baseline[k] for k in task.metrics},
        "training_steps": trained["training_steps"],
        "parameters": trained["parameters"],
        "input_check": trained["input_check"],
        "curve": read_curve(out / "curve.jsonl"),
        "examples": [{task.fields[0]: r.source, "reference": r.target, "teacher": p,
                      task.baseline: task.baseline_output(r.source)}
                     for r, p in zip(records[:5], predictions[:5], strict=True)],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text("\n".join(report_lines(report)) + "\n", encoding="utf-8")
    return report


METRIC_TITLES = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "rougeLsum": "R-Lsum",
                 "bleu": "BLEU", "chrf": "chrF"}


def report_lines(report: dict[str, Any]) -> list[str]:
    plan, n = report["plan"], report["validation_records"]
    metrics, baseline = report["metrics"], report["baseline"]
    task = TASKS[plan["task"]]
    model = "mBART (en_XX -> de_DE)" if task.languages else "BART"
    titles = " | ".join(METRIC_TITLES[k] for k in metrics)
    rule = "|---" * (len(metrics) + 1) + "|"
    lines = [
        f"# Teacher: {model} 6-6, d_model {plan['shape']['d_model']}, {report['parameters']:,} parameters",
        "",
        f"Full validation split ({n} records), beam {report['num_beams']}, {task.max_lengths[1]} tokens; "
        f"{report['training_steps']} steps of batch {plan['batch_size']}.",
        *[f"sacrebleu {name}: `{signature}`" for name, signature in report["signatures"].items()],
        "",
        f"| row | {titles} |",
        rule,
    ]
    for name in ("teacher", baseline, f"margin_over_{baseline}"):
        lines.append(f"| {name} | " + " | ".join(f"{report[name][k]:.2f}" for k in metrics) + " |")
    beams = plan["cycles"][-1]["eval_beams"] if plan.get("cycles") else 2
    cycle = f", cycle {len(plan['cycles']) + 1}'s steps" if plan.get("cycles") else ""
    subset = f"the first {plan['eval_records']} validation records, beam {beams}{cycle}"
    lines += ["", f"Learning curve ({subset}):", "",
              f"| step | val loss | shuffled loss | gap (nats) | {titles} |",
              "|---|---|---" + rule]
    for row in report["curve"]:
        lines.append(f"| {row['step']} | {row.get('matched_loss', float('nan')):.3f} | "
                     f"{row.get('shuffled_loss', float('nan')):.3f} | {row.get('gap', float('nan')):.3f} | "
                     + " | ".join(f"{row[k]:.2f}" for k in metrics) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="summarization")
    parser.add_argument("--out", type=Path,
                        help="default: ~/.cache/dqbart/teachers/<debian|en-de>-d<d_model>")
    parser.add_argument("--train", type=Path, help="default: the task's full train split in ../shared/data")
    parser.add_argument("--validation", type=Path, help="default: the task's full validation split")
    parser.add_argument("--d-model", type=int, default=SHAPE.d_model)
    parser.add_argument("--ffn-dim", type=int, default=SHAPE.ffn_dim)
    parser.add_argument("--init-std", type=float, default=SHAPE.init_std)
    parser.add_argument("--lr", type=float, default=Plan.lr)
    parser.add_argument("--warmup", type=float, default=Plan.warmup, help="share of the steps warming up")
    parser.add_argument("--denoise-steps", type=int,
                        help="steps of BART's denoising objective on the documents before the task "
                             "(default: 1000 for summarization, 0 for translation)")
    parser.add_argument("--epochs", type=int, help="default: 4 (summarization), 2 (translation)")
    parser.add_argument("--eval-every", type=int, default=Plan.eval_every)
    parser.add_argument("--eval-records", type=int, default=Plan.eval_records)
    parser.add_argument("--num-beams", type=int, default=4, help="for the final full-split scores")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: autocast the training passes (1.8x faster a step on an AVX512-BF16 "
                             "AMD EPYC, slower on an Intel one without AMX: measure first)")
    parser.add_argument("--report-only", action="store_true", help="score an already trained teacher")
    parser.add_argument("--retrain", action="store_true",
                        help="train even where data/teachers/ holds this plan's trained teacher")
    parser.add_argument("--save-snapshot", action="store_true",
                        help="copy the finished, scored teacher into data/teachers/ (float16 weights)")
    parser.add_argument("--cycles", type=int, choices=range(1, len(CYCLES) + 2), default=1,
                        help="2: a second learning-rate cycle (SECOND_CYCLE) from the first one's teacher; "
                             "3: a third (THIRD_CYCLE) from the second one's")
    parser.add_argument("--quick", action="store_true", help="a tiny model on the bundled sample")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    train, validation = args.train or task.train, args.validation or task.validation
    if args.quick:
        plan = Plan(QUICK_SHAPE, task.name, epochs=1, batch_size=16, lr=1e-3, eval_every=20, eval_records=20,
                    denoise_steps=args.denoise_steps or 0)
        train, validation = task.sample
    else:
        shape = replace(SHAPE, d_model=args.d_model, ffn_dim=args.ffn_dim, init_std=args.init_std)
        plan = Plan(shape, task.name, epochs=args.epochs or task.epochs, lr=args.lr,
                    eval_every=args.eval_every, eval_records=args.eval_records, warmup=args.warmup,
                    denoise_steps=task.denoise_steps if args.denoise_steps is None else args.denoise_steps)
    plan = replace(plan, cycles=CYCLES[:args.cycles - 1])
    out = args.out or default_out(plan)
    snapshot = SNAPSHOT_ROOT / default_out(plan).name
    if args.save_snapshot:
        print(f"snapshot: {save_snapshot(out, snapshot)}", file=sys.stderr)
        return 0
    restorable = not (args.quick or args.report_only or args.retrain)
    if restorable and restore_snapshot(snapshot, out, plan.to_dict()):
        print((out / "report.md").read_text(encoding="utf-8"))
        print(f"teacher: {out / 'teacher'} (restored from {snapshot}; --retrain trains it again)",
              file=sys.stderr)
        return 0
    if not args.report_only:
        train_teacher(plan, out, train, validation, args.precision)
    report = final_report(plan, out, validation, args.num_beams)
    print("\n".join(report_lines(report)))
    print(f"teacher: {out / 'teacher'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
