"""Build the initial (untrained) teacher directory: our own tokenizer plus a random small BART
(summarization) or mBART (translation).

No model hub is reachable, so the demo starts from a tokenizer trained on the bundled sample (a
byte-level BPE for BART; a joint en-de sentencepiece model with mBART-50's language codes for
mBART) and a randomly initialised model; the service then trains it on the task.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import BartConfig, BartForConditionalGeneration, MBartConfig, MBartForConditionalGeneration

from compression.tokenizer import train_bart_tokenizer, train_mbart_tokenizer

REPO = Path(__file__).resolve().parent.parent
SAMPLE_TRAIN = REPO / "data" / "debian-desc-sample" / "train.jsonl.gz"
SAMPLE_EN_DE_TRAIN = REPO / "data" / "debian-desc-sample" / "en-de-train.jsonl.gz"


@dataclass(frozen=True)
class TeacherShape:
    encoder_layers: int = 6
    decoder_layers: int = 6
    d_model: int = 256
    ffn_dim: int = 1024
    heads: int = 4
    vocab_size: int = 8000
    max_positions: int = 160  # covers max_source_length 128; fewer fp32 position rows on disk
    # BART's 0.02 is too small for a narrow model trained from scratch with Adam: at lr >= 3e-4
    # the updates dwarf the weights within ~50 steps and the encoder collapses to one vector
    # for every token (docs/results/quality-v2). At 0.05 the encoder stays alive at lr 5e-4.
    init_std: float = 0.05


# The demo's default: 6-6 layers so that the paper's 6-3 student plan applies; d_model 128
# because d_model 256 trains 8x slower per step here (measured), too slow for a 15-minute demo.
DEMO_SHAPE = TeacherShape(d_model=128, ffn_dim=512, max_positions=160)
# `--quick` and the tests: the same depth, a fraction of the width.
QUICK_SHAPE = TeacherShape(d_model=32, ffn_dim=64, heads=4, vocab_size=1000)


def sample_texts(path: Path = SAMPLE_TRAIN,
                 fields: tuple[str, ...] = ("document", "summary")) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            yield from (record[name] for name in fields)


def bart_config(shape: TeacherShape, vocab_size: int,
                cls: type[BartConfig | MBartConfig] = BartConfig) -> BartConfig | MBartConfig:
    return cls(
        vocab_size=vocab_size,
        d_model=shape.d_model,
        encoder_layers=shape.encoder_layers,
        decoder_layers=shape.decoder_layers,
        encoder_attention_heads=shape.heads,
        decoder_attention_heads=shape.heads,
        encoder_ffn_dim=shape.ffn_dim,
        decoder_ffn_dim=shape.ffn_dim,
        max_position_embeddings=shape.max_positions,
        # BART's special-token ids, which train_bart_tokenizer keeps at 0-4
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
        init_std=shape.init_std,
    )


def build_teacher(out_dir: Path, shape: TeacherShape = DEMO_SHAPE, seed: int = 0,
                  train_file: Path = SAMPLE_TRAIN) -> Path:
    """Write tokenizer files and a randomly initialised BART (safetensors) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_bart_tokenizer(sample_texts(train_file), vocab_size=shape.vocab_size)
    torch.manual_seed(seed)
    config = bart_config(shape, len(tokenizer))
    assert isinstance(config, BartConfig)
    model = BartForConditionalGeneration(config)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    info = {"shape": asdict(shape), "seed": seed}
    (out_dir / "demo_teacher.json").write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def build_translation_teacher(out_dir: Path, shape: TeacherShape = DEMO_SHAPE, seed: int = 0,
                              train_file: Path = SAMPLE_EN_DE_TRAIN) -> Path:
    """Write a joint en-de tokenizer (en_XX -> de_DE) and a randomly initialised mBART into `out_dir`.

    mBART is BART with pre-LayerNorm layers and a LayerNorm after each stack; the ids of the
    special tokens are the same, and generation starts with </s> then the forced target code.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = sample_texts(train_file, fields=("source", "target"))
    tokenizer = train_mbart_tokenizer(texts, vocab_size=shape.vocab_size)
    torch.manual_seed(seed)
    config = bart_config(shape, len(tokenizer), MBartConfig)
    assert isinstance(config, MBartConfig)
    model = MBartForConditionalGeneration(config)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    info = {"shape": asdict(shape), "seed": seed, "task": "translation"}
    (out_dir / "demo_teacher.json").write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build an untrained BART teacher with its own tokenizer.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--quick", action="store_true", help="a tiny model (tests, smoke runs)")
    parser.add_argument("--d-model", type=int, default=None)
    parser.add_argument("--ffn-dim", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    shape = QUICK_SHAPE if args.quick else DEMO_SHAPE
    overrides = {k: v for k, v in (("d_model", args.d_model), ("ffn_dim", args.ffn_dim)) if v is not None}
    shape = TeacherShape(**{**asdict(shape), **overrides})
    print(build_teacher(args.out_dir, shape, args.seed))


if __name__ == "__main__":
    main()
