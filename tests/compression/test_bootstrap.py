"""The paired bootstrap that tells a real loss of the task metric from the noise of a few records."""

from __future__ import annotations

import pytest

from compression.bootstrap import paired_difference
from compression.evaluate import score

REFERENCES = [f"a tool that converts {w} files to text" for w in ("image", "audio", "video", "font")] * 25
GOOD = list(REFERENCES)
POOR = ["a library"] * len(REFERENCES)


@pytest.mark.parametrize(("task", "metric"), [("summarization", "rougeLsum"), ("translation", "bleu")])
def test_the_estimate_is_the_difference_of_the_corpus_metrics(task: str, metric: str) -> None:
    half = GOOD[:50] + POOR[50:]
    found = paired_difference(task, GOOD, half, REFERENCES, samples=200)
    expected = score(task, GOOD, REFERENCES)[metric] - score(task, half, REFERENCES)[metric]
    assert found.estimate == pytest.approx(expected)
    assert found.low <= found.estimate <= found.high


@pytest.mark.parametrize("task", ["summarization", "translation"])
def test_identical_outputs_differ_by_exactly_nothing(task: str) -> None:
    found = paired_difference(task, GOOD, GOOD, REFERENCES, samples=200)
    assert (found.estimate, found.low, found.high, found.standard_error) == (0.0, 0.0, 0.0, 0.0)


def test_one_changed_output_in_a_hundred_leaves_the_difference_unsure() -> None:
    one_worse = ["a library", *GOOD[1:]]
    found = paired_difference("summarization", GOOD, one_worse, REFERENCES, samples=500)
    assert found.estimate > 0.5 and found.low <= 0.0


def test_a_loss_on_every_record_is_sure() -> None:
    found = paired_difference("summarization", GOOD, POOR, REFERENCES, samples=500)
    assert found.low > 50.0


def test_the_same_seed_gives_the_same_interval() -> None:
    half = GOOD[:50] + POOR[50:]
    runs = [paired_difference("translation", GOOD, half, REFERENCES, samples=100, seed=3) for _ in range(2)]
    assert runs[0] == runs[1]


def test_no_records_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        paired_difference("summarization", [], [], [])
