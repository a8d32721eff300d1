"""The CTranslate2 form of a packed artifact (or of a plain teacher): conversion and decoding.

CTranslate2 stores an int8 weight as int8 values and one float scale per row, read back as
`value / scale` (the convention of its own quantizer). Our symmetric scheme is that convention
already (`dequantize` divides the codes by the scale), so its codes and scales are copied as
they are. Ternary and LSQ weights are `code * step`; for them each row gets a code multiplier k
(k * max|code| <= 127) and a scale r such that `k * code / r` gives our fp32 value bit for bit,
found by trying the nearest floats to k / step. A row with no such pair, or a granularity that
per-row scales cannot hold, is refused (`ModelError`), never rounded.

The rest of the model (positions, LayerNorms, biases) is copied in fp32. The layout (fused
attention projections, the tied embedding and LM head) is CTranslate2's own Transformers loader
run on our dequantized model: it is run again on a model holding codes and one holding scales,
so each converted row carries its own code multiplier and scale wherever the loader moved it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ctranslate2
import numpy as np
import torch
from ctranslate2.converters.transformers import BartLoader, MBartLoader
from ctranslate2.specs.model_spec import LayerSpec, ModelSpec, visit_spec
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from compression.artifact import QUANTIZATION_FILE, load, read_manifest
from compression.bootstrap import paired_difference
from compression.data import Record
from compression.errors import ModelError
from compression.evaluate import TASK_METRIC, generate, score
from compression.quantizers import QuantizedTensor
from compression.recipe import EvaluationSpec, TeacherSpec
from compression.swap import dequantize_model, quantized_weights
from compression.teacher import load_teacher
from compression.tokenizer import decoded_text, token_id, token_ids

Quantization = Literal["int8", "float32", "float16"]
# Bumped when the conversion changes what it writes, so caches keyed by it convert again.
CONVERTER_VERSION = 1
_LOADERS = {"bart": BartLoader, "mbart": MBartLoader}
# CTranslate2's loaders read `normalize_before`, which transformers 5 configs no longer carry:
# BART normalizes after each block, mBART before.
_PRE_NORM = {"bart": False, "mbart": True}
_MAX_CODE = 127
_RECIPROCAL_NEIGHBOURS = 3  # floats tried on each side of k / step
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "sentencepiece.bpe.model", "added_tokens.json")
INFO_FILE = "dqbart.json"  # what we record beside CTranslate2's own files
# Task-metric points (ROUGE-Lsum, BLEU) the int8 form may lose against the reference path before
# the service serves our own int8 form instead (DQB_SERVING_FAITHFULNESS_BUDGET).
FAITHFULNESS_BUDGET = 0.5
FAITHFULNESS_RECORDS = 200  # validation records scored at packing time


@dataclass(frozen=True)
class Ct2Rows:
    """One weight in CTranslate2's int8 form: `codes / scale[:, None]` is our value, exactly."""

    codes: np.ndarray  # int8, out x in
    scale: np.ndarray  # float32, out


def ct2_rows(quantized: QuantizedTensor) -> Ct2Rows:
    """Our codes and scale as CTranslate2 int8 rows that dequantize to the same fp32 values."""
    if quantized.granularity not in ("per_tensor", "per_row") or quantized.codes.dim() != 2:
        raise ModelError("artifact", f"{quantized.granularity} scales have no exact per-row form")
    values = quantized.values().float()
    rows = quantized.codes.shape[0]
    scale = quantized.scale.float().reshape(-1).expand(rows).contiguous() if quantized.scale.numel() == 1 \
        else quantized.scale.float().reshape(rows)
    if quantized.scheme == "symmetric":
        multiplier, reciprocal = torch.ones(rows), scale
    else:
        multiplier, reciprocal = _exact_reciprocals(quantized.codes, values, scale)
    codes = quantized.codes.to(torch.int32) * multiplier.to(torch.int32)[:, None]
    if not torch.equal(codes.float() / reciprocal[:, None], values):
        raise ModelError("artifact", "a weight has no exact CTranslate2 int8 form")
    return Ct2Rows(codes.to(torch.int8).numpy(), reciprocal.numpy())


def _exact_reciprocals(codes: torch.Tensor, values: torch.Tensor,
                       step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the smallest multiplier k and a float r with fl(k * code / r) == value for every
    code of the row. Rows whose step is 0 hold only zero codes: any r does."""
    rows = codes.shape[0]
    peak = codes.to(torch.int32).abs().amax(dim=1).clamp(min=1)
    multiplier = torch.zeros(rows, dtype=torch.int32)
    reciprocal = torch.ones(rows)
    todo = step != 0
    multiplier[~todo] = 1
    for k in range(1, _MAX_CODE + 1):
        usable = todo & (peak * k <= _MAX_CODE)
        if not bool(usable.any()):
            break
        base = (k / step[usable].double()).float()
        for candidate in _neighbours(base):
            found = _exact(codes[usable], values[usable], k, candidate)
            index = usable.nonzero(as_tuple=True)[0][found]
            fresh = index[multiplier[index] == 0]
            multiplier[fresh], reciprocal[fresh] = k, candidate[found][multiplier[index] == 0]
        todo &= multiplier == 0
        if not bool(todo.any()):
            break
    if bool((multiplier == 0).any()):
        raise ModelError("artifact", "a weight has no exact CTranslate2 int8 form")
    return multiplier, reciprocal


def _neighbours(base: torch.Tensor) -> list[torch.Tensor]:
    """`base` and the floats next to it, nearest first."""
    out, up, down = [base], base, base
    for _ in range(_RECIPROCAL_NEIGHBOURS):
        up = torch.nextafter(up, torch.full_like(up, np.inf))
        down = torch.nextafter(down, torch.zeros_like(down))
        out += [up, down]
    return out


def _exact(codes: torch.Tensor, values: torch.Tensor, k: int, reciprocal: torch.Tensor) -> torch.Tensor:
    return ((codes.float() * k) / reciprocal[:, None] == values).all(dim=1)


def convert(source: str | Path, out_dir: str | Path, *,
            quantization: Quantization = "int8") -> dict[str, Any]:
    """Write the CTranslate2 model of `source` (an artifact or a plain Hugging Face teacher) to
    `out_dir` with the tokenizer files; returns what was converted (also in `INFO_FILE`).

    An artifact in int8 keeps its stored codes and scales (module docstring); in float32 or
    float16 its dequantized weights. A plain teacher in int8 is quantized by CTranslate2 itself,
    as a user converting it without us would.
    """
    source, out = Path(source), Path(out_dir)
    packed = (source / QUANTIZATION_FILE).is_file()
    model, tokenizer = load(source) if packed else load_teacher(TeacherSpec(path=str(source)))
    exact = packed and quantization == "int8"
    state = model.state_dict()
    weights = quantized_weights(model) if exact else {}
    rows = {key: ct2_rows(quantizer.quantize(state[key])) for key, quantizer in weights.items()}
    dequantize_model(model)
    spec = _spec(model, tokenizer, rows)
    spec.validate()
    spec.optimize(quantization=None if exact else quantization)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    info = {"converter_version": CONVERTER_VERSION, "ctranslate2_version": ctranslate2.__version__,
            "quantization": quantization, "exact_int8_weights": len(rows), "source": "artifact" if packed
            else "teacher", "decoding": decoding_settings(model, tokenizer, read_manifest(source)["recipe"]
                                                          if packed else {})}
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return info


def _spec(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: dict[str, Ct2Rows]) -> ModelSpec:
    """The loader's spec of `model`; with `rows`, each of those weights as its exact int8 rows."""
    loader = _LOADERS.get(model.config.model_type)
    if loader is None:
        raise ModelError("artifact", f"no CTranslate2 loader for model type {model.config.model_type!r}")
    model.config.normalize_before = _PRE_NORM[model.config.model_type]
    codes = _quantized_layout(loader(), model, tokenizer,
                              {k: torch.from_numpy(r.codes).float() for k, r in rows.items()})
    scales = _quantized_layout(loader(), model, tokenizer,
                               {k: torch.from_numpy(r.scale)[:, None].expand(r.codes.shape)
                                for k, r in rows.items()})
    spec = loader()(model, tokenizer)
    # HF generate starts the decoder from the config's start token (mBART's loader may drop it).
    start = model.generation_config.decoder_start_token_id or model.config.decoder_start_token_id
    spec.config.decoder_start_token = tokenizer.convert_ids_to_tokens(start)
    for layer, name in _quantizable(spec):
        if name in codes:
            layer.weight = codes[name].numpy().astype(np.int8)
            layer.weight_scale = np.ascontiguousarray(scales[name][:, 0].numpy())
    return spec


def _quantized_layout(loader: Callable[..., ModelSpec], model: PreTrainedModel,
                      tokenizer: PreTrainedTokenizerBase,
                      tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loader's quantizable weights when `tensors` replace ours (NaN elsewhere): the rows of
    each of our weights where the loader puts them. Weights with no rows of ours are left out
    (none, when `tensors` is empty)."""
    if not tensors:
        return {}
    state = model.state_dict()
    saved = {key: value.clone() for key, value in state.items()}
    with torch.no_grad():
        for value in state.values():
            if value.is_floating_point():
                value.fill_(torch.nan)
        for key, value in tensors.items():  # after the fill: tied aliases share one tensor
            state[key].copy_(value)
        spec = loader(model, tokenizer)
        found = {name: torch.as_tensor(layer.weight).float().clone()
                 for layer, name in _quantizable(spec)}
        for key, value in state.items():
            value.copy_(saved[key])
    layout = {}
    for name, weight in found.items():
        ours = ~weight.isnan()
        if bool(ours.all()):
            layout[name] = weight
        elif bool(ours.any()):
            raise ModelError("artifact", f"{name} mixes quantized and full-precision rows")
    return layout


def _quantizable(spec: ModelSpec) -> list[tuple[LayerSpec, str]]:
    """(layer, variable name) of every weight that CTranslate2 may hold in int8."""
    found: list[tuple[LayerSpec, str]] = []

    def visit(layer: LayerSpec, name: str, value: object) -> None:
        weight = name.endswith("/weight") or name == "weight"
        if weight and hasattr(layer, "weight_scale") and not isinstance(value, str):
            found.append((layer, name))

    visit_spec(spec, visit)
    return found


def decoding_settings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      recipe: dict[str, Any]) -> dict[str, Any]:
    """What HF generate does beyond the weights, for a CTranslate2 caller to do the same: a token
    forced first (mBART's target language, BART's forced BOS), whether the last token is forced
    to be end-of-sequence, and the recipe's evaluation lengths and beams."""
    config = model.generation_config
    forced_bos = config.forced_bos_token_id
    prefix = recipe.get("tgt_lang") or (tokenizer.convert_ids_to_tokens(forced_bos) if forced_bos is not None
                                        else None)
    return {"target_prefix": prefix, "source_language": recipe.get("src_lang"),
            "forced_eos": config.forced_eos_token_id is not None, "evaluation": recipe.get("evaluation")}


@dataclass(frozen=True)
class Decoded:
    token_ids: list[int]
    text: str
    tokens: int  # new tokens as HF generate counts them (its forced end-of-sequence included)


def translate(translator: ctranslate2.Translator, tokenizer: PreTrainedTokenizerBase,
              sources: Sequence[Sequence[int]], *, max_new_tokens: int, min_new_tokens: int = 0,
              num_beams: int = 1, length_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
              target_prefix: str | None = None, forced_eos: bool = False) -> list[Decoded]:
    """Decode token-id sources as HF generate would with these settings (lengths count new
    tokens; a forced end-of-sequence takes the last place)."""
    limit = max(1, max_new_tokens - 1) if forced_eos else max_new_tokens
    results = translator.translate_batch(
        [tokenizer.convert_ids_to_tokens(list(ids)) for ids in sources],
        beam_size=num_beams,
        length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        max_decoding_length=limit,
        min_decoding_length=min(min_new_tokens, limit),
        max_input_length=0,
        target_prefix=[[target_prefix]] * len(sources) if target_prefix else None,
        return_end_token=True,
    )
    decoded = []
    for result in results:
        ids = token_ids(tokenizer, result.hypotheses[0])
        cut = forced_eos and (not ids or ids[-1] != tokenizer.eos_token_id)
        decoded.append(Decoded(ids, decoded_text(tokenizer, ids).strip(), len(ids) + cut))
    return decoded


def faithfulness(artifact: Path, records: Sequence[Record], task: str, spec: EvaluationSpec, *,
                 max_source_length: int, tgt_lang: str | None = None, threads: int = 1) -> dict[str, Any]:
    """The int8 CTranslate2 form against the reference path (`artifact.load`), both greedy with the
    recipe's length settings on `records`: identical texts and the task metric of each.

    CTranslate2 quantizes activations per row and on the fly, where training fixed per-tensor
    ranges, so the two paths may part; this measures by how much.
    """
    model, tokenizer = load(artifact)
    sources, targets = [r.source for r in records], [r.target for r in records]
    forced = token_id(tokenizer, tgt_lang) if tgt_lang else None
    greedy = spec.model_copy(update={"num_beams": 1})
    with tempfile.TemporaryDirectory(prefix="ct2-check-") as work:
        try:
            info = convert(artifact, work)
        except ModelError as exc:
            return {"available": False, "reason": exc.message}
        reference = generate(model, tokenizer, sources, greedy, max_source_length=max_source_length,
                             forced_bos_token_id=forced)
        translator = ctranslate2.Translator(work, device="cpu", compute_type="int8", intra_threads=threads)
        limit = min(max_source_length, model.config.max_position_embeddings)
        ids = tokenizer(sources, max_length=limit, truncation=True)["input_ids"]
        decoded = translate(translator, tokenizer, ids, max_new_tokens=spec.max_length - 1,
                            min_new_tokens=max(0, spec.min_length - 1), length_penalty=spec.length_penalty,
                            no_repeat_ngram_size=spec.no_repeat_ngram_size,
                            target_prefix=tgt_lang or info["decoding"]["target_prefix"],
                            forced_eos=info["decoding"]["forced_eos"])
    converted = [d.text for d in decoded]
    identical = sum(a == b for a, b in zip(reference, converted, strict=True))
    metric = TASK_METRIC[task]
    ours, theirs = score(task, reference, targets)[metric], score(task, converted, targets)[metric]
    loss = paired_difference(task, reference, converted, targets)
    return {
        "available": True, "compute_type": "int8", "ctranslate2_version": ctranslate2.__version__,
        "records": len(records), "decoding": "greedy",
        "identical_percent": 100.0 * identical / len(records),
        "metric": metric, "reference": ours, "ctranslate2": theirs, "metric_delta": theirs - ours,
        "metric_loss": ours - theirs, "loss_interval": loss.to_dict(), "budget": FAITHFULNESS_BUDGET,
        "within_budget": not over_budget(loss.low, FAITHFULNESS_BUDGET),
    }


def over_budget(loss_low: float, budget: float) -> bool:
    """Whether the converted form surely loses more than `budget` points: the low end of the loss's
    interval is above it. On a few hundred records the point estimate alone moves by tenths of a
    point with one changed output, which would decide the engine by chance."""
    return loss_low > budget
