"""Records from JSONL/CSV files, train/validation splits, tokenization, collation and a
loader whose position can be saved and restored exactly."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from compression.errors import DatasetError
from compression.recipe import DatasetSpec

LABEL_PAD = -100  # ignored by the cross-entropy loss


@dataclass(frozen=True)
class Record:
    source: str
    target: str


@dataclass(frozen=True)
class Splits:
    train: list[Record]
    validation: list[Record]


def read_records(
    path: str | Path, source_field: str, target_field: str, *, param: str = "dataset.train"
) -> list[Record]:
    """Read (source, target) records from .jsonl/.csv (optionally .gz); `param` names the file in errors."""
    path = Path(path)
    text = _read_text(path, param)
    rows = _csv_rows(text, path, param) if _is_csv(path, text) else _jsonl_rows(text, path, param)
    if not rows:
        raise DatasetError(param, f"{path.name} has no records")
    records = []
    for number, row in rows:
        source = _field(row, source_field, "dataset.source_field", path, number)
        target = _field(row, target_field, "dataset.target_field", path, number)
        records.append(Record(source, target))
    return records


def _read_text(path: Path, param: str) -> str:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(param, f"file not found: {path}") from None
    except (OSError, EOFError) as exc:
        raise DatasetError(param, f"cannot read {path.name}: {exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        where = f"byte {raw[exc.start]:#04x} at offset {exc.start}"
        raise DatasetError(param, f"{path.name} is not UTF-8 text ({where})") from None


def _is_csv(path: Path, text: str) -> bool:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    if suffixes and suffixes[-1] in (".jsonl", ".json", ".ndjson"):
        return False
    if suffixes and suffixes[-1] in (".csv", ".tsv"):
        return True
    return not text.lstrip().startswith("{")  # no known extension: sniff the first record


def _jsonl_rows(text: str, path: Path, param: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(param, f"{path.name} line {number} is not valid JSON: {exc.msg}") from None
        except RecursionError:  # the parser recurses per level: [[[[...]]]] exhausts the stack
            raise DatasetError(param, f"{path.name} line {number} is nested too deeply") from None
        if not isinstance(row, dict):
            raise DatasetError(param, f"{path.name} line {number} is not a JSON object")
        rows.append((number, row))
    return rows


def _csv_rows(text: str, path: Path, param: str) -> list[tuple[int, dict[str, Any]]]:
    delimiter = "\t" if path.name.removesuffix(".gz").endswith(".tsv") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return []
    rows = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DatasetError(
                param,
                f"{path.name} line {reader.line_num} has {len(row)} fields, the header has {len(header)}",
            )
        rows.append((reader.line_num, dict(zip(header, row, strict=True))))
    return rows


def _field(row: dict[str, Any], name: str, param: str, path: Path, number: int) -> str:
    if name not in row:
        raise DatasetError(
            param,
            f"column '{name}' not found in {path.name} (line {number}); "
            f"columns are: {', '.join(map(str, row))}",
        )
    value = row[name]
    text = "" if value is None else str(value)
    if not text.strip():
        raise DatasetError(param, f"{path.name} line {number} has an empty '{name}'")
    return text


def load_splits(spec: DatasetSpec, seed: int) -> Splits:
    """Train and validation records; without a validation file, hold out a seeded fraction of train."""
    if spec.train is None:
        raise DatasetError("dataset.train", "a local train file is needed (resolve an uploaded id first)")
    fields = (spec.source_field, spec.target_field)
    train = read_records(spec.train, *fields, param="dataset.train")
    if spec.validation:
        validation = read_records(spec.validation, *fields, param="dataset.validation")
    else:
        train, validation = _hold_out(train, spec.validation_fraction, seed)
    if spec.max_validation_samples is not None:
        validation = validation[: spec.max_validation_samples]
    return Splits(train, validation)


def _hold_out(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    if len(records) < 2:
        raise DatasetError("dataset.train", "needs at least 2 records to hold out a validation split")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = min(len(records) - 1, max(1, round(len(records) * fraction)))
    held = set(order[:n_val])
    train = [r for i, r in enumerate(records) if i not in held]
    validation = [r for i, r in enumerate(records) if i in held]
    return train, validation


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


def tokenize(
    records: Sequence[Record],
    tokenizer: PreTrainedTokenizerBase,
    max_source_length: int,
    max_target_length: int,
) -> list[Example]:
    """Token ids with truncation; padding is left to `collate` so batches pad only to their longest."""
    sources = tokenizer([r.source for r in records], max_length=max_source_length, truncation=True)
    targets = tokenizer(
        text_target=[r.target for r in records], truncation=True, max_length=max_target_length
    )
    pairs = zip(sources["input_ids"], targets["input_ids"], strict=True)
    return [Example(list(s), list(t)) for s, t in pairs]


def collate(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest in the batch: inputs with the pad id, labels with -100."""
    width = max(len(e.input_ids) for e in examples)
    label_width = max(len(e.labels) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), label_width), LABEL_PAD, dtype=torch.long)
    for row, example in enumerate(examples):
        input_ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
        attention_mask[row, : len(example.input_ids)] = 1
        labels[row, : len(example.labels)] = torch.tensor(example.labels)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass
class LoaderPosition:
    """Where the loader stands: the next batch is batch `batch_index` of epoch `epoch`."""

    epoch: int = 0
    batch_index: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


BUCKET_BATCHES = 50  # batches per length-sorted pool: similar lengths, still a random mix of records


class ResumableLoader:
    """Shuffled batches, a fresh seeded order per epoch (seed + epoch), never-ending across epochs.

    The order depends only on (seed, epoch), so restoring a position replays the exact same batches.
    With `bucket_by_length`, each pool of BUCKET_BATCHES shuffled batches is sorted by source
    length before it is cut, and the batches are shuffled again: a batch pads to a length close
    to its records' own, which saves most of the padding's compute (about a third on debian-desc).
    """

    def __init__(
        self,
        examples: Sequence[Example],
        batch_size: int,
        pad_token_id: int,
        seed: int,
        *,
        bucket_by_length: bool = False,
    ) -> None:
        if not examples:
            raise DatasetError("dataset.train", "no training examples")
        self.examples = list(examples)
        self.batch_size = batch_size
        self.pad_token_id = pad_token_id
        self.bucket_by_length = bucket_by_length
        self.position = LoaderPosition(seed=seed)
        self._order = self._epoch_order()

    def __len__(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def _epoch_order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.position.seed + self.position.epoch)
        order = torch.randperm(len(self.examples), generator=generator).tolist()
        if not self.bucket_by_length:
            return order
        pool = self.batch_size * BUCKET_BATCHES
        for start in range(0, len(order), pool):
            order[start : start + pool] = sorted(
                order[start : start + pool], key=lambda i: len(self.examples[i].input_ids)
            )
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return [index for b in shuffled for index in batches[b]]

    def next_batch(self) -> dict[str, torch.Tensor]:
        start = self.position.batch_index * self.batch_size
        batch = [self.examples[i] for i in self._order[start : start + self.batch_size]]
        self.position.batch_index += 1
        if self.position.batch_index >= len(self):
            self.position = LoaderPosition(self.position.epoch + 1, 0, self.position.seed)
            self._order = self._epoch_order()
        return collate(batch, self.pad_token_id)

    def restore(self, position: LoaderPosition) -> None:
        self.position = LoaderPosition(position.epoch, position.batch_index, position.seed)
        self._order = self._epoch_order()
