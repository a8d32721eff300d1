"""Generation and metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from compression.data import Record
from compression.evaluate import bleu_chrf, evaluate_model, generate, input_dependence, rouge, split_sentences
from compression.recipe import EvaluationSpec


def test_identical_texts_score_100_on_every_rouge() -> None:
    scores = rouge(["the cat sat. it purred."], ["the cat sat. it purred."])
    assert scores == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "rougeLsum": 100.0})


def test_rouge_uses_stemming() -> None:
    assert rouge(["packages installed"], ["package install"])["rouge1"] == pytest.approx(100.0)


def test_rouge_lsum_sees_sentence_boundaries() -> None:
    prediction, reference = "b c. a", "a b c. d"
    scores = rouge([prediction], [reference])
    assert scores["rougeLsum"] != pytest.approx(scores["rougeL"])


def test_split_sentences_puts_newlines_between_sentences() -> None:
    assert split_sentences("One. Two!  Three? four") == "One.\nTwo!\nThree?\nfour"


def test_bleu_and_chrf_are_100_for_identical_text() -> None:
    scores = bleu_chrf(["ein kleines Haus am See"], ["ein kleines Haus am See"])
    assert scores == pytest.approx({"bleu": 100.0, "chrf": 100.0})


def test_generate_returns_one_text_per_input(tiny_teacher_dir: Path) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher_dir))
    spec = EvaluationSpec(num_beams=2, max_length=6, batch_size=2)
    texts = generate(model, tokenizer, ["a b c", "d e", "f"], spec)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


def test_evaluate_model_returns_task_metrics(tiny_teacher_dir: Path) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher_dir))
    records = [Record("a tool for packages", "tool"), Record("a library", "library")]
    spec = EvaluationSpec(num_beams=1, max_length=6)
    assert set(evaluate_model(model, tokenizer, records, "summarization", spec)) == {
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
    }
    assert set(evaluate_model(model, tokenizer, records, "translation", spec)) == {"bleu", "chrf"}


def test_generate_truncates_inputs_to_the_models_positions(tiny_teacher_dir: Path) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher_dir))
    long_text = "package " * (2 * model.config.max_position_embeddings)
    assert len(generate(model, tokenizer, [long_text], EvaluationSpec(num_beams=1, max_length=4))) == 1


_PAIRS = [Record("a tool for packages", "tool"), Record("the kernel image", "kernel"),
          Record("fonts for the desktop", "fonts"), Record("a library for sound", "library")]


def test_input_dependence_sees_a_random_model_read_its_sources(tiny_teacher_dir: Path) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher_dir))
    assert abs(input_dependence(model, tokenizer, _PAIRS).gap) > 1e-5


def test_input_dependence_is_zero_when_the_decoder_cannot_see_the_encoder(tiny_teacher_dir: Path) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher_dir))
    with torch.no_grad():
        for layer in model.model.decoder.layers:
            layer.encoder_attn.out_proj.weight.zero_()
            layer.encoder_attn.out_proj.bias.zero_()
    result = input_dependence(model, tokenizer, _PAIRS)
    assert result.gap == pytest.approx(0.0, abs=1e-7)
    assert result.matched_loss > 0


def test_input_dependence_needs_two_records(tiny_teacher_dir: Path) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_teacher_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher_dir))
    with pytest.raises(ValueError, match="at least two records"):
        input_dependence(model, tokenizer, _PAIRS[:1])
