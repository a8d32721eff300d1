"""Beam-search generation, the task metrics (ROUGE via rouge-score, BLEU/chrF via sacrebleu), and
a check that a model reads its input at all."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sacrebleu
import torch
from rouge_score import rouge_scorer
from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

from compression.data import Record, collate, tokenize
from compression.recipe import TASK_METRICS, EvaluationSpec

# The metric that picks the best checkpoint, per task.
TASK_METRIC = {task: metrics[0] for task, metrics in TASK_METRICS.items()}
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# A sentence ends at . ! or ? followed by space. nltk's punkt would need a download that is not
# available offline, and ROUGE-Lsum only needs the newlines between sentences.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    spec: EvaluationSpec,
    *,
    max_source_length: int = 1024,
    forced_bos_token_id: int | None = None,
) -> list[str]:
    """Decode `texts` with the recipe's generation settings, in batches of `spec.batch_size`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    # Learned positions end at max_position_embeddings: a longer input would index past them.
    max_source_length = min(
        max_source_length, getattr(model.config, "max_position_embeddings", max_source_length)
    )
    outputs: list[str] = []
    for start in range(0, len(texts), spec.batch_size):
        inputs = tokenizer(
            list(texts[start : start + spec.batch_size]),
            max_length=max_source_length,
            truncation=True,
            padding=True,
            return_tensors="pt",
        ).to(device)
        ids = generate_ids(
            model,
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            num_beams=spec.num_beams,
            max_length=spec.max_length,
            min_length=spec.min_length,
            length_penalty=spec.length_penalty,
            no_repeat_ngram_size=spec.no_repeat_ngram_size,
            early_stopping=True,
            forced_bos_token_id=forced_bos_token_id,
        )
        outputs += [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    model.train(was_training)
    return outputs


def generate_ids(model: PreTrainedModel, **kwargs: Any) -> torch.Tensor:
    """`model.generate(**kwargs)`: the token ids (no `return_dict_in_generate`)."""
    assert isinstance(model, GenerationMixin), f"{type(model).__name__} cannot generate"
    # transformers types generate's self as a Protocol written for another checker, which mypy
    # matches no model to.
    ids = model.generate(**kwargs)  # type: ignore[misc]
    assert isinstance(ids, torch.Tensor), f"generate returned a {type(ids).__name__}"
    return ids


def split_sentences(text: str) -> str:
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean F1 x100 with stemming; Lsum over newline-separated sentences."""
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(split_sentences(reference), split_sentences(prediction))
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: 100.0 * total / max(1, len(predictions)) for name, total in totals.items()}


def bleu_chrf(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenizer); already on a 0-100 scale."""
    refs = [list(references)]
    return {
        "bleu": sacrebleu.corpus_bleu(list(predictions), refs).score,
        "chrf": sacrebleu.corpus_chrf(list(predictions), refs).score,
    }


def score(task: str, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    return rouge(predictions, references) if task == "summarization" else bleu_chrf(predictions, references)


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    task: str,
    spec: EvaluationSpec,
    *,
    max_source_length: int = 1024,
    forced_bos_token_id: int | None = None,
) -> dict[str, float]:
    """Generate for every record's source and score against its target (ROUGE or BLEU/chrF, x100)."""
    predictions = generate(
        model,
        tokenizer,
        [r.source for r in records],
        spec,
        max_source_length=max_source_length,
        forced_bos_token_id=forced_bos_token_id,
    )
    return score(task, predictions, [r.target for r in records])


@dataclass(frozen=True)
class InputDependence:
    """Cross-entropy on the right sources and on the same targets paired with other sources."""

    matched_loss: float
    shuffled_loss: float

    @property
    def gap(self) -> float:
        return self.shuffled_loss - self.matched_loss


@torch.no_grad()
def input_dependence(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    *,
    max_source_length: int = 1024,
    max_target_length: int = 1024,
) -> InputDependence:
    """How much worse the model predicts each target from another record's source.

    A model whose encoder has collapsed (the same vector for every token) scores a gap of ~0
    while its ROUGE can still look plausible: one generic output for every input.
    """
    if len(records) < 2:
        raise ValueError("input_dependence needs at least two records to pair targets with other sources")
    shifted = [Record(source=other.source, target=r.target)
               for r, other in zip(records, [*records[1:], records[0]], strict=True)]
    was_training = model.training
    model.eval()
    losses = [_mean_loss(model, tokenizer, pairs, max_source_length, max_target_length)
              for pairs in (records, shifted)]
    model.train(was_training)
    return InputDependence(matched_loss=losses[0], shuffled_loss=losses[1])


def _mean_loss(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[Record],
               max_source_length: int, max_target_length: int) -> float:
    max_source_length = min(max_source_length,
                            getattr(model.config, "max_position_embeddings", max_source_length))
    examples = tokenize(records, tokenizer, max_source_length, max_target_length)
    batch = collate(examples, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    return float(model(**{k: v.to(device) for k, v in batch.items()}).loss)
