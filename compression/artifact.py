"""The packed artifact (DESIGN.md section 4): write it, measure it, load it back.

model.safetensors holds, per quantized weight, `<key>.codes` (int8, or uint8 with two 4-bit /
four 2-bit codes per byte) and `<key>.scale` (fp32, one per tensor or per row); everything else
in fp32 under its state_dict key (positions, LayerNorms, biases, final_logits_bias, learned
activation steps). Tied aliases (encoder/decoder embed_tokens, lm_head) are stored once.
quantization.json says how to read each tensor back. Only safetensors and JSON are read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoTokenizer, GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from compression.errors import ModelError
from compression.finite import require_finite
from compression.layer_map import LayerMap
from compression.packing import pack_codes, unpack_codes
from compression.quantizers import dequantize
from compression.recipe import QuantizationSpec
from compression.swap import quantize_model, quantized_weights
from compression.teacher import model_class

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
QUANTIZATION_FILE = "quantization.json"
REPORT_FILE = "report.json"
_STEP_SUFFIX = ".weight_quantizer.step"
_INITIALIZED_SUFFIX = ".initialized"
SCHEMES = ("symmetric", "ternary", "lsq")


def pack(
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    *,
    spec: QuantizationSpec,
    layer_map: LayerMap,
    recipe: dict[str, Any],
    teacher_identity: dict[str, Any],
) -> None:
    """Write config.json, generation_config.json, tokenizer files, model.safetensors, quantization.json."""
    require_finite(student.state_dict(), "student", "refusing to pack the student")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, schemes = _quantized_tensors(student)
    full_precision, aliases = _full_precision_tensors(student, set(schemes))
    tensors.update(full_precision)
    save_file(
        tensors, str(out / WEIGHTS_FILE), metadata={"format": "dqbart", "format_version": str(FORMAT_VERSION)}
    )
    student.config.save_pretrained(str(out))
    student.generation_config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    manifest = {
        "format_version": FORMAT_VERSION,
        "quantization": spec.model_dump(mode="json"),
        "tensors": schemes,
        "full_precision": _full_precision_entries(student, full_precision),
        "aliases": aliases,
        "layer_map": layer_map.to_dict(),
        "recipe": recipe,
        "teacher": teacher_identity,
    }
    _write_json(out / QUANTIZATION_FILE, manifest)


def _quantized_tensors(student: PreTrainedModel) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    schemes: dict[str, dict[str, Any]] = {}
    state = student.state_dict()
    for key, quantizer in quantized_weights(student).items():
        quantized = quantizer.quantize(state[key])
        tensors[f"{key}.codes"] = pack_codes(quantized.codes, quantized.bits).cpu()
        tensors[f"{key}.scale"] = quantized.scale.detach().float().cpu().contiguous()
        schemes[key] = {
            "bits": quantized.bits,
            "scheme": quantized.scheme,
            "granularity": quantized.granularity,
            "shape": list(state[key].shape),
            "codes": f"{key}.codes",
            "scale": f"{key}.scale",
        }
    return tensors, schemes


def _full_precision_tensors(
    student: PreTrainedModel, quantized: set[str]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The rest of the state in fp32, each tensor once; `aliases` maps tied keys to the stored key."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    owner: dict[int, str] = {}
    for key, value in student.state_dict(keep_vars=True).items():
        if key.endswith(_STEP_SUFFIX) or key.endswith(_INITIALIZED_SUFFIX):
            continue  # weight steps are the stored scales; loaded steps are initialized
        pointer = value.data_ptr()
        if pointer in owner:
            aliases[key] = owner[pointer]
            continue
        owner[pointer] = key
        if key not in quantized:
            tensors[key] = value.detach().float().cpu().contiguous()
    return tensors, aliases


def _full_precision_entries(
    student: PreTrainedModel, tensors: dict[str, torch.Tensor]
) -> dict[str, dict[str, Any]]:
    """Shape and kind (parameter, buffer, or quantizer step) of each fp32 tensor, for size accounting."""
    buffers = {name for name, _ in student.named_buffers()}
    entries = {}
    for key, value in tensors.items():
        kind = "quantizer" if key.endswith(".step") else "buffer" if key in buffers else "parameter"
        entries[key] = {"shape": list(value.shape), "kind": kind}
    return entries


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_report(out_dir: str | Path, report: dict[str, Any]) -> None:
    """report.json: teacher/student metrics, the footprint figures, and whatever the caller adds."""
    _write_json(Path(out_dir) / REPORT_FILE, report)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """quantization.json of an artifact directory, checked enough to rebuild from it."""
    file = Path(path) / QUANTIZATION_FILE
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError("artifact", f"cannot read {QUANTIZATION_FILE}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError("artifact", f"{QUANTIZATION_FILE} is not format version {FORMAT_VERSION}")
    for field in ("quantization", "tensors", "full_precision", "aliases"):
        if not isinstance(manifest.get(field), dict):
            raise ModelError("artifact", f"{QUANTIZATION_FILE} lacks the '{field}' object")
    return manifest


def footprint(teacher: PreTrainedModel, out_dir: str | Path) -> dict[str, Any]:
    """Sizes in bytes: the fp32 teacher (tied embedding once), the artifact's weights file, and the
    theoretical size (bits x parameters for quantized tensors, 32 bits for the rest, plus scales)."""
    out = Path(out_dir)
    manifest = read_manifest(out)
    student_bytes = os.path.getsize(out / WEIGHTS_FILE)
    quantized_bits = sum(s["bits"] * _numel(s["shape"]) for s in manifest["tensors"].values())
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        scale_numel = sum(_numel(f.get_slice(s["scale"]).get_shape()) for s in manifest["tensors"].values())
    rest = manifest["full_precision"].values()
    rest_numel = sum(_numel(entry["shape"]) for entry in rest)
    theoretical_bytes = quantized_bits / 8 + 4 * (scale_numel + rest_numel)
    teacher_bytes = 4 * _unique_numel([*teacher.parameters(), *teacher.buffers()])
    return {
        "teacher_bytes": teacher_bytes,
        "student_bytes": student_bytes,
        "theoretical_bytes": int(round(theoretical_bytes)),
        "compression_ratio": teacher_bytes / student_bytes,
        "teacher_parameters": _unique_numel(list(teacher.parameters())),
        "student_parameters": sum(_numel(s["shape"]) for s in manifest["tensors"].values())
        + sum(_numel(entry["shape"]) for entry in rest if entry["kind"] == "parameter"),
        "safetensors_header_bytes": 8 + _header_length(out / WEIGHTS_FILE),
    }


def _numel(shape: list[int] | tuple[int, ...]) -> int:
    total = 1
    for n in shape:
        total *= n
    return total


def _unique_numel(tensors: list[torch.Tensor]) -> int:
    return sum({t.data_ptr(): t.numel() for t in tensors}.values())


def _header_length(path: Path) -> int:
    with open(path, "rb") as f:
        return int.from_bytes(f.read(8), "little")


def load(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The packed student as a working eval-mode model with its tokenizer.

    Weights are the dequantized codes, and the quantizers of the recipe stay in place (they
    reproduce those values), so outputs match the fake-quantized student at the end of training.
    """
    path = Path(path)
    manifest = read_manifest(path)
    try:
        config = AutoConfig.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ModelError("artifact", f"cannot read the config or tokenizer: {exc}") from None
    config._attn_implementation = "eager"
    model = model_class(config, "artifact")(config)
    try:
        _restore(model, path / WEIGHTS_FILE, manifest)
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ModelError("artifact", f"malformed {QUANTIZATION_FILE}: {exc}") from None
    if (path / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(path))
    return model.to(device).eval(), tokenizer  # type: ignore[arg-type]  # transformers types its wrapped `to` without self


def _restore(model: PreTrainedModel, file: Path, manifest: dict[str, Any]) -> None:
    """Quantize `model` as the manifest says, load the stored tensors, and pin each weight's grid."""
    quantize_model(model, QuantizationSpec.model_validate(manifest["quantization"]))
    state, scales = _state_from_file(file, manifest, model)
    model.load_state_dict(state)
    for key, quantizer in quantized_weights(model).items():
        quantizer.freeze(_stored(scales, key), manifest["tensors"][key]["scheme"])


def _state_from_file(
    file: Path, manifest: dict[str, Any], model: PreTrainedModel
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every state_dict key of the rebuilt model (from the stored codes, scales and fp32 tensors),
    and the scale of each quantized weight."""
    try:
        with safe_open(str(file), framework="pt") as f:
            stored = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (OSError, SafetensorError) as exc:
        raise ModelError("artifact", f"cannot read {WEIGHTS_FILE}: {exc}") from None
    require_finite(stored, "artifact", WEIGHTS_FILE)
    values = {key: tensor for key, tensor in stored.items() if key in manifest["full_precision"]}
    scales: dict[str, torch.Tensor] = {}
    for key, scheme in manifest["tensors"].items():
        if scheme["scheme"] not in SCHEMES:
            raise ModelError("artifact", f"{key}: unknown scheme {scheme['scheme']!r} (one of {SCHEMES})")
        codes = unpack_codes(_stored(stored, scheme["codes"]), scheme["bits"], tuple(scheme["shape"]))
        scales[key] = _stored(stored, scheme["scale"])
        values[key] = dequantize(codes, scales[key], scheme["scheme"])
    state: dict[str, torch.Tensor] = {}
    for key, target in model.state_dict().items():
        canonical = manifest["aliases"].get(key, key)
        if key.endswith(_INITIALIZED_SUFFIX):
            state[key] = torch.ones_like(target)
        elif key.endswith(_STEP_SUFFIX):  # a learned weight step is that weight's stored scale
            weight = key.removesuffix(_STEP_SUFFIX) + ".weight"
            state[key] = _stored(scales, manifest["aliases"].get(weight, weight)).reshape(target.shape)
        else:
            state[key] = _stored(values, canonical)
        if state[key].shape != target.shape:
            raise ModelError(
                "artifact", f"{key} has shape {list(state[key].shape)}, the config needs {list(target.shape)}"
            )
    return state, scales


def _stored(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in tensors:
        raise ModelError("artifact", f"{WEIGHTS_FILE} lacks the tensor {key!r}")
    return tensors[key]
