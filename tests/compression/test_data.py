"""Dataset reading, splits, tokenization, collation and the resumable loader."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from compression.data import (
    LABEL_PAD,
    Example,
    Record,
    ResumableLoader,
    collate,
    load_splits,
    read_records,
    tokenize,
)
from compression.errors import DatasetError
from compression.recipe import DatasetSpec
from tests.tiny import write_jsonl

RECORDS = [{"document": f"document number {i} about packages", "summary": f"summary {i}"} for i in range(20)]


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(tiny_teacher_dir))


def test_reads_jsonl_with_chosen_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a b", "title": "a"}])
    assert read_records(path, "text", "title") == [Record("a b", "a")]


def test_reads_gzipped_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in RECORDS).encode()))
    assert len(read_records(path, "document", "summary")) == 20


def test_reads_csv_with_quoted_commas(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('document,summary\n"one, two",one\n', encoding="utf-8")
    assert read_records(path, "document", "summary") == [Record("one, two", "one")]


def test_missing_column_names_it_and_the_existing_ones(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "summary": "b"}])
    with pytest.raises(DatasetError, match=r"'document' not found .* columns are: text, summary") as info:
        read_records(path, "document", "summary")
    assert info.value.param == "dataset.source_field"


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no records"):
        read_records(path, "document", "summary")


def test_non_utf8_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("document,summary\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_records(path, "document", "summary")


def test_empty_text_names_the_field_and_line(tmp_path: Path) -> None:
    rows = [{"document": "a", "summary": "b"}, {"document": "a", "summary": " "}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DatasetError, match="line 2 has an empty 'summary'") as info:
        read_records(path, "document", "summary")
    assert info.value.param == "dataset.target_field"


def test_ragged_csv_row_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("document,summary\na,b\na,b,c\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 3 has 3 fields, the header has 2"):
        read_records(path, "document", "summary")


def test_held_out_validation_is_seeded_and_disjoint(tmp_path: Path) -> None:
    spec = DatasetSpec(train=str(write_jsonl(tmp_path / "d.jsonl", RECORDS)), validation_fraction=0.25)
    first, again = load_splits(spec, seed=3), load_splits(spec, seed=3)
    assert first == again
    assert len(first.validation) == 5 and len(first.train) == 15
    assert not set(first.train) & set(first.validation)


def test_validation_file_is_used_when_given(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", RECORDS)
    validation = write_jsonl(tmp_path / "v.jsonl", RECORDS[:3])
    splits = load_splits(DatasetSpec(train=str(train), validation=str(validation)), seed=0)
    assert len(splits.train) == 20 and len(splits.validation) == 3


def test_tokenize_truncates_to_the_limits(tokenizer: PreTrainedTokenizerBase) -> None:
    long = Record("word " * 50, "word " * 50)
    examples = tokenize([long], tokenizer, max_source_length=10, max_target_length=4)
    assert len(examples[0].input_ids) == 10 and len(examples[0].labels) == 4
    assert examples[0].input_ids[-1] == tokenizer.eos_token_id


def test_collate_pads_to_longest_with_labels_at_minus_100() -> None:
    batch = collate([Example([0, 5, 2], [0, 7, 2]), Example([0, 2], [0, 2])], pad_token_id=1)
    assert batch["input_ids"].tolist() == [[0, 5, 2], [0, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[0, 7, 2], [0, 2, LABEL_PAD]]


def test_loader_restored_position_replays_the_same_batches() -> None:
    examples = [Example([0, i, 2], [0, i, 2]) for i in range(3, 13)]
    loader = ResumableLoader(examples, batch_size=3, pad_token_id=1, seed=7)
    for _ in range(5):  # crosses an epoch boundary (4 batches per epoch)
        loader.next_batch()
    saved = loader.position.to_dict()
    expected = [loader.next_batch()["input_ids"] for _ in range(6)]
    resumed = ResumableLoader(examples, batch_size=3, pad_token_id=1, seed=7)
    resumed.restore(type(loader.position)(**saved))
    for want in expected:
        torch.testing.assert_close(resumed.next_batch()["input_ids"], want)


def test_loader_visits_every_example_once_per_epoch() -> None:
    examples = [Example([0, i, 2], [0, i, 2]) for i in range(3, 13)]
    loader = ResumableLoader(examples, batch_size=4, pad_token_id=1, seed=0)
    seen = [t for _ in range(len(loader)) for t in loader.next_batch()["input_ids"][:, 1].tolist()]
    assert sorted(seen) == list(range(3, 13))
    assert loader.position.epoch == 1 and loader.position.batch_index == 0


def _varied_examples(count: int) -> list[Example]:
    lengths = torch.randint(2, 60, (count,), generator=torch.Generator().manual_seed(3)).tolist()
    return [Example([0] + [5] * n + [2], [0, i, 2]) for i, n in enumerate(lengths)]


def _padded_tokens(loader: ResumableLoader) -> int:
    return sum(loader.next_batch()["input_ids"].numel() for _ in range(len(loader)))


def test_bucketed_loader_visits_every_example_once_per_epoch() -> None:
    examples = _varied_examples(50)
    loader = ResumableLoader(examples, batch_size=4, pad_token_id=1, seed=0, bucket_by_length=True)
    seen = [t for _ in range(len(loader)) for t in loader.next_batch()["labels"][:, 1].tolist()]
    assert sorted(seen) == list(range(50))


def test_bucketed_loader_pads_less_than_a_plain_shuffle() -> None:
    examples = _varied_examples(400)
    plain = ResumableLoader(examples, batch_size=8, pad_token_id=1, seed=0)
    bucketed = ResumableLoader(examples, batch_size=8, pad_token_id=1, seed=0, bucket_by_length=True)
    assert _padded_tokens(bucketed) < 0.8 * _padded_tokens(plain)


def test_bucketed_loader_restored_position_replays_the_same_batches() -> None:
    examples = _varied_examples(30)
    loader = ResumableLoader(examples, batch_size=4, pad_token_id=1, seed=5, bucket_by_length=True)
    for _ in range(10):  # crosses an epoch boundary (8 batches per epoch)
        loader.next_batch()
    saved = loader.position.to_dict()
    expected = [loader.next_batch()["labels"] for _ in range(9)]
    resumed = ResumableLoader(examples, batch_size=4, pad_token_id=1, seed=5, bucket_by_length=True)
    resumed.restore(type(loader.position)(**saved))
    for want in expected:
        torch.testing.assert_close(resumed.next_batch()["labels"], want)
