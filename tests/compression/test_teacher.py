"""Loading teachers from local directories: BART, mBART, and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import BartForConditionalGeneration, MBartForConditionalGeneration

from compression.errors import ModelError
from compression.recipe import TeacherSpec
from compression.teacher import load_teacher, teacher_fingerprint
from tests.tiny import make_tiny_teacher


@pytest.fixture(scope="module")
def mbart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("mbart"), 2, 1, mbart=True)


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst / "model"))


def test_loads_a_bart_teacher_in_eval_mode_with_eager_attention(tiny_teacher_dir: Path) -> None:
    model, tokenizer = load_teacher(TeacherSpec(path=str(tiny_teacher_dir)))
    assert type(model) is BartForConditionalGeneration
    assert model.config._attn_implementation == "eager"
    assert not model.training
    assert tokenizer("hello world").input_ids[0] == 0
    assert len(tokenizer) == model.config.vocab_size


def test_loads_an_mbart_teacher(mbart_dir: Path) -> None:
    model, _ = load_teacher(TeacherSpec(path=str(mbart_dir)))
    assert type(model) is MBartForConditionalGeneration
    assert (model.config.encoder_layers, model.config.decoder_layers) == (2, 1)


def test_refuses_a_pickle_weights_file(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    model_dir = _copy(tiny_teacher_dir, tmp_path)
    (model_dir / "pytorch_model.bin").write_bytes(b"not allowed")
    with pytest.raises(ModelError, match="pickle") as info:
        load_teacher(TeacherSpec(path=str(model_dir)))
    assert info.value.param == "teacher.path"


def test_refuses_a_directory_without_safetensors(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    model_dir = _copy(tiny_teacher_dir, tmp_path)
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="model.safetensors"):
        load_teacher(TeacherSpec(path=str(model_dir)))


def test_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a directory"):
        load_teacher(TeacherSpec(path=str(tmp_path / "absent")))


def test_refuses_an_unsupported_model_type(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    model_dir = _copy(tiny_teacher_dir, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    config["model_type"] = "gpt2"
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="not supported"):
        load_teacher(TeacherSpec(path=str(model_dir)))


def test_refuses_an_unresolved_service_model_id() -> None:
    with pytest.raises(ModelError) as info:
        load_teacher(TeacherSpec(model="mdl_123"))
    assert info.value.param == "teacher.model"


def test_fingerprint_is_stable_and_follows_the_weights(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    model_dir = _copy(tiny_teacher_dir, tmp_path)
    first = teacher_fingerprint(model_dir)
    assert first == teacher_fingerprint(tiny_teacher_dir) and len(first) == 64
    with open(model_dir / "model.safetensors", "ab") as f:
        f.write(b"\0")
    assert teacher_fingerprint(model_dir) != first
