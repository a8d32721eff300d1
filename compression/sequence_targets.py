"""Sequence-level distillation (Kim & Rush 2016; the DQ-BART paper's named future work): the
student trains on the teacher's own beam outputs instead of (or beside) the references.

The outputs are computed once per (teacher weights, training sources, generation settings) and
cached as JSONL under the user cache, so every student of one teacher reuses them. Generation
appends to a partial file chunk by chunk: a stopped run continues where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from compression.cache import cache_root, digest, lock
from compression.data import Record
from compression.evaluate import generate
from compression.recipe import EvaluationSpec

CHUNK = 1024  # sources per appended chunk (and per progress report)


def teacher_targets(
    teacher: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sources: Sequence[str],
    spec: EvaluationSpec,
    *,
    max_source_length: int,
    forced_bos_token_id: int | None = None,
    cache: Path | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> list[str]:
    """The teacher's output for every source, from the cache or generated (and cached) now."""
    settings = {"generation": spec.model_dump(), "max_source_length": max_source_length,
                "forced_bos_token_id": forced_bos_token_id}
    folder = cache or cache_root() / "sequence-targets"
    done_file = folder / f"{digest(teacher, sources, settings)}.jsonl"
    with lock(done_file):  # two writers would interleave their lines in the partial file
        if done_file.is_file():
            return _read(done_file)
        return _generate_all(teacher, tokenizer, sources, spec, max_source_length, forced_bos_token_id,
                             done_file, on_chunk)


def _generate_all(teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sources: Sequence[str],
                  spec: EvaluationSpec, max_source_length: int, forced_bos_token_id: int | None,
                  done_file: Path, on_chunk: Callable[[int, int], None] | None) -> list[str]:
    """Generate what the partial file lacks, chunk by chunk (a stopped run resumes), then publish it."""
    partial = done_file.with_suffix(".partial")
    outputs = _read(partial) if partial.is_file() else []
    while len(outputs) < len(sources):
        chunk = sources[len(outputs) : len(outputs) + CHUNK]
        generated = _generate_by_length(teacher, tokenizer, chunk, spec, max_source_length,
                                        forced_bos_token_id)
        with partial.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(text) + "\n" for text in generated)
        outputs += generated
        if on_chunk is not None:
            on_chunk(len(outputs), len(sources))
    partial.replace(done_file)
    return outputs


def _generate_by_length(
    teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sources: Sequence[str],
    spec: EvaluationSpec, max_source_length: int, forced_bos_token_id: int | None,
) -> list[str]:
    """Generate in order of length (batches pad less), returned in the sources' order."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    texts = generate(teacher, tokenizer, [sources[i] for i in order], spec,
                     max_source_length=max_source_length, forced_bos_token_id=forced_bos_token_id)
    outputs = [""] * len(sources)
    for index, text in zip(order, texts, strict=True):
        outputs[index] = text
    return outputs


def _read(path: Path) -> list[str]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def with_teacher_targets(records: Sequence[Record], targets: Sequence[str], mode: str) -> list[Record]:
    """`replace`: each reference becomes the teacher's output (kept where the teacher wrote
    nothing); `mix`: the references and the teacher's outputs, each record twice."""
    pairs = zip(records, targets, strict=True)
    distilled = [Record(r.source, t if t.strip() else r.target) for r, t in pairs]
    return distilled if mode == "replace" else [*records, *distilled]
