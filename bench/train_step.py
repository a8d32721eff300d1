"""Time a QAT training step against a plain fp32 step of the same student.

A d_model-256 BART teacher (6-6, FFN 1024, vocab 8000) gives a 6-3 student; each variant runs
forward (with labels) + backward + AdamW on the same batch, with repeats interleaved so that
machine noise hits every variant alike. Both wall-clock and process CPU time are recorded: on a
shared machine the CPU time is the steadier of the two. Prints a table and writes JSON.

    python bench/train_step.py --out bench/results/train_step.json

`--loop` times the whole distillation step instead (the 8-8-8 student with its teacher), for
each way of spending the teacher: every term (the paper's), logits alone (no attentions or hidden
states gathered), KL logits, and no teacher at all (qat_only, or sequence-level targets computed
once); and counts the encoder tokens per epoch of the bundled sample with and without
length-bucketed batches.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration, PreTrainedModel

from compression.data import ResumableLoader, read_records, tokenize
from compression.recipe import DistillationSpec, QuantizationSpec, StudentSpec
from compression.student import build_student
from compression.swap import quantize_model
from compression.train import Distiller, autocast, compute_loss
from demo.teacher import QUICK_SHAPE, SAMPLE_TRAIN, build_teacher

VARIANTS: dict[str, QuantizationSpec | None] = {
    "fp32": None,
    "qat 8-8-8": QuantizationSpec(weight_bits=8, embedding_bits=8, activation_bits=8),
    "qat 2-2-8": QuantizationSpec(weight_bits=2, embedding_bits=2, activation_bits=8),
    "qat 2-2-8 per_row": QuantizationSpec(
        weight_bits=2, embedding_bits=2, activation_bits=8, granularity="per_row"
    ),
    "qat 4-4-8 lsq": QuantizationSpec(weight_bits=4, embedding_bits=4, activation_bits=8, learned_scale=True),
}


def _teacher(d_model: int, vocab: int) -> PreTrainedModel:
    config = BartConfig(
        vocab_size=vocab,
        d_model=d_model,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=4 * d_model,
        decoder_ffn_dim=4 * d_model,
        max_position_embeddings=256,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    config._attn_implementation = "eager"
    return BartForConditionalGeneration(config)


def _batch(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(3, args.vocab, (args.batch, args.src), generator=generator),
        "attention_mask": torch.ones(args.batch, args.src, dtype=torch.long),
        "labels": torch.randint(3, args.vocab, (args.batch, args.tgt), generator=generator),
    }


BF16 = " (bf16 autocast)"  # the suffix of a variant's twin under `--bf16`


def _step(
    model: PreTrainedModel, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], name: str
) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one training step."""
    wall, cpu = time.perf_counter(), time.process_time()
    with autocast(torch.device("cpu"), "bf16" if name.endswith(BF16) else "fp32"):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - wall, time.process_time() - cpu


def _summary(
    wall: list[float], cpu: list[float], base_wall: list[float], base_cpu: list[float]
) -> dict[str, Any]:
    return {
        "wall_min_s": min(wall),
        "wall_median_s": statistics.median(wall),
        "wall_ratio_to_fp32": statistics.median(wall) / statistics.median(base_wall),
        "cpu_min_s": min(cpu),
        "cpu_median_s": statistics.median(cpu),
        "cpu_ratio_to_fp32": statistics.median(cpu) / statistics.median(base_cpu),
        "wall_samples_s": wall,
        "cpu_samples_s": cpu,
    }


LOOP_VARIANTS: dict[str, DistillationSpec | None] = {
    "dq, every term (paper)": DistillationSpec(),
    "dq, logits only": DistillationSpec(hidden=0.0, attention=0.0),
    "dq, KL logits only": DistillationSpec(hidden=0.0, attention=0.0, logits_loss="kl", temperature=2.0),
    "no teacher (qat_only, seq-level)": None,
}


def _loop_step(
    model: PreTrainedModel, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
    distiller: Distiller | None,
) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    compute_loss(model, batch, distiller).total.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - wall, time.process_time() - cpu


def padded_tokens(batch_size: int) -> dict[str, int]:
    """Encoder tokens (padding included) of one epoch of the bundled sample, 128-token sources."""
    records = read_records(SAMPLE_TRAIN, "document", "summary")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(str(build_teacher(Path(tmp), QUICK_SHAPE)))
    examples = tokenize(records, tokenizer, 128, 32)
    counts = {}
    for name, bucket in (("plain shuffle", False), ("length-bucketed", True)):
        loader = ResumableLoader(examples, batch_size, 1, seed=0, bucket_by_length=bucket)
        counts[name] = sum(loader.next_batch()["input_ids"].numel() for _ in range(len(loader)))
    counts["real tokens"] = sum(len(e.input_ids) for e in examples)
    return counts


def run_loop(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher = _teacher(args.d_model, args.vocab).eval()
    student, layer_map = build_student(teacher, StudentSpec(encoder_layers=6, decoder_layers=3))
    quantize_model(student, QuantizationSpec(weight_bits=8, embedding_bits=8, activation_bits=8))
    runs = {}
    for name, spec in LOOP_VARIANTS.items():
        model = copy.deepcopy(student).train()
        distiller = None if spec is None else Distiller(teacher, layer_map.encoder, layer_map.decoder, spec)
        runs[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-5), distiller)
    batch = _batch(args)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.warmup + args.repeats):
        for name, (model, optimizer, distiller) in runs.items():
            elapsed, used = _loop_step(model, optimizer, batch, distiller)
            if repeat >= args.warmup:
                wall[name].append(elapsed)
                cpu[name].append(used)
    base = next(iter(runs))
    return {
        "setup": _setup(args, student) | {"variant": "dq 8-8-8 6-3, teacher 6-6"},
        "variants": {name: _summary(wall[name], cpu[name], wall[base], cpu[base]) for name in runs},
        "epoch_encoder_tokens": padded_tokens(args.batch),
    }


def _setup(args: argparse.Namespace, student: PreTrainedModel) -> dict[str, Any]:
    shape = ("d_model", "vocab", "batch", "src", "tgt", "threads", "repeats")
    return {k: getattr(args, k) for k in shape} | {
        "student": "6-3 of a 6-6 teacher",
        "parameters": sum(p.numel() for p in student.parameters()),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu_flags": _cpu_flags(),
    }


def _cpu_flags() -> str:
    """The vector extensions of this CPU (its timings depend on them)."""
    info = Path("/proc/cpuinfo")
    words = info.read_text().split() if info.is_file() else []
    return " ".join(sorted({w for w in words if w.startswith(("avx", "amx"))}))


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    student, _ = build_student(
        _teacher(args.d_model, args.vocab), StudentSpec(encoder_layers=6, decoder_layers=3)
    )
    runs = {}
    for name, spec in VARIANTS.items():
        if name != "fp32" and args.only and name not in args.only:
            continue
        model = copy.deepcopy(student)
        if spec is not None:
            quantize_model(model, spec)
        runs[name] = (model.train(), torch.optim.AdamW(model.parameters(), lr=1e-5))
        if args.bf16:
            twin = copy.deepcopy(model)
            runs[name + BF16] = (twin, torch.optim.AdamW(twin.parameters(), lr=1e-5))
    batch = _batch(args)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.warmup + args.repeats):
        for name, (model, optimizer) in runs.items():
            elapsed, used = _step(model, optimizer, batch, name)
            if repeat >= args.warmup:
                wall[name].append(elapsed)
                cpu[name].append(used)
    rows = {name: _summary(wall[name], cpu[name], wall["fp32"], cpu["fp32"]) for name in runs}
    return {
        "setup": _setup(args, student),
        "target_ratio": 1.3,
        "variants": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", dest="d_model", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--src", type=int, default=128)
    parser.add_argument("--tgt", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=[], help="variants beside fp32 (default: all)")
    parser.add_argument("--bf16", action="store_true",
                        help="also time each variant under bf16 autocast (training.precision: bf16)")
    parser.add_argument("--loop", action="store_true", help="time the distillation step's variants")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: bench/results/train_step.json (train_loop.json with --loop)")
    args = parser.parse_args()
    args.out = args.out or Path(f"bench/results/{'train_loop' if args.loop else 'train_step'}.json")
    result = run_loop(args) if args.loop else run(args)
    base = "x first" if args.loop else "x fp32"
    print(f"{'variant':<34}{'wall min':>10}{'wall med':>10}{base:>8}{'cpu med':>10}{base:>8}")
    for name, row in result["variants"].items():
        print(
            f"{name:<34}{row['wall_min_s']:>10.3f}{row['wall_median_s']:>10.3f}{row['wall_ratio_to_fp32']:>8.2f}"
            f"{row['cpu_median_s']:>10.3f}{row['cpu_ratio_to_fp32']:>8.2f}"
        )
    for name, count in result.get("epoch_encoder_tokens", {}).items():
        print(f"encoder tokens per epoch of the sample, {name}: {count:,}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
