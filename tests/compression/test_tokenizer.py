"""The joint en-de tokenizer follows facebook/mbart-large-50's conventions and survives a reload."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from compression.tokenizer import train_mbart_tokenizer
from tests.tiny import en_de_texts

SOURCE = "This package contains the data files."
TARGET = "Dieses Paket enthält die Datendateien."


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return train_mbart_tokenizer(en_de_texts(300), vocab_size=600)


def test_special_tokens_and_language_codes_have_mbart_ids(tokenizer: PreTrainedTokenizerBase) -> None:
    ids = tokenizer.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>"])
    assert ids == [0, 1, 2, 3] and tokenizer.bos_token == "<s>"
    codes = tokenizer.convert_tokens_to_ids(["en_XX", "de_DE"])
    assert all(code not in (None, tokenizer.unk_token_id) for code in codes)
    assert tokenizer.convert_tokens_to_ids("<mask>") == len(tokenizer) - 1 == 600 + 53


def test_source_starts_with_its_language_and_labels_with_the_target_language(
        tokenizer: PreTrainedTokenizerBase) -> None:
    encoded = tokenizer(SOURCE, text_target=TARGET)
    source, labels = encoded["input_ids"], encoded["labels"]
    assert tokenizer.convert_ids_to_tokens([source[0], source[-1]]) == ["en_XX", "</s>"]
    assert tokenizer.convert_ids_to_tokens([labels[0], labels[-1]]) == ["de_DE", "</s>"]


def test_decoding_drops_the_codes_and_gives_the_text_back(tokenizer: PreTrainedTokenizerBase) -> None:
    encoded = tokenizer(SOURCE, text_target=TARGET)
    assert tokenizer.decode(encoded["input_ids"], skip_special_tokens=True) == SOURCE
    assert tokenizer.decode(encoded["labels"], skip_special_tokens=True) == TARGET


def test_the_other_direction_swaps_the_codes(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path)
    reverse = AutoTokenizer.from_pretrained(tmp_path, src_lang="de_DE", tgt_lang="en_XX")
    encoded = reverse(TARGET, text_target=SOURCE)
    firsts = [encoded["input_ids"][0], encoded["labels"][0]]
    assert reverse.convert_ids_to_tokens(firsts) == ["de_DE", "en_XX"]


def test_reload_from_disk_encodes_the_same(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded) is type(tokenizer) and len(reloaded) == len(tokenizer)
    assert (reloaded.src_lang, reloaded.tgt_lang) == ("en_XX", "de_DE")
    assert reloaded(SOURCE, text_target=TARGET) == tokenizer(SOURCE, text_target=TARGET)
