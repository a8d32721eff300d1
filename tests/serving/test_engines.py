"""The engine that serves each model: CTranslate2 by default, our int8 form where it is not faithful."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import ctranslate2
import pytest
from transformers import AutoTokenizer

from compression.artifact import REPORT_FILE, pack
from compression.ct2 import convert, translate
from compression.recipe import QuantizationSpec, Recipe, StudentSpec, TeacherSpec
from compression.student import build_student
from compression.swap import quantize_model
from compression.teacher import load_teacher
from serving.app import create_app
from store.settings import Settings
from tests.serving.conftest import StoredModel, store_artifact
from tests.serving.test_app import SHORT, TEXTS, call, post
from tests.tiny import make_tiny_teacher


def info(app: Any, model: StoredModel) -> dict[str, Any]:
    response = call(app, lambda c: c.get(f"/v1/models/{model.id}/info", headers=model.headers))
    assert response.status_code == 200, response.text
    return response.json()


def test_the_engine_setting_serves_every_model_on_our_int8_form(serving_settings: Settings,
                                                                 diverse_artifact: Path) -> None:
    app = create_app(serving_settings.model_copy(update={"SERVING_ENGINE": "int8"}))
    described = info(app, store_artifact(serving_settings, diverse_artifact))
    assert described["engine"]["name"] == "int8" and described["runtime"]["form"] == "int8_dynamic"


def test_a_check_without_an_interval_that_lost_more_than_the_budget_falls_back_on_its_estimate(
        serving_settings: Settings, diverse_artifact: Path, tmp_path: Path) -> None:
    artifact = shutil.copytree(diverse_artifact, tmp_path / "student")
    check = {"metric": "rougeLsum", "metric_loss": 0.9, "identical_percent": 80.0}
    (artifact / REPORT_FILE).write_text(json.dumps({"engines": {"ctranslate2": check}}))
    described = info(create_app(serving_settings), store_artifact(serving_settings, artifact))
    assert described["engine"]["name"] == "int8" and described["runtime"]["form"] == "int8_dynamic"
    assert "0.90 rougeLsum" in described["engine"]["reason"]
    assert described["engine"]["faithfulness"] == check


def test_a_converted_form_surely_over_the_budget_is_served_by_our_int8_form(
        serving_settings: Settings, diverse_artifact: Path, tmp_path: Path) -> None:
    artifact = shutil.copytree(diverse_artifact, tmp_path / "student")
    check = {"metric": "rougeLsum", "metric_loss": 1.4, "identical_percent": 40.0,
             "loss_interval": {"estimate": 1.4, "standard_error": 0.3, "low": 0.9, "high": 1.9,
                               "confidence": 0.9, "samples": 1000}}
    (artifact / REPORT_FILE).write_text(json.dumps({"engines": {"ctranslate2": check}}))
    described = info(create_app(serving_settings), store_artifact(serving_settings, artifact))
    reason = described["engine"]["reason"]
    assert described["engine"]["name"] == "int8" and "1.40 rougeLsum" in reason and "at least 0.90" in reason


def test_a_loss_over_the_budget_within_its_noise_is_served_by_ctranslate2(
        serving_settings: Settings, diverse_artifact: Path, tmp_path: Path) -> None:
    artifact = shutil.copytree(diverse_artifact, tmp_path / "student")
    check = {"metric": "rougeLsum", "metric_loss": 0.6, "identical_percent": 43.0,
             "loss_interval": {"estimate": 0.6, "standard_error": 0.5, "low": -0.2, "high": 1.4,
                               "confidence": 0.9, "samples": 1000}}
    (artifact / REPORT_FILE).write_text(json.dumps({"engines": {"ctranslate2": check}}))
    described = info(create_app(serving_settings), store_artifact(serving_settings, artifact))
    assert described["engine"]["name"] == "ctranslate2"


def test_a_converted_form_within_the_budget_is_served_by_ctranslate2(
        serving_settings: Settings, diverse_artifact: Path, tmp_path: Path) -> None:
    artifact = shutil.copytree(diverse_artifact, tmp_path / "student")
    check = {"metric": "rougeLsum", "metric_loss": 0.2, "identical_percent": 97.0}
    (artifact / REPORT_FILE).write_text(json.dumps({"engines": {"ctranslate2": check}}))
    described = info(create_app(serving_settings), store_artifact(serving_settings, artifact))
    assert described["engine"]["name"] == "ctranslate2"


def test_served_summaries_are_what_ctranslate2_decodes(serving_settings: Settings, diverse_artifact: Path,
                                                      tmp_path: Path) -> None:
    model = store_artifact(serving_settings, diverse_artifact)
    response = call(create_app(serving_settings), lambda c: post(c, model, TEXTS))
    assert response.status_code == 200, response.text
    convert(diverse_artifact, tmp_path / "ct2")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ct2")
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), compute_type="int8")
    expected = translate(translator, tokenizer, [tokenizer(t)["input_ids"] for t in TEXTS],
                         max_new_tokens=SHORT["max_new_tokens"], min_new_tokens=SHORT["min_new_tokens"],
                         forced_eos=True)
    assert [item["summary_text"] for item in response.json()] == [d.text for d in expected]
    assert len({d.text for d in expected}) > 1


@pytest.fixture(scope="module")
def mbart_translator(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A packed mBART student whose recipe names a target language (a word of the tiny vocabulary
    stands for the language code)."""
    root = tmp_path_factory.mktemp("mbart")
    teacher_dir = make_tiny_teacher(root / "teacher", mbart=True)
    teacher, tokenizer = load_teacher(TeacherSpec(path=str(teacher_dir)))
    target = "Ġlibrary"
    assert target in tokenizer.get_vocab()
    student, layer_map = build_student(teacher, StudentSpec(decoder_layers=1))
    spec = QuantizationSpec(weight_bits=8, embedding_bits=8)
    quantize_model(student, spec)
    recipe = Recipe.from_dict({"task": "translation", "teacher": {"path": str(teacher_dir)},
                               "dataset": {"train": "train.jsonl"}, "tgt_lang": target,
                               "quantization": spec.model_dump()})
    pack(student.eval(), tokenizer, root / "student", spec=spec, layer_map=layer_map, recipe=recipe.to_dict(),
         teacher_identity={"path": str(teacher_dir)})
    return root / "student", "library"


def test_mbart_translations_through_ctranslate2_start_with_the_target_language(
        serving_settings: Settings, mbart_translator: tuple[Path, str]) -> None:
    artifact, word = mbart_translator
    model = store_artifact(serving_settings, artifact, task="translation")
    app = create_app(serving_settings)
    response = call(app, lambda c: post(c, model, TEXTS[:2], route="translate"))
    assert response.status_code == 200, response.text
    assert info(app, model)["engine"]["name"] == "ctranslate2"
    assert all(item["translation_text"].startswith(word) for item in response.json())
