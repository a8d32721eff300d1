"""Builders for tiny models and datasets used across the tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    MBartConfig,
    MBartForConditionalGeneration,
)

from compression.tokenizer import train_bart_tokenizer, train_mbart_tokenizer

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "data" / "debian-desc-sample"


def sample_texts(limit: int = 2000) -> list[str]:
    texts: list[str] = []
    with gzip.open(SAMPLE_DIR / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        for _, line in zip(range(limit), f, strict=False):
            record = json.loads(line)
            texts += [record["document"], record["summary"]]
    return texts


def en_de_texts(limit: int = 500) -> list[str]:
    """English sources and German targets of the bundled translation sample, interleaved."""
    texts: list[str] = []
    with gzip.open(SAMPLE_DIR / "en-de-train.jsonl.gz", "rt", encoding="utf-8") as f:
        for _, line in zip(range(limit), f, strict=False):
            record = json.loads(line)
            texts += [record["source"], record["target"]]
    return texts


def tiny_bart_config(vocab_size: int, encoder_layers: int = 2, decoder_layers: int = 2, d_model: int = 32,
                     mbart: bool = False) -> BartConfig | MBartConfig:
    cls = MBartConfig if mbart else BartConfig
    return cls(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_position_embeddings=256,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
    )


def make_tiny_teacher(out_dir: Path, encoder_layers: int = 2, decoder_layers: int = 2, d_model: int = 32,
                      vocab_size: int = 1000, mbart: bool = False, seed: int = 0) -> Path:
    """Save an untrained tiny BART (or mBART) and its tokenizer as a HF directory."""
    tokenizer = train_bart_tokenizer(sample_texts(500), vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = tiny_bart_config(len(tokenizer), encoder_layers, decoder_layers, d_model, mbart)
    model_cls = MBartForConditionalGeneration if mbart else BartForConditionalGeneration
    model = model_cls(config)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def make_tiny_translation_teacher(out_dir: Path, encoder_layers: int = 2, decoder_layers: int = 2,
                                  vocab_size: int = 500, seed: int = 0) -> Path:
    """An untrained tiny mBART with a joint en-de tokenizer of mBART-50's layout (en_XX -> de_DE)."""
    tokenizer = train_mbart_tokenizer(en_de_texts(), vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = tiny_bart_config(len(tokenizer), encoder_layers, decoder_layers, mbart=True)
    MBartForConditionalGeneration(config).save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# A large init makes a tiny random model's greedy text depend on its input (at BART's 0.02 it
# writes one text whatever the input, and any comparison of two paths would pass).
DIVERSE_INIT_STD = 0.2


def make_diverse_teacher(tokenizer_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """A tiny random BART, with `tokenizer_dir`'s tokenizer, whose outputs tell inputs apart."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = tiny_bart_config(len(tokenizer))
    config.init_std = DIVERSE_INIT_STD
    torch.manual_seed(seed)
    BartForConditionalGeneration(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
