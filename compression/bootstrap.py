"""How sure a task-metric difference between two systems on the same records is: a paired
bootstrap (Koehn 2004), resampling the records and scoring both systems on each resample.

A point estimate on a few hundred records moves by tenths of a point when one output changes, so
a decision such as "this engine loses more than 0.5 ROUGE-Lsum" reads the interval, not the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from compression.evaluate import split_sentences

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.90  # two-sided: each end of the interval is a one-sided 95% bound


@dataclass(frozen=True)
class Interval:
    """`a - b` in metric points: the estimate, its bootstrap standard error and interval."""

    estimate: float
    standard_error: float
    low: float
    high: float
    confidence: float
    samples: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def paired_difference(task: str, a: Sequence[str], b: Sequence[str], references: Sequence[str], *,
                      samples: int = BOOTSTRAP_SAMPLES, confidence: float = CONFIDENCE,
                      seed: int = 0) -> Interval:
    """The task metric (ROUGE-Lsum or BLEU, x100) of `a` minus that of `b`, with its interval."""
    if not references:
        raise ValueError("a paired bootstrap needs at least one record")
    stats_a, stats_b = (_record_stats(task, outputs, references) for outputs in (a, b))
    resamples = np.random.default_rng(seed).integers(0, len(references), (samples, len(references)))
    differences = np.array([_metric(task, stats_a[rows]) - _metric(task, stats_b[rows])
                            for rows in resamples])
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(differences, [tail, 100.0 - tail])
    return Interval(_metric(task, stats_a) - _metric(task, stats_b), float(differences.std(ddof=1)),
                    float(low), float(high), confidence, samples)


def _record_stats(task: str, outputs: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """One row per record whose column sums give the corpus metric (`_metric`)."""
    if task == "summarization":
        scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
        return np.array([[scorer.score(split_sentences(r), split_sentences(o))["rougeLsum"].fmeasure]
                         for o, r in zip(outputs, references, strict=True)])
    # sacrebleu's own paired test (sacrebleu.significance) resamples these sufficient statistics;
    # it reports a p-value against no difference, where we need the interval of the difference.
    return np.array(_bleu()._extract_corpus_statistics(list(outputs), [list(references)]))


def _metric(task: str, stats: np.ndarray) -> float:
    if task == "summarization":
        return 100.0 * float(stats.mean())
    return float(_bleu()._compute_score_from_stats(stats.sum(0).tolist()).score)


@cache
def _bleu() -> BLEU:
    return BLEU()
