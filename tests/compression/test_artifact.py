"""The packed artifact: files, exact reload at 2/4/8 bits, size accounting, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration, PreTrainedModel

from compression.artifact import footprint, load, pack, write_report
from compression.errors import ModelError
from compression.layer_map import LayerMap
from compression.packing import packed_numel
from compression.recipe import QuantizationSpec, StudentSpec, TeacherSpec
from compression.student import build_student
from compression.swap import quantize_model, quantized_weights
from compression.teacher import load_teacher

SEED = 123
TEXTS = ["a library for parsing debian control files", "command line tool to resize images"]
IDENTITY = {"sha256": "0" * 64, "source": "test"}
CASES = {
    "2bit-tensor": QuantizationSpec(weight_bits=2, embedding_bits=2),
    # per-row ternary: the all-zero pad embedding row has alpha 0 (a zero scale)
    "2bit-row": QuantizationSpec(weight_bits=2, embedding_bits=2, granularity="per_row"),
    "2bit-row-lsq": QuantizationSpec(
        weight_bits=2, embedding_bits=2, granularity="per_row", learned_scale=True
    ),
    "4bit-row": QuantizationSpec(weight_bits=4, embedding_bits=4, granularity="per_row"),
    "4bit-tensor-lsq": QuantizationSpec(weight_bits=4, embedding_bits=8, learned_scale=True),
    "8bit-tensor": QuantizationSpec(weight_bits=8, embedding_bits=8),
    "8bit-row": QuantizationSpec(weight_bits=8, embedding_bits=8, granularity="per_row"),
    "2bit-symmetric-row": QuantizationSpec(
        weight_bits=2, embedding_bits=2, granularity="per_row", two_bit_scheme="symmetric"
    ),
    "2bit-group": QuantizationSpec(weight_bits=2, embedding_bits=2, granularity="per_group", group_size=16),
    "4bit-group-lsq": QuantizationSpec(
        weight_bits=4, embedding_bits=4, granularity="per_group", group_size=8, learned_scale=True
    ),
    "8bit-group": QuantizationSpec(weight_bits=8, embedding_bits=8, granularity="per_group", group_size=16),
}
GROUP_CASES = [name for name in CASES if "group" in name]


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir: Path) -> tuple[PreTrainedModel, object]:
    return load_teacher(TeacherSpec(path=str(tiny_teacher_dir)))


def _trained_student(
    teacher: PreTrainedModel, tokenizer: object, spec: QuantizationSpec
) -> tuple[PreTrainedModel, LayerMap]:
    """A fake-quantized 2-1 student after a few AdamW steps, so its weights are its own."""
    torch.manual_seed(SEED)
    student, layer_map = build_student(teacher, StudentSpec(encoder_layers=2, decoder_layers=1))
    quantize_model(student, spec)
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    for _ in range(3):
        student(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return student.eval(), layer_map


def _pack(
    student: PreTrainedModel, tokenizer: object, out: Path, spec: QuantizationSpec, layer_map: LayerMap
) -> Path:
    pack(
        student,
        tokenizer,
        out,
        spec=spec,
        layer_map=layer_map,
        recipe={"method": "dq"},
        teacher_identity=IDENTITY,
    )
    return out


@pytest.fixture(scope="module")
def packed_2bit(teacher: tuple[PreTrainedModel, object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = CASES["2bit-row-lsq"]
    student, layer_map = _trained_student(*teacher, spec)
    return _pack(student, teacher[1], tmp_path_factory.mktemp("artifact"), spec, layer_map)


@pytest.mark.parametrize("case", CASES)
def test_loaded_artifact_reproduces_the_fake_quantized_student(
    teacher: tuple[PreTrainedModel, object], tmp_path: Path, case: str
) -> None:
    spec = CASES[case]
    student, layer_map = _trained_student(*teacher, spec)
    model, tokenizer = load(_pack(student, teacher[1], tmp_path, spec, layer_map))
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = student(**batch, decoder_input_ids=batch["input_ids"]).logits
        got = model(**batch, decoder_input_ids=batch["input_ids"]).logits
    assert batch["attention_mask"].min() == 0  # padded rows go through the pad embedding
    assert torch.isfinite(got).all()
    assert (got - expected).abs().max() <= 1e-4
    settings = {"max_new_tokens": 10, "min_new_tokens": 10, "num_beams": 1, "do_sample": False}
    assert torch.equal(model.generate(**batch, **settings), student.generate(**batch, **settings))
    assert not model.training


def test_artifact_directory_holds_the_design_files(packed_2bit: Path) -> None:
    names = {p.name for p in packed_2bit.iterdir()}
    assert {"config.json", "tokenizer.json", "model.safetensors", "quantization.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)


def test_low_bit_tensors_are_packed_and_aliases_are_not_stored(packed_2bit: Path) -> None:
    manifest = json.loads((packed_2bit / "quantization.json").read_text())
    with safe_open(str(packed_2bit / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())  # noqa: SIM118
        fc1 = manifest["tensors"]["model.encoder.layers.0.fc1.weight"]
        codes = f.get_tensor(fc1["codes"])
        assert codes.dtype == torch.uint8
        assert codes.numel() == packed_numel(fc1["shape"][0] * fc1["shape"][1], 2)
        assert f.get_tensor(fc1["scale"]).shape == (fc1["shape"][0], 1)
        assert f.get_tensor("model.encoder.embed_positions.weight").dtype == torch.float32
    assert "model.shared.weight.codes" in keys
    assert not any(
        k.startswith(("lm_head", "model.encoder.embed_tokens", "model.decoder.embed_tokens")) for k in keys
    )
    assert manifest["aliases"]["lm_head.weight"] == "model.shared.weight"


def test_quantization_json_records_scheme_map_recipe_and_teacher(packed_2bit: Path) -> None:
    manifest = json.loads((packed_2bit / "quantization.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["tensors"]["model.shared.weight"] == {
        "bits": 2,
        "scheme": "lsq",
        "granularity": "per_row",
        "shape": [1000, 32],
        "codes": "model.shared.weight.codes",
        "scale": "model.shared.weight.scale",
    }
    assert manifest["layer_map"] == {"encoder": [0, 1], "decoder": [1]}
    assert manifest["recipe"] == {"method": "dq"}
    assert manifest["teacher"] == IDENTITY
    assert manifest["quantization"]["weight_bits"] == 2


def test_eight_bit_codes_are_int8(teacher: tuple[PreTrainedModel, object], tmp_path: Path) -> None:
    student, layer_map = build_student(teacher[0], StudentSpec(encoder_layers=1, decoder_layers=1))
    out = _pack(
        quantize_model(student, CASES["8bit-tensor"]), teacher[1], tmp_path, CASES["8bit-tensor"], layer_map
    )
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        codes = f.get_tensor("model.decoder.layers.0.fc2.weight.codes")
    assert codes.dtype == torch.int8 and codes.shape == student.model.decoder.layers[0].fc2.weight.shape


def _wide_teacher(encoder_layers: int, decoder_layers: int) -> BartForConditionalGeneration:
    """Weights dominate: d_model 128, FFN 512, vocab 1000, 64 positions."""
    torch.manual_seed(SEED)
    config = BartConfig(
        vocab_size=1000,
        d_model=128,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=512,
        decoder_ffn_dim=512,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    config._attn_implementation = "eager"
    return BartForConditionalGeneration(config).eval()


def test_student_bytes_are_the_theoretical_bytes_plus_the_safetensors_header(
    tiny_teacher_dir: Path, tmp_path: Path
) -> None:
    teacher = _wide_teacher(2, 2)
    spec = QuantizationSpec(weight_bits=8, embedding_bits=8, granularity="per_row")
    student, layer_map = build_student(teacher, StudentSpec())
    out = _pack(
        quantize_model(student, spec),
        AutoTokenizer.from_pretrained(tiny_teacher_dir),
        tmp_path,
        spec,
        layer_map,
    )
    sizes = footprint(teacher, out)
    # The only fixed overhead: 8 length bytes + the JSON header (names, dtypes, shapes, offsets).
    assert sizes["student_bytes"] == sizes["theoretical_bytes"] + sizes["safetensors_header_bytes"]
    assert abs(sizes["student_bytes"] - sizes["theoretical_bytes"]) <= 0.03 * sizes["theoretical_bytes"]
    assert sizes["student_parameters"] == sizes["teacher_parameters"]


def test_two_bit_six_three_student_of_a_six_six_teacher_is_14x_smaller(
    tiny_teacher_dir: Path, tmp_path: Path
) -> None:
    teacher = _wide_teacher(6, 6)
    embedding = teacher.model.shared.weight.numel()
    assert embedding <= sum(p.numel() for p in teacher.parameters()) / 3
    spec = QuantizationSpec(weight_bits=2, embedding_bits=2, activation_bits=8)
    student, layer_map = build_student(teacher, StudentSpec(encoder_layers=6, decoder_layers=3))
    out = _pack(
        quantize_model(student, spec),
        AutoTokenizer.from_pretrained(tiny_teacher_dir),
        tmp_path,
        spec,
        layer_map,
    )
    sizes = footprint(teacher, out)
    assert sizes["teacher_bytes"] == 4 * (
        sum(p.numel() for p in teacher.parameters()) + teacher.final_logits_bias.numel()
    )
    assert sizes["compression_ratio"] >= 14.0
    assert sizes["compression_ratio"] == sizes["teacher_bytes"] / sizes["student_bytes"]


def test_report_is_written_sorted_with_indent(tmp_path: Path) -> None:
    write_report(tmp_path, {"student_bytes": 2, "compression_ratio": 1.5})
    text = (tmp_path / "report.json").read_text()
    assert text == '{\n  "compression_ratio": 1.5,\n  "student_bytes": 2\n}\n'


@pytest.mark.parametrize("broken", ["model.safetensors", "quantization.json"])
def test_load_refuses_a_missing_file(packed_2bit: Path, tmp_path: Path, broken: str) -> None:
    out = _copy(packed_2bit, tmp_path)
    (out / broken).unlink()
    with pytest.raises(ModelError) as info:
        load(out)
    assert info.value.param == "artifact" and broken in str(info.value)


@pytest.mark.parametrize("broken", ["model.safetensors", "quantization.json"])
def test_load_refuses_a_malformed_file(packed_2bit: Path, tmp_path: Path, broken: str) -> None:
    out = _copy(packed_2bit, tmp_path)
    (out / broken).write_bytes((out / broken).read_bytes()[:100])
    with pytest.raises(ModelError, match=broken):
        load(out)


def test_load_refuses_a_weights_file_missing_a_tensor(packed_2bit: Path, tmp_path: Path) -> None:
    out = _copy(packed_2bit, tmp_path)
    manifest = json.loads((out / "quantization.json").read_text())
    manifest["tensors"]["model.encoder.layers.0.fc1.weight"]["codes"] = "absent.codes"
    (out / "quantization.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="absent.codes"):
        load(out)


@pytest.mark.parametrize(
    ("field", "value"),
    [("quantization", {"weight_bits": 3}), ("tensors", {"model.shared.weight": {"bits": 2}})],
)
def test_load_refuses_a_malformed_manifest_entry(
    packed_2bit: Path, tmp_path: Path, field: str, value: object
) -> None:
    out = _copy(packed_2bit, tmp_path)
    manifest = json.loads((out / "quantization.json").read_text())
    manifest[field] = value
    (out / "quantization.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError) as info:
        load(out)
    assert info.value.param == "artifact"


def _copy(src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    out.mkdir()
    for file in src.iterdir():
        (out / file.name).write_bytes(file.read_bytes())
    return out


@pytest.mark.parametrize("case", GROUP_CASES)
def test_group_scaled_round_trip_restores_every_weight_bit_for_bit(
    teacher: tuple[PreTrainedModel, object], tmp_path: Path, case: str
) -> None:
    spec = CASES[case]
    student, layer_map = _trained_student(*teacher, spec)
    model, _ = load(_pack(student, teacher[1], tmp_path, spec, layer_map))
    want, got = quantized_weights(student), quantized_weights(model)
    assert want.keys() == got.keys()
    state, loaded = student.state_dict(), model.state_dict()
    with torch.no_grad():
        for key, quantizer in want.items():
            assert torch.equal(got[key](loaded[key]), quantizer(state[key])), key


def test_group_scales_are_stored_one_per_group_and_counted_in_the_bytes(
    teacher: tuple[PreTrainedModel, object], tmp_path: Path
) -> None:
    sizes = {}
    for granularity in ("per_row", "per_group"):
        spec = QuantizationSpec(weight_bits=2, embedding_bits=2, granularity=granularity, group_size=16)
        student, layer_map = _trained_student(*teacher, spec)
        out = _pack(student, teacher[1], tmp_path / granularity, spec, layer_map)
        sizes[granularity] = footprint(teacher[0], out)
    manifest = json.loads((out / "quantization.json").read_text())
    linears = {k: v for k, v in manifest["tensors"].items() if k != "model.shared.weight"}
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        for entry in linears.values():
            rows, columns = entry["shape"]
            assert entry["granularity"] == "per_group"
            assert tuple(f.get_tensor(entry["scale"]).shape) == (rows, columns // 16)
    shapes = [entry["shape"] for entry in linears.values()]
    extra_scales = sum(rows * (columns // 16 - 1) for rows, columns in shapes)
    grown = sizes["per_group"]["theoretical_bytes"] - sizes["per_row"]["theoretical_bytes"]
    assert grown == 4 * extra_scales
    assert sizes["per_group"]["student_bytes"] > sizes["per_row"]["student_bytes"]
