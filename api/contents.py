"""What is inside an upload: a Hugging Face BART/mBART directory, or a JSONL/CSV dataset."""

from __future__ import annotations

import csv
import json
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from api.tensors import build_on_meta, check_against_architecture
from compression.errors import DatasetError, ModelError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

SUPPORTED_ARCHITECTURES = {"bart": "BartForConditionalGeneration", "mbart": "MBartForConditionalGeneration"}
# Any one of these sets is a tokenizer transformers can load for BART (BPE) or mBART (sentencepiece).
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("sentencepiece.bpe.model",))
# What a model upload keeps of a Hugging Face snapshot: safetensors, JSON (config, tokenizer
# settings, mBART's language codes) and the tokenizers' data files. The rest, above all the same
# weights again as pytorch_model.bin, tf_model.h5, flax_model.msgpack or rust_model.ot, is left
# in the archive unopened: those formats can run code when loaded, and we never need them.
KEPT_SUFFIXES = (".safetensors", ".json")
KEPT_TOKENIZER_FILES = ("merges.txt", "sentencepiece.bpe.model")
CONVERT_HINT = ("download the repository's model.safetensors (`hf download REPO model.safetensors`), "
                "or convert the weights on a trusted machine: `python -c \"from transformers import "
                "AutoModelForSeq2SeqLM as M; M.from_pretrained('DIR').save_pretrained('DIR')\"` "
                "writes DIR/model.safetensors")
PREVIEW_ROWS = 5
PREVIEW_CHARS = 500
_MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_LINE_CHARS = 1_000_000  # far above any document; a longer line is a broken or hostile file
_LAYER_NAME = re.compile(r"(?:^|\.)(encoder|decoder)\.layers\.(\d+)\.")


@dataclass(frozen=True)
class ModelSummary:
    architecture: str
    model_type: str
    layers: dict[str, int]  # {"encoder": n, "decoder": n}
    parameters: int


@dataclass(frozen=True)
class DatasetSummary:
    format: str  # jsonl | csv
    rows: int
    columns: list[str]
    preview: list[dict[str, Any]]


def kept_in_model(name: str) -> bool:
    """Whether a model upload keeps the archive member `name` (a path inside the archive)."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(KEPT_SUFFIXES) or base in KEPT_TOKENIZER_FILES


def find_model_root(folder: Path) -> Path:
    """The folder holding config.json: the archive's root, or its single top-level folder."""
    if (folder / "config.json").is_file():
        return folder
    entries = list(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "config.json").is_file():
        return entries[0]
    raise ModelError("file", "no config.json at the top of the archive (or of its single folder)")


def _read_config(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError("file", f"config.json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError("file", "config.json must hold a JSON object")
    return data


def _check_config(data: dict[str, Any]) -> tuple[str, str, PretrainedConfig]:
    """(model_type, architecture, config) after loading it as a transformers config."""
    model_type = data.get("model_type")
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise ModelError("file", f"config.json model_type is {model_type!r}; expected 'bart' or 'mbart'")
    architecture = SUPPORTED_ARCHITECTURES[model_type]
    if data.get("architectures", [architecture]) != [architecture]:
        raise ModelError("file", f"config.json architectures must be [{architecture!r}] (a seq2seq LM)")
    from transformers import BartConfig, MBartConfig  # 2 s to import: only model uploads pay it

    try:
        config = (BartConfig if model_type == "bart" else MBartConfig).from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ModelError("file", f"config.json does not load as a {model_type} config: {exc}") from None
    for name in ("encoder_layers", "decoder_layers", "d_model", "vocab_size"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError("file", f"config.json {name} must be a positive integer, got {value!r}")
    return model_type, architecture, config


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes), checked for sanity."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ModelError("file", "model.safetensors is truncated")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(size - 8, _MAX_HEADER_BYTES):
            raise ModelError("file", "model.safetensors has a bad header length")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelError("file", "model.safetensors has an unreadable header") from None
    if not isinstance(header, dict):
        raise ModelError("file", "model.safetensors has an unreadable header")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    ends = [_tensor_end(name, info) for name, info in tensors.items()]
    if not tensors or max(ends) != size - 8 - length:
        raise ModelError("file", "model.safetensors: tensor data does not match the file size")
    return tensors


def _tensor_end(name: str, info: Any) -> int:
    shape = info.get("shape") if isinstance(info, dict) else None
    offsets = info.get("data_offsets") if isinstance(info, dict) else None
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
            and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise ModelError("file", f"model.safetensors: bad entry for tensor {name!r}")
    return int(info["data_offsets"][1])


def _check_weights(tensors: dict[str, Any], layers: dict[str, int]) -> int:
    """Parameter count, after checking that the layers in the weights are the config's."""
    found: dict[str, set[int]] = {"encoder": set(), "decoder": set()}
    for name in tensors:
        if match := _LAYER_NAME.search(name):
            found[match.group(1)].add(int(match.group(2)))
    for stack, depth in layers.items():
        if found[stack] != set(range(depth)):
            raise ModelError("file", f"model.safetensors has {stack} layers {sorted(found[stack])}; "
                                     f"config.json says {depth}")
    return sum(math.prod(info["shape"]) for info in tensors.values())


def check_model_dir(root: Path) -> ModelSummary:
    """Check that `root` is a loadable BART/mBART directory: config, safetensors weights, tokenizer."""
    model_type, architecture, config = _check_config(_read_config(root))
    layers = {"encoder": config.encoder_layers, "decoder": config.decoder_layers}
    weights = root / "model.safetensors"
    if not weights.is_file():
        raise ModelError("file", "model.safetensors is missing: only safetensors weights are accepted "
                                 f"(other weight files are left unopened); {CONVERT_HINT}")
    header = safetensors_header(weights)
    parameters = _check_weights(header, layers)  # first: its message names the layers that differ
    model = build_on_meta(config, architecture)
    check_against_architecture(weights, header, model)
    if not any(all((root / f).is_file() for f in files) for files in TOKENIZER_FILE_SETS):
        raise ModelError("file", "tokenizer files are missing (tokenizer.json, vocab.json + merges.txt, "
                                 "or sentencepiece.bpe.model)")
    return ModelSummary(architecture=architecture, model_type=model_type, layers=layers,
                        parameters=parameters)


def dataset_format(filename: str) -> str:
    lowered = filename.lower()
    for suffix in ("jsonl", "csv"):
        if lowered.endswith("." + suffix):
            return suffix
    raise DatasetError("file", f"expected a .jsonl or .csv file, got {filename!r}")


def _shorten(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v[:PREVIEW_CHARS] if isinstance(v, str) else v for k, v in row.items()}


def _bounded_lines(f: TextIO) -> Iterator[str]:
    """The file's lines, refusing one longer than MAX_LINE_CHARS without reading it whole."""
    number = 0
    while line := f.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise DatasetError("file", f"line {number} is longer than {MAX_LINE_CHARS} characters")
        yield line


def _jsonl_rows(path: Path) -> DatasetSummary:
    rows, columns = 0, dict[str, None]()
    preview: list[dict[str, Any]] = []
    # utf-8-sig: a byte-order mark (Windows editors write one) is skipped, as for CSV and in training.
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(_bounded_lines(f), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError("file", f"line {number} is not valid JSON: {exc.msg}") from None
            except RecursionError:  # the parser recurses per level: [[[[...]]]] exhausts the stack
                raise DatasetError("file", f"line {number} is nested too deeply") from None
            if not isinstance(record, dict):
                raise DatasetError("file", f"line {number} is not a JSON object")
            rows += 1
            columns.update(dict.fromkeys(record))
            if len(preview) < PREVIEW_ROWS:
                preview.append(_shorten(record))
    return DatasetSummary(format="jsonl", rows=rows, columns=list(columns), preview=preview)


def _csv_rows(path: Path) -> DatasetSummary:
    rows = 0
    preview: list[dict[str, Any]] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        if not columns or any(not c for c in columns) or len(set(columns)) != len(columns):
            raise DatasetError("file", "the CSV header must name every column once")
        for record in reader:
            if None in record:
                raise DatasetError("file", f"line {reader.line_num} has more fields than the header")
            if None in record.values():
                raise DatasetError("file", f"line {reader.line_num} has fewer fields than the header")
            rows += 1
            if len(preview) < PREVIEW_ROWS:
                preview.append(_shorten(record))
    return DatasetSummary(format="csv", rows=rows, columns=columns, preview=preview)


def summarize_dataset(path: Path, filename: str) -> DatasetSummary:
    """Rows, columns and the first rows of a .jsonl or .csv file; refuses empty or non-UTF-8 files."""
    fmt = dataset_format(filename)
    try:
        summary = _jsonl_rows(path) if fmt == "jsonl" else _csv_rows(path)
    except UnicodeDecodeError:
        raise DatasetError("file", "the file is not UTF-8 text") from None
    except csv.Error as exc:
        raise DatasetError("file", f"unreadable CSV: {exc}") from None
    if summary.rows == 0:
        raise DatasetError("file", "the dataset has no rows")
    return summary
