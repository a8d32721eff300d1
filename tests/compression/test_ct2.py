"""The CTranslate2 form of a packed artifact: the stored codes and scales survive exactly."""

from __future__ import annotations

import struct
from pathlib import Path

import ctranslate2
import numpy as np
import pytest
from transformers import AutoTokenizer

from compression.artifact import load
from compression.cli import main as cli_main
from compression.ct2 import convert, translate
from compression.recipe import TeacherSpec
from compression.teacher import load_teacher
from tests.serving.conftest import pack_student
from tests.tiny import make_diverse_teacher, make_tiny_teacher

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)


def read_model_bin(folder: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 model.bin (format of ctranslate2.specs.ModelSpec._serialize),
    aliases resolved: what the engine itself loads."""
    data = (folder / "model.bin").read_bytes()
    offset = 0

    def take(fmt: str) -> tuple:
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal offset
        (length,) = take("H")
        text = data[offset:offset + length - 1].decode()
        offset += length
        return text

    take("I")
    string()
    take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")[0]):
        name = string()
        (rank,) = take("B")
        shape = take(f"{rank}I")
        (dtype,), (size,) = take("B"), take("I")
        variables[name] = np.frombuffer(data, _DTYPES[dtype], size // np.dtype(_DTYPES[dtype]).itemsize,
                                        offset).reshape(shape)
        offset += size
    for _ in range(take("I")[0]):
        alias = string()
        variables[alias] = variables[string()]
    return variables


@pytest.fixture(scope="module")
def diverse_teacher(tiny_teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_diverse_teacher(tiny_teacher_dir, tmp_path_factory.mktemp("diverse-teacher"))


@pytest.fixture(scope="module")
def diverse_artifact(diverse_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_student(diverse_teacher, tmp_path_factory.mktemp("diverse-artifact") / "student")


@pytest.mark.parametrize("granularity", ["per_tensor", "per_row"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_every_int8_weight_is_our_dequantized_weight(diverse_teacher: Path, tmp_path: Path, bits: int,
                                                     granularity: str) -> None:
    artifact = pack_student(diverse_teacher, tmp_path / "artifact", bits=bits, granularity=granularity)
    convert(artifact, tmp_path / "int8", quantization="int8")
    # The float32 conversion is the loader's copy of our dequantized weights, in the same layout.
    convert(artifact, tmp_path / "float32", quantization="float32")
    exact, reference = read_model_bin(tmp_path / "int8"), read_model_bin(tmp_path / "float32")
    quantized = [name for name in exact if name + "_scale" in exact]
    assert len(quantized) >= 10  # attention, FFN, the embeddings and the tied LM head
    for name in quantized:
        assert exact[name].dtype == np.int8
        dequantized = exact[name].astype(np.float32) / exact[name + "_scale"][:, None]
        np.testing.assert_array_equal(dequantized, reference[name], err_msg=name)
    for name, value in reference.items():
        if name not in quantized:
            np.testing.assert_array_equal(exact[name], value, err_msg=name)


def test_the_exported_folder_loads_in_plain_ctranslate2_with_its_tokenizer(diverse_artifact: Path,
                                                                            tmp_path: Path) -> None:
    assert cli_main(["export", str(diverse_artifact), "--format", "ctranslate2", "--out",
                     str(tmp_path / "ct2")]) == 0
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu", compute_type="int8")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ct2")
    source = tokenizer.convert_ids_to_tokens(tokenizer("a tool to resize images")["input_ids"])
    result = translator.translate_batch([source], beam_size=1, max_decoding_length=8)
    assert len(result[0].hypotheses[0]) == 8


def test_a_float_conversion_decodes_as_transformers_does(tmp_path: Path) -> None:
    teacher = make_tiny_teacher(tmp_path / "teacher", mbart=True)
    convert(teacher, tmp_path / "ct2", quantization="float32")
    model, tokenizer = load_teacher(TeacherSpec(path=str(teacher)))
    texts = ["a tool to resize images", "library for parsing XML documents in C"]
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    generated = model.generate(**inputs, max_new_tokens=12, do_sample=False, num_beams=1)
    expected = tokenizer.batch_decode(generated, skip_special_tokens=True)
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu")
    decoded = translate(translator, tokenizer, [tokenizer(t)["input_ids"] for t in texts], max_new_tokens=12,
                        forced_eos=True)
    assert [d.text for d in decoded] == [t.strip() for t in expected]


def test_a_packed_artifact_keeps_its_footprint(diverse_artifact: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in diverse_artifact.iterdir())
    convert(diverse_artifact, tmp_path / "ct2")
    assert sorted(p.name for p in diverse_artifact.iterdir()) == before
    assert load(diverse_artifact)[0] is not None
