"""Non-finite numbers are refused wherever they enter: recipe fields, a training step, the tensors
being packed, and the tensors being loaded (artifact or teacher); and the teacher loader refuses
weights that do not fit the config as a ModelError (a user error), not a crash."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from compression.artifact import load, pack
from compression.data import Record, ResumableLoader, tokenize
from compression.errors import ModelError, RecipeError, TrainingDiverged
from compression.recipe import INT_LIMIT, QuantizationSpec, Recipe, StudentSpec, TrainingSpec
from compression.student import build_student
from compression.swap import quantize_model
from compression.teacher import load_teacher
from compression.train import train

BASE = {"teacher": {"path": "t"}, "dataset": {"train": "d.jsonl"}}
SPEC = QuantizationSpec(weight_bits=8, embedding_bits=8)


def _recipe_error(section: str, field: str, value: object) -> RecipeError:
    with pytest.raises(RecipeError) as raised:
        Recipe.from_dict({**BASE, section: {field: value}})
    return raised.value


@pytest.mark.parametrize(("section", "field"), [
    ("training", "lr"), ("training", "warmup_ratio"), ("teacher_training", "lr"),
    ("distillation", "hidden"), ("quantization", "clip_val"), ("evaluation", "length_penalty"),
])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_float_field_must_be_finite(section: str, field: str, value: float) -> None:
    error = _recipe_error(section, field, value)
    assert (error.param, error.message) == (f"{section}.{field}", "Input should be a finite number")


@pytest.mark.parametrize(("section", "field"), [
    ("training", "max_steps"), ("training", "batch_size"), ("evaluation", "max_length"),
    ("dataset", "max_validation_samples"),
])
def test_every_int_field_fits_the_database_and_the_message_names_the_bound(section: str, field: str) -> None:
    error = _recipe_error(section, field, 2**70)
    assert error.param == f"{section}.{field}"
    assert str(INT_LIMIT) in error.message


def test_a_huge_finite_learning_rate_is_refused() -> None:
    assert _recipe_error("training", "lr", 1e30).param == "training.lr"


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(tiny_teacher_dir))


def _poisoned(teacher_dir: Path) -> PreTrainedModel:
    """A model whose embedding LayerNorm has one NaN: every hidden state, hence the loss, is NaN."""
    model = AutoModelForSeq2SeqLM.from_pretrained(str(teacher_dir), attn_implementation="eager")
    model.model.encoder.layernorm_embedding.weight.data[0] = math.nan
    return model


@pytest.mark.parametrize(("stage", "param"), [("finetuning_teacher", "teacher_training.lr"),
                                              ("distilling", "training.lr")])
def test_training_stops_at_the_first_nonfinite_loss_naming_the_learning_rate(
        tiny_teacher_dir: Path, sample_records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase,
        stage: str, param: str) -> None:
    records = [Record(r["document"], r["summary"]) for r in sample_records[:4]]
    loader = ResumableLoader(tokenize(records, tokenizer, 32, 8), 2, tokenizer.pad_token_id, 0)
    with pytest.raises(TrainingDiverged) as raised:
        train(_poisoned(tiny_teacher_dir), loader, TrainingSpec(max_steps=3, batch_size=2),
              stage=stage, device=torch.device("cpu"))  # type: ignore[arg-type]
    assert raised.value.param == param
    assert raised.value.message.startswith("training diverged at step 1")


def _student(teacher_dir: Path) -> tuple[PreTrainedModel, object]:
    teacher = AutoModelForSeq2SeqLM.from_pretrained(str(teacher_dir), attn_implementation="eager")
    student, layer_map = build_student(teacher, StudentSpec(encoder_layers=1, decoder_layers=1))
    return quantize_model(student, SPEC), layer_map


def _pack(student: PreTrainedModel, layer_map: object, tokenizer: PreTrainedTokenizerBase, out: Path) -> Path:
    pack(student, tokenizer, out, spec=SPEC, layer_map=layer_map, recipe={"method": "dq"},  # type: ignore[arg-type]
         teacher_identity={"sha256": "0" * 64})
    return out


def test_pack_refuses_a_student_with_a_nan_weight(tiny_teacher_dir: Path, tokenizer: PreTrainedTokenizerBase,
                                                 tmp_path: Path) -> None:
    student, layer_map = _student(tiny_teacher_dir)
    student.model.decoder.layernorm_embedding.weight.data[0] = math.nan
    with pytest.raises(ModelError, match="NaN or infinite"):
        _pack(student, layer_map, tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_load_refuses_an_artifact_with_an_infinite_tensor(
        tiny_teacher_dir: Path, tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    out = _pack(*_student(tiny_teacher_dir), tokenizer, tmp_path / "out")
    tensors = load_file(out / "model.safetensors")
    tensors["model.decoder.layernorm_embedding.weight"][0] = math.inf
    save_file(tensors, out / "model.safetensors")
    with pytest.raises(ModelError, match="model.decoder.layernorm_embedding.weight") as raised:
        load(out)
    assert raised.value.param == "artifact"


def test_load_teacher_refuses_nan_weights(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_teacher_dir, tmp_path / "teacher")
    _poisoned(tiny_teacher_dir).save_pretrained(str(folder))
    with pytest.raises(ModelError, match="NaN or infinite"):
        load_teacher(Recipe.from_dict({**BASE, "teacher": {"path": str(folder)}}).teacher)


def test_load_teacher_refuses_weights_that_do_not_fit_the_config(tiny_teacher_dir: Path,
                                                                 tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_teacher_dir, tmp_path / "teacher")
    tensors = load_file(folder / "model.safetensors")
    name = "model.encoder.layers.0.fc1.weight"
    tensors[name] = tensors[name].T.contiguous()
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match="cannot load the model"):
        load_teacher(Recipe.from_dict({**BASE, "teacher": {"path": str(folder)}}).teacher)
